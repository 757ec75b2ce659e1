"""docker-compose.yml's secrets, made by its one-shot service ``secrets`` on first start.

``python -m infra compose-secrets ROOT`` (as root) makes whatever is missing under ``ROOT/made``
(0700): a small CA, the certificates of the brokers, of the PostgreSQL primary and replica and
of Spark Connect's TLS front, the Kafka users' passwords (``infra.kafka_secrets``), the
PostgreSQL passwords, the dashboard's and the orders API's tokens, the Spark Connect token and
the Spark cluster's shared secret. Then it copies to each service's own volume, mounted at
``/run/restaurant-secrets`` in that service only, just the files that service needs, owned by the
user it runs as, 0600 in a 0700 folder. Nothing is ever printed; ``--rotate`` forgets the secrets
that the next ``docker compose up`` can change without losing data (see ``ROTATED``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from infra.kafka_acls import grant
from infra.kafka_broker import GROUP_JOIN_WAIT_MS, SECURE_LISTENERS, SERVER_PROPERTIES
from infra.kafka_secrets import BROKER_PRINCIPAL, JAVA_CLIENT_PROPERTIES, MECHANISM, KafkaSecrets
from infra.postgres import set_password
from infra.secret_file import make_secret, make_spark_auth_file, read_secret
from restaurant_app.database import Database
from restaurant_app.settings import Settings

MOUNTED_AT = Path("/run/restaurant-secrets")
"""Where every service finds its own secrets."""
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
DATABASE = "restaurant"
APP_UID = 10001  # the Dockerfile's user `app`
KAFKA_UID = 1000  # apache/kafka's `appuser`
POSTGRES_UID = 999  # the postgres image's `postgres`
ROLES = ("restaurant_ingest", "restaurant_reports", "restaurant_web")
KAFKA_USERS = ("worker", "pos")
"""The Kafka users whose passwords ``setup`` sets on the cluster (as ``admin``)."""
ROTATED = ("dashboard-token", "orders-api-token", "spark-connect-token", "spark-auth.properties",
           *(f"{role}.password" for role in ROLES), *(f"{user}.password" for user in KAFKA_USERS),
           "ca.pem", "ca.key", "ca.srl")
"""What ``--rotate`` forgets: the next ``up`` makes new ones (the CA, and with it every
certificate, issued again), and ``setup`` gives the roles and the Kafka users theirs. The
superuser's password is rotated too, but kept as ``SUPERUSER_PREVIOUS`` for ``setup`` to log in
once and change it. Kept: the replication password, set once in the databases' volumes, and
Kafka's ``admin`` password, which the brokers use between themselves."""
SUPERUSER_PREVIOUS = "postgres-previous.password"
"""The superuser's password before the last ``--rotate``: ``setup``'s way in to change it."""
CLUSTER_SETTINGS = ("spark.network.crypto.enabled=true\n"
                    "spark.network.crypto.authEngineVersion=2\n"
                    "spark.network.crypto.cipher=AES/GCM/NoPadding\n"
                    "spark.network.crypto.saslFallback=false\n"
                    "spark.master.rest.enabled=false\n")
"""What the Spark cluster's processes and applications add to the shared secret: every
connection authenticated with it and encrypted (AES-GCM, Spark's key exchange version 2), none
without (no fallback to SASL), and no REST submission server on the master (port 6066)."""


@dataclass(frozen=True)
class Service:
    """A volume of secrets: the files (by their name under ``made``) it holds, and its owner."""

    volume: str
    uid: int
    files: tuple[str, ...]


def pgpass_line(host: str, role: str) -> str:
    return f"{host}:5432:{DATABASE}:{role}:{{{role}}}"


WORKER_LOGINS = (*(pgpass_line("postgres", role) for role in ROLES),
                 pgpass_line("postgres-replica", "restaurant_web"))
"""The workers' logins: not the superuser's, which only `setup` holds."""
JOB_LOGINS = (pgpass_line("postgres", "restaurant_reports"),
              pgpass_line("postgres-replica", "restaurant_web"))
"""The report job's, which Spark's JDBC driver reads from ``PGPASSFILE`` where the SQL runs."""

