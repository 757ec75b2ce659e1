"""Kafka client security from the settings: checked at start, one line each, and the same for every client.

No service here: the broker side is ``tests/test_kafka_secure.py``.
"""

import ssl
import subprocess
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from infra.kafka_acls import rules as acl_rules
from restaurant_app.kafka_security import PLAINTEXT, KafkaSecurity
from restaurant_app.kafka_transport import broker_credentials
from restaurant_app.settings import KAFKA_SECURITY_SETTINGS, SettingError, Settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in KAFKA_SECURITY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "kafka.password"
    path.write_text("s3cret-Pass\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """A self-signed certificate (the CA too) and its key, made by openssl."""
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=test-client"],
                   capture_output=True, check=True)
    return {"ca": cert, "cert": cert, "key": key}


def error_for(env: pytest.MonkeyPatch, **values: str) -> str:
    for name, value in values.items():
        env.setenv(name, value)
    with pytest.raises(SettingError) as caught:
        Settings.from_env()
    return str(caught.value)


def test_plain_tcp_is_the_default(env: pytest.MonkeyPatch):
    security = Settings.from_env().kafka_security
    assert security == PLAINTEXT
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(security) is None


def test_sasl_ssl_reads_the_password_from_its_file_for_every_client(env: pytest.MonkeyPatch,
                                                                   password_file: Path,
                                                                   pem_files: dict[str, Path]):
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("KAFKA_SASL_USERNAME", "worker")
    env.setenv("KAFKA_SASL_PASSWORD_FILE", str(password_file))
    env.setenv("KAFKA_SSL_CAFILE", str(pem_files["ca"]))
    settings = Settings.from_env()
    options = settings.kafka_security.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("worker", "s3cret-Pass")
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    faust = broker_credentials(settings.kafka_security)
    assert isinstance(faust, SASLCredentials)
    assert (faust.protocol.value, faust.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (faust.username, faust.password) == ("worker", "s3cret-Pass")
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(faust)
    password_file.write_text("rotated\n")  # read again for each new client
    assert settings.kafka_security.client_options()["sasl_plain_password"] == "rotated"


def test_sasl_plaintext_with_another_mechanism_has_no_tls(env: pytest.MonkeyPatch, password_file: Path):
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    env.setenv("KAFKA_SASL_USERNAME", "pos")
    env.setenv("KAFKA_SASL_PASSWORD_FILE", str(password_file))
    security = Settings.from_env().kafka_security
    assert "ssl_context" not in security.client_options()
    assert security.client_options()["sasl_mechanism"] == "SCRAM-SHA-256"
    credentials = broker_credentials(security)
    assert credentials.protocol.value == "SASL_PLAINTEXT" and credentials.ssl_context is None


def test_ssl_with_a_client_certificate(env: pytest.MonkeyPatch, pem_files: dict[str, Path]):
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    env.setenv("KAFKA_SSL_CAFILE", str(pem_files["ca"]))
    env.setenv("KAFKA_SSL_CERTFILE", str(pem_files["cert"]))
    env.setenv("KAFKA_SSL_KEYFILE", str(pem_files["key"]))
    security = Settings.from_env().kafka_security
    assert security.client_options().keys() == {"security_protocol", "ssl_context"}
    assert isinstance(broker_credentials(security), SSLCredentials)


@pytest.mark.parametrize(("values", "message"), [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"},
     "KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    ({"KAFKA_SASL_MECHANISM": "GSSAPI"},
     "KAFKA_SASL_MECHANISM must be one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, got 'GSSAPI'"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "KAFKA_SECURITY_PROTOCOL SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD_FILE"
     " (a file holding the password)"),
    ({"KAFKA_SASL_USERNAME": "worker"},
     "KAFKA_SASL_USERNAME is set, but KAFKA_SECURITY_PROTOCOL PLAINTEXT does not use it; set"
     " KAFKA_SECURITY_PROTOCOL (SASL_SSL, say) or unset it"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SSL_CAFILE": "/etc/hostname"},
     "KAFKA_SSL_CAFILE is set, but KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT does not use it; set"
     " KAFKA_SECURITY_PROTOCOL (SASL_SSL, say) or unset it"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
     "KAFKA_SSL_CAFILE must be a file this user can read (No such file or directory),"
     " got '/no/such/ca.pem'"),
])
def test_a_bad_kafka_security_setting_is_one_line(env: pytest.MonkeyPatch, values: dict[str, str],
                                                  message: str):
    assert error_for(env, **values) == message


def test_an_empty_password_file_or_a_lone_key_is_refused(env: pytest.MonkeyPatch, tmp_path: Path,
                                                         pem_files: dict[str, Path]):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    message = error_for(env, KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="worker",
                        KAFKA_SASL_PASSWORD_FILE=str(empty))
    assert message == f"KAFKA_SASL_PASSWORD_FILE {str(empty)!r} is empty"
    for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE"):
        env.delenv(name)
    assert error_for(env, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_KEYFILE=str(pem_files["key"])) == (
        "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE must be set together")


def test_a_file_that_is_not_pem_is_refused_at_start(env: pytest.MonkeyPatch, password_file: Path):
    message = error_for(env, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(password_file))
    assert message.startswith("KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE or KAFKA_SSL_KEYFILE is not a usable"
                              " PEM file: ")
    assert "s3cret" not in message


def test_the_security_is_a_value_without_the_password():
    security = KafkaSecurity("SASL_SSL", sasl_username="u", sasl_password_file=Path("/run/secrets/k"))
    assert "password_file=PosixPath('/run/secrets/k')" in repr(security)


def test_the_acls_give_points_of_sale_only_writes_to_the_orders_topic():
    rules = acl_rules("shop", "orders", "orders-dead-letter")
    pos = [rule for rule in rules if "--allow-principal=User:pos" in rule]
    assert pos == [["--allow-principal=User:pos", "--operation=Write", "--operation=Describe",
                    "--topic=orders"]]
    worker = [" ".join(rule) for rule in rules if "--allow-principal=User:worker" in rule]
    assert not any("--operation=Read" in rule for rule in worker if "--topic=orders-dead-letter" in rule)
    assert any("--resource-pattern-type=prefixed --topic=shop-" in rule for rule in worker)
    assert not any(op in " ".join(worker) for op in ("--operation=All", "--operation=Alter ",
                                                      "--operation=Delete", "--cluster"))
