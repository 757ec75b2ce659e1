"""``make run``'s small CA (``infra/certificates.py``) with the real ``openssl``: one CA for the
secure Kafka and the Spark Connect TLS front, certificates that follow ``ADVERTISED_HOSTS``, an
older secure Kafka's CA taken over, and new ones after ``rotate-secrets``."""

from pathlib import Path

import pytest

from infra.certificates import certificate_hosts
from infra.kafka_secrets import LOCAL_HOSTS, KafkaSecrets
from infra.rotation import rotate_secrets
from infra.stack import local_ca

pytestmark = pytest.mark.integration


def test_the_brokers_certificate_follows_the_advertised_hosts(tmp_path: Path):
    secrets = KafkaSecrets(tmp_path / "kafka-secrets", ca=local_ca(tmp_path))
    secrets.ensure()
    assert sorted(certificate_hosts(secrets.keystore)) == ["127.0.0.1", "localhost"]
    first = secrets.keystore.read_text()
    secrets.ensure()
    assert secrets.keystore.read_text() == first  # kept while the hosts are the same
    moved = KafkaSecrets(tmp_path / "kafka-secrets", (*LOCAL_HOSTS, "kafka.example.lan", "192.0.2.7"),
                         ca=local_ca(tmp_path))
    moved.ensure()
    assert sorted(certificate_hosts(moved.keystore)) == ["127.0.0.1", "192.0.2.7", "kafka.example.lan",
                                                         "localhost"]
    assert moved.ca.signed(moved.keystore)
    assert {path.stat().st_mode & 0o777 for path in moved.ca.home.iterdir()} == {0o600}


def test_an_older_secure_kafka_s_ca_is_taken_over(tmp_path: Path):
    """Before the CA was shared, it lived in ``kafka-secrets``: its clients keep trusting it."""
    older = local_ca(tmp_path / "older")
    older.ensure()
    folder = tmp_path / "kafka-secrets"
    folder.mkdir()
    for path in (older.ca_file, older.key_file):
        (folder / path.name).write_text(path.read_text())
    secrets = KafkaSecrets(folder, ca=local_ca(tmp_path))
    secrets.ensure()
    assert secrets.ca_file == tmp_path / "ca" / "ca.pem"
    assert secrets.ca_file.read_text() == older.ca_file.read_text()
    assert older.signed(secrets.keystore)


def test_rotation_makes_a_new_ca_and_certificates_and_keeps_the_kafka_passwords(tmp_path: Path):
    secrets = KafkaSecrets(tmp_path / "kafka-secrets", ca=local_ca(tmp_path))
    secrets.ensure()
    ca, password = secrets.ca_file.read_text(), secrets.password("pos")
    rotate_secrets(tmp_path)
    assert not secrets.keystore.exists() and not secrets.ca_file.exists()
    secrets.ensure()  # as the next start does
    assert secrets.ca_file.read_text() != ca
    assert secrets.ca.signed(secrets.keystore)
    assert secrets.password("pos") == password


def test_an_ipv6_address_is_named_once_and_the_certificate_kept(tmp_path: Path):
    """openssl writes FD00:0:0:0:0:0:0:2; the host is given as fd00::2: the same, so no new certificate."""
    hosts = (*LOCAL_HOSTS, "fd00::2", "kafka.example.lan")
    secrets = KafkaSecrets(tmp_path / "kafka-secrets", hosts, ca=local_ca(tmp_path))
    secrets.ensure()
    assert sorted(certificate_hosts(secrets.keystore)) == sorted(hosts)
    first = secrets.keystore.read_text()
    KafkaSecrets(tmp_path / "kafka-secrets", hosts, ca=local_ca(tmp_path)).ensure()
    assert secrets.keystore.read_text() == first
