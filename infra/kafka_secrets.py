"""A secure local Kafka's secrets: the brokers' certificate (from ``make run``'s small CA,
``infra/certificates.py``) and the SCRAM users' passwords.

Made on first start, in one folder only its owner can open (0700, every file
0600), and kept: a restart uses the same ones. The users:

- ``admin``: a super user, for ``make run`` itself (waiting for the brokers, the ACLs) and the
  brokers between themselves;
- ``worker``: the Faust workers, allowed only their topics, their group and Faust's own topics;
- ``pos``: points of sale, allowed only to write the orders topic.

Passwords reach Kafka's storage format as salted SCRAM hashes, so no command line holds one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

from infra.certificates import CertificateAuthority, subject_alt_names, write_private
from infra.java import StackError, classpath
from restaurant_app.java_runtime import java_executable
from restaurant_app.kafka_probe import KafkaUnavailable, count_brokers
from restaurant_app.kafka_security import KafkaSecurity
from restaurant_app.settings import DEFAULT_JARS_DIR

MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
USERS = ("admin", "worker", "pos")
ROTATABLE = ("worker", "pos")
"""Users whose password ``rotate`` changes; ``admin``'s is also in the brokers' configuration."""
CONFIG_COMMAND = "kafka.admin.ConfigCommand"
LOGIN_TIMEOUT = 15.0
"""Seconds a user's login may take before ``ensure_on_cluster`` counts it refused."""
BROKER_SUBJECT = "/CN=kafka-broker"
BROKER_PRINCIPAL = "User:CN=kafka-broker"
"""How a broker's certificate authenticates to the controllers (Kafka's default mapping of its subject)."""

log = logging.getLogger("infra")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
"""The names every brokers' certificate holds: clients on the machine itself."""

JAVA_CLIENT_PROPERTIES = """\
security.protocol=SASL_SSL
sasl.mechanism={mechanism}
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\
  username="{user}" password="{password}";
ssl.truststore.type=PEM
ssl.truststore.location={ca_file}
"""