SERVICES = (
    Service("kafka", KAFKA_UID, ("ca.pem", "broker.pem", "admin.properties", "scram-arguments",
                                 *(f"{node}.properties" for node in KAFKA_NODES))),
    Service("postgres", POSTGRES_UID, ("ca.pem", "postgres.crt", "postgres.key", "postgres.password",
                                       "replication.password")),
    Service("postgres-replica", POSTGRES_UID, ("ca.pem", "postgres-replica.crt", "postgres-replica.key",
                                               "replication.pgpass")),
    Service("setup", APP_UID, ("ca.pem", "admin.password", "setup.pgpass", "postgres.password",
                               SUPERUSER_PREVIOUS,
                               *(f"{role}.password" for role in ROLES),
                               *(f"{user}.password" for user in KAFKA_USERS))),
    Service("worker", APP_UID, ("ca.pem", "worker.password", "worker.pgpass", "dashboard-token",
                                "orders-api-token", "spark-connect-token")),
    Service("spark", APP_UID, ("ca.pem", "spark-cluster.properties", "job.pgpass")),
    Service("spark-connect", APP_UID, ("ca.pem", "spark-connect.properties", "job.pgpass",
                                       "spark-connect.pem")),
)


class ComposeSecrets:
    """The secrets under ``root``: ``made`` (root's only) and one folder per volume of ``SERVICES``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made = root / "made"
        self.kafka = KafkaSecrets(self.made, hosts=(*KAFKA_NODES, "localhost", "127.0.0.1"))

    def ensure(self) -> None:
        """Make what is missing, then hand each service its files afresh."""
        self.made.mkdir(parents=True, exist_ok=True)
        self.made.chmod(0o700)
        self.kafka.ensure()
        for name in ("postgres", "replication", *ROLES):
            make_secret(self.made / f"{name}.password")
        for name in ("dashboard-token", "orders-api-token", "spark-connect-token"):
            make_secret(self.made / name)
        make_spark_auth_file(self.made / "spark-auth.properties")
        for host in ("postgres", "postgres-replica"):
            self._server_certificate(host, self.made / f"{host}.pem")
        self._server_certificate("spark-connect", self.made / "spark-connect.pem")
        self._derived_files()
        for service in SERVICES:
            self._hand_out(service)

    def rotate(self) -> list[str]:
        """Forget the secrets of ``ROTATED``, and keep the superuser's password as
        ``SUPERUSER_PREVIOUS``; return their names."""
        removed = [name for name in ROTATED if (self.made / name).exists()]
        for name in removed:
            (self.made / name).unlink()
        superuser = self.made / "postgres.password"
        if superuser.exists():
            superuser.replace(self.made / SUPERUSER_PREVIOUS)
            removed.append(superuser.name)
        return removed

    def _server_certificate(self, host: str, pem: Path) -> None:
        """Issue ``pem`` for ``host`` unless it holds one of the current CA."""
        self.kafka.ca.ensure_issued(pem, f"/CN={host}", (host,), client=True)

    def _write(self, name: str, text: str) -> None:
        path = self.made / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)

    def _password(self, name: str) -> str:
        return (self.made / f"{name}.password").read_text().strip()

    def _derived_files(self) -> None:
        """The files made from the secrets: configurations, password files, split key and certificate."""
        for host in ("postgres", "postgres-replica"):  # PostgreSQL wants them apart
            key, certificate = _split_pem((self.made / f"{host}.pem").read_text())
            self._write(f"{host}.key", key)
            self._write(f"{host}.crt", certificate)
        passwords = {role: self._password(role) for role in ("postgres", *ROLES)}
        self._write("worker.pgpass", "\n".join(WORKER_LOGINS).format(**passwords) + "\n")
        self._write("job.pgpass", "\n".join(JOB_LOGINS).format(**passwords) + "\n")
        self._write("setup.pgpass", pgpass_line("postgres", "postgres").format(**passwords) + "\n")
        self._write("replication.pgpass",
                    f"postgres:5432:replication:replicator:{self._password('replication')}\n")
        cluster = (self.made / "spark-auth.properties").read_text() + CLUSTER_SETTINGS
        self._write("spark-cluster.properties", cluster)
        token = (self.made / "spark-connect-token").read_text().strip()
        # The Spark Connect server's own web UI (port 4040) is off: nothing in compose reads it.
        self._write("spark-connect.properties", cluster + "spark.ui.enabled=false\n"
                    f"spark.connect.authenticate.token={token}\n")
        ca_file = MOUNTED_AT / "ca.pem"
        self._write("admin.properties", JAVA_CLIENT_PROPERTIES.format(
            mechanism=MECHANISM, user="admin", password=self.kafka.password("admin"), ca_file=ca_file))
        self._write("scram-arguments", "\n".join(self.kafka.scram_arguments()) + "\n")
        for node_id, node in enumerate(KAFKA_NODES, 1):
            self._write(f"{node}.properties", broker_properties(node_id, node, self.kafka.password("admin")))

    def _hand_out(self, service: Service) -> None:
        """Fill the service's folder with its files only (those made: ``SUPERUSER_PREVIOUS`` only
        after a rotation), owned by its user, 0600 in 0700."""
        folder = self.root / service.volume
        folder.mkdir(exist_ok=True)
        files = [name for name in service.files if (self.made / name).exists()]
        for old in folder.iterdir():
            if old.name not in files and old.name not in WRITTEN_BY_SERVICE:
                old.unlink()
        for name in files:
            target = folder / name
            shutil.copyfile(self.made / name, target)
            os.chown(target, service.uid, service.uid)
            target.chmod(0o600)
        os.chown(folder, service.uid, service.uid)
        folder.chmod(0o700)


WRITTEN_BY_SERVICE = ("admin.properties",)
"""Files a service writes in its own folder (``kafka_acls.grant`` writes the admin's)."""


def broker_properties(node_id: int, host: str, admin_password: str) -> str:
    """The server.properties of node ``node_id`` of the three, as ``make run``'s secure brokers
    have, with the containers' names."""
    voters = ",".join(f"{i}@{node}:9093" for i, node in enumerate(KAFKA_NODES, 1))
    listeners = SECURE_LISTENERS.format(
        bind="127.0.0.1", advertised="127.0.0.1",  # made the containers' below
        port=9092, controller_port=9093, mechanism=MECHANISM, mechanism_lower=MECHANISM.lower(),
        password=admin_password, keystore=MOUNTED_AT / "broker.pem", ca_file=MOUNTED_AT / "ca.pem",
        broker_principal=BROKER_PRINCIPAL,
    ).replace("127.0.0.1", host).replace(f"SASL_SSL://{host}:9092,CONTROLLER", "SASL_SSL://:9092,CONTROLLER")
    listeners = listeners.replace(f"CONTROLLER://{host}:9093", "CONTROLLER://:9093")
    return SERVER_PROPERTIES.format(node_id=node_id, voters=voters, data_dir="/var/lib/kafka/data",
                                    replicas=3, min_insync=2,
                                    rebalance_delay_ms=GROUP_JOIN_WAIT_MS) + listeners


def _split_pem(pem: str) -> tuple[str, str]:
    """A key-and-certificate PEM as its key and its certificate."""
    marker = "-----BEGIN CERTIFICATE-----"
    at = pem.index(marker)
    return pem[:at], pem[at:]


def set_up(settings: Settings) -> list[str]:
    """The one-shot ``setup``: as the superuser, migrate and let the roles log in with their
    passwords; as Kafka's ``admin``, set the users' passwords that do not log in yet and the ACLs.
    All of it is the same again at every start. Returns what it did, in words, for its log."""
    done = []
    if superuser_password_changed(settings.database_url):
        done.append("the superuser's new password is set")
    applied = asyncio.run(Database(settings.database_url).migrate())
    done.append(f"{len(applied)} migration(s) applied")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for role in ROLES:
            password = read_secret(MOUNTED_AT / f"{role}.password", f"The PostgreSQL role {role}")
            set_password(conn, role, password, login=True)
    done.append(f"the roles {', '.join(ROLES)} log in with their passwords")
    kafka = KafkaSecrets(MOUNTED_AT)
    changed = [user for user in KAFKA_USERS
               if kafka.ensure_on_cluster(user, settings.bootstrap_servers, settings.jars_dir)]
    done.append(f"Kafka's users {', '.join(changed)} have their new passwords" if changed
                else "Kafka's users log in with their passwords")
    grant(kafka, settings.bootstrap_servers, settings.app_id, settings.orders_topic,
          settings.dead_letter_topic, settings.jars_dir)
    done.append("Kafka's ACLs are set")
    return done


def superuser_password_changed(url: str) -> bool:
    """After a rotation the superuser's password in ``url`` (its passfile) is new to PostgreSQL:
    log in with ``SUPERUSER_PREVIOUS`` and make it the superuser's. Returns whether it did."""
    try:
        psycopg.connect(url, connect_timeout=30).close()
        return False
    except psycopg.OperationalError:
        previous = MOUNTED_AT / SUPERUSER_PREVIOUS
        if not previous.exists():
            raise
    old_login = make_conninfo(url, password=read_secret(previous, "The superuser's previous password"))
    with psycopg.connect(old_login, connect_timeout=30, autocommit=True) as conn:
        set_password(conn, "postgres", read_secret(MOUNTED_AT / "postgres.password", "The superuser"))
    return True
