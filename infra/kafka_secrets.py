"""A secure local Kafka's secrets: a small CA, the brokers' certificate and the SCRAM users' passwords.

Made with ``openssl`` on first start, in one folder only its owner can open (0700, every file
0600), and kept: a restart uses the same ones. The users:

- ``admin``: a super user, for ``make run`` itself (waiting for the brokers, the ACLs) and the
  brokers between themselves;
- ``worker``: the Faust workers, allowed only their topics, their group and Faust's own topics;
- ``pos``: points of sale, allowed only to write the orders topic.

Passwords reach Kafka's storage format as salted SCRAM hashes, so no command line holds one.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from infra.java import StackError, classpath
from restaurant_app.java_runtime import java_executable
from restaurant_app.kafka_security import KafkaSecurity

MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
USERS = ("admin", "worker", "pos")
ROTATABLE = ("worker", "pos")
"""Users whose password ``rotate`` changes; ``admin``'s is also in the brokers' configuration."""
CONFIG_COMMAND = "kafka.admin.ConfigCommand"
BROKER_SUBJECT = "/CN=kafka-broker"
BROKER_PRINCIPAL = "User:CN=kafka-broker"
"""How a broker's certificate authenticates to the controllers (Kafka's default mapping of its subject)."""
CERTIFICATE_DAYS = "3650"
LOCAL_HOSTS = ("127.0.0.1", "localhost")

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

    def __init__(self, home: Path, hosts: tuple[str, ...] = LOCAL_HOSTS) -> None:
        self.home = home
        self.hosts = hosts
        """The names the brokers' certificate is good for (compose names its three containers)."""
        self.ca_file = home / "ca.pem"
        self.ca_key = home / "ca.key"
        self.keystore = home / "broker.pem"

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
        _write_private(path, JAVA_CLIENT_PROPERTIES.format(
            mechanism=MECHANISM, user=user, password=self.password(user), ca_file=self.ca_file))
        return path

    def ensure(self) -> None:
        """Make whatever secret is missing; keep those that exist."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        for user in USERS:
            if not self.password_file(user).exists():
                _write_private(self.password_file(user), secrets.token_urlsafe(32) + "\n")
        if not (self.ca_file.exists() and self.keystore.exists()):
            self._make_certificates()

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
        # The new password goes in a file of arguments (0600) that Java's launcher reads: on a
        # command line, any user of the machine could read it.
        arguments = self.home / f"{user}.arguments"
        change = f'"{MECHANISM}=[iterations={SCRAM_ITERATIONS},password={password}]"'
        _write_private(arguments, "\n".join([
            "-Xmx128m", "-cp", f'"{classpath()}"', CONFIG_COMMAND, "--bootstrap-server", bootstrap_servers,
            "--command-config", f'"{self.java_properties("admin")}"', "--alter", "--entity-type", "users",
            "--entity-name", user, "--add-config", change,
        ]) + "\n")
        try:
            result = subprocess.run([java_executable(), f"@{arguments}"], capture_output=True, text=True,
                                    check=False)
        finally:
            arguments.unlink()
        if result.returncode != 0:
            output = (result.stdout + result.stderr).replace(password, "<hidden>")
            raise StackError(f"Kafka did not take {user}'s new password; the old one stays:\n{output}")
        _write_private(self.password_file(user), password + "\n")

    def _make_certificates(self) -> None:
        """A CA, and one certificate for every broker (servers and clients of each other)."""
        make_ca(self.ca_key, self.ca_file)
        issue_certificate(self.ca_key, self.ca_file, self.keystore, BROKER_SUBJECT, self.hosts)


def make_ca(key: Path, certificate: Path) -> None:
    """A new certificate authority: its key and its self-signed certificate, each 0600."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate,
             "-days", CERTIFICATE_DAYS, "-subj", "/CN=restaurant-sales Kafka CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key.chmod(0o600)
    certificate.chmod(0o600)


def issue_certificate(ca_key: Path, ca_file: Path, pem: Path, subject: str, hosts: tuple[str, ...]) -> None:
    """Write to ``pem`` (0600) a new key and a certificate signed by the CA for ``hosts`` (names
    or addresses), good for a server and a client alike."""
    work = pem.with_suffix(".work")
    work.mkdir(mode=0o700, exist_ok=True)
    key, request, certificate, extensions = (work / name for name in ("key", "csr", "crt", "ext"))
    names = ",".join(f"IP:{host}" if _is_address(host) else f"DNS:{host}" for host in hosts)
    extensions.write_text(f"subjectAltName={names}\n"
                          "extendedKeyUsage=serverAuth,clientAuth\n"
                          "keyUsage=critical,digitalSignature,keyEncipherment\n")
    try:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request, "-subj", subject)
        _openssl("x509", "-req", "-in", request, "-CA", ca_file, "-CAkey", ca_key, "-CAcreateserial",
                 "-out", certificate, "-days", CERTIFICATE_DAYS, "-extfile", extensions)
        _write_private(pem, key.read_text() + certificate.read_text())
        ca_file.with_suffix(".srl").chmod(0o600)  # the CA's serial numbers, beside it
    finally:
        shutil.rmtree(work)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed while making Kafka's certificates:\n{result.stderr}")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner may read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