class KafkaSecrets:
    """The secrets folder ``home``: ``ca.pem``, ``broker.pem`` (key and certificate), ``<user>.password``."""

    def __init__(self, home: Path, hosts: Sequence[str] = LOCAL_HOSTS, ca: CertificateAuthority | None = None
                 ) -> None:
        self.home = home
        self.ca = ca or CertificateAuthority(home)
        """The CA that signs the brokers' certificate: its own in ``home`` (compose's), or
        ``make run``'s shared one (``infra.stack.local_ca``)."""
        self.ca_file = self.ca.ca_file
        self.ca_key = self.ca.key_file
        self.keystore = home / "broker.pem"
        self.hosts = tuple(hosts)
        """The names the brokers' certificate is good for: loopback, and the names other machines
        reach them by (``ADVERTISED_HOSTS``; compose's containers)."""

    @property
    def advertised_host(self) -> str | None:
        """The first of ``hosts`` beyond loopback: the brokers listen on every interface and advertise it."""
        return next((host for host in self.hosts if host not in LOCAL_HOSTS), None)

    def password_file(self, user: str) -> Path:
        return self.home / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def client(self, user: str) -> KafkaSecurity:
        """What ``user`` connects with: SCRAM-SHA-512 over TLS, trusting only this CA."""
        return KafkaSecurity(protocol="SASL_SSL", sasl_mechanism=MECHANISM, sasl_username=user,
                             sasl_password_file=self.password_file(user), ssl_cafile=self.ca_file)

    def client_env(self, user: str) -> dict[str, str]:
        """The settings (environment variables) that make a program of ours connect as ``user``."""
        return {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": MECHANISM,
                "KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD_FILE": str(self.password_file(user)),
                "KAFKA_SSL_CAFILE": str(self.ca_file)}

    def java_properties(self, user: str) -> Path:
        """A client properties file (0600) for Kafka's Java tools that logs in as ``user``."""
        path = self.home / f"{user}.properties"
        write_private(path, JAVA_CLIENT_PROPERTIES.format(
            mechanism=MECHANISM, user=user, password=self.password(user), ca_file=self.ca_file))
        return path

    def ensure(self) -> None:
        """Make whatever secret is missing; keep those that exist."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        for user in USERS:
            if not self.password_file(user).exists():
                write_private(self.password_file(user), secrets.token_urlsafe(32) + "\n")
        if self.ca.ensure_issued(self.keystore, BROKER_SUBJECT, self.hosts, client=True):
            log.info("Made the Kafka brokers' certificate for %s, signed by the CA %s.",
                     subject_alt_names(self.hosts), self.ca_file)

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format``'s ``--add-scram`` arguments for every user, salted and hashed."""
        arguments = []
        for user in USERS:
            salt = secrets.token_bytes(32)
            salted = hashlib.pbkdf2_hmac("sha512", self.password(user).encode(), salt, SCRAM_ITERATIONS)
            arguments += ["--add-scram", f"{MECHANISM}=[name={user},iterations={SCRAM_ITERATIONS},"
                          f"salt=\"{_b64(salt)}\",saltedpassword=\"{_b64(salted)}\"]"]
        return arguments

    def rotate(self, user: str, bootstrap_servers: str) -> None:
        """Give ``user`` a new password: on the cluster first (as ``admin``), then in its file.

        Connections already open stay; programs that log in as ``user`` need the new password for
        their next login, so restart them (the workers read it when they start).
        """
        if user not in ROTATABLE:
            raise StackError(f"Only the passwords of {' and '.join(ROTATABLE)} can be changed this way,"
                             f" not {user!r}.")
        if not self.password_file("admin").exists():
            raise StackError(f"There is no secure Kafka's secrets in {self.home}: KAFKA_SECURE=1 make run"
                             " makes them on its first start (with the same DATA_DIR).")
        password = secrets.token_urlsafe(32)
        self.set_on_cluster(user, password, bootstrap_servers)
        write_private(self.password_file(user), password + "\n")

    def ensure_on_cluster(self, user: str, bootstrap_servers: str, jars_dir: Path = DEFAULT_JARS_DIR) -> bool:
        """Unless ``user`` logs in with the password of its file, set that one on the cluster (as
        ``admin``); return whether it did. Compose's ``setup`` does so after a rotation."""
        try:
            asyncio.run(count_brokers(bootstrap_servers, LOGIN_TIMEOUT, self.client(user)))
            return False
        except KafkaUnavailable:
            self.set_on_cluster(user, self.password(user), bootstrap_servers, jars_dir)
            return True

    def set_on_cluster(self, user: str, password: str, bootstrap_servers: str,
                       jars_dir: Path = DEFAULT_JARS_DIR) -> None:
        """Make ``password`` ``user``'s on the cluster, with Kafka's ConfigCommand as ``admin``."""
        # The password goes in a file of arguments (0600) that Java's launcher reads: on a
        # command line, any user of the machine could read it.
        arguments = self.home / f"{user}.arguments"
        change = f'"{MECHANISM}=[iterations={SCRAM_ITERATIONS},password={password}]"'
        write_private(arguments, "\n".join([
            "-Xmx128m", "-cp", f'"{classpath(jars_dir)}"', CONFIG_COMMAND, "--bootstrap-server",
            bootstrap_servers, "--command-config", f'"{self.java_properties("admin")}"', "--alter",
            "--entity-type", "users", "--entity-name", user, "--add-config", change,
        ]) + "\n")
        try:
            result = subprocess.run([java_executable(), f"@{arguments}"], capture_output=True, text=True,
                                    check=False)
        finally:
            arguments.unlink()
        if result.returncode != 0:
            output = (result.stdout + result.stderr).replace(password, "<hidden>")
            raise StackError(f"Kafka did not take {user}'s new password; the old one stays:\n{output}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
