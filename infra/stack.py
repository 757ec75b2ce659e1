"""The services the pipeline needs: those the environment names, or local ones we start."""

import asyncio
import logging
import os
import random
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

from infra.certificates import CertificateAuthority, url_host
from infra.java import StackError
from infra.kafka_acls import grant
from infra.kafka_broker import KafkaBroker, KafkaCluster
from infra.kafka_secrets import LOCAL_HOSTS, KafkaSecrets
from infra.postgres import APP_ROLES, PostgresReplica, PostgresServer, write_pgpass
from infra.spark_cluster import SparkCluster
from infra.spark_connect import SparkConnectServer
from infra.supervisor import Part, Supervisor
from infra.tls_front import EVERY_INTERFACE, TlsFront
from restaurant_app.database import Database, describe
from restaurant_app.settings import Settings, shown_remote

log = logging.getLogger("infra")

DATABASE_NAME = "restaurant"
POSTGRES_PORT = 5432
REPLICA_PORT = 5433
POSTGRES_FRONT_SOURCE = "127.0.0.2"
"""Where PostgreSQL's TLS front connects from (Linux's loopback holds all of 127.0.0.0/8), so that
pg_hba.conf tells its clients, other machines', from the machine's own."""
INGEST_ROLE, WEB_ROLE, REPORTS_ROLE = "restaurant_ingest", "restaurant_web", "restaurant_reports"


SCRATCH_PORTS = range(20_000, 32_000)
"""Where the tests' and the bench's services listen: below the kernel's ephemeral ports (32768
and up), so that no outgoing connection takes the port of a service while it restarts."""
_handed_out: set[int] = set()


def scratch_ports() -> range:
    """This process's share of ``SCRATCH_PORTS``: the processes of ``pytest -n N`` (pytest-xdist
    names them in ``PYTEST_XDIST_WORKER``) each take their own, so none hands out another's port."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", "gw0"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    share = len(SCRATCH_PORTS) // int(count or 1)
    start = SCRATCH_PORTS.start + int(worker.removeprefix("gw") or 0) * share
    return range(start, start + share)


def free_port(span: int = 1) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that this process has not handed
    out, with the ``span - 1`` ports after it the same (a service that takes several in a row)."""
    ports = [port for port in scratch_ports() if port + span - 1 < scratch_ports().stop
             and _handed_out.isdisjoint(range(port, port + span))]
    random.shuffle(ports)
    for port in ports:
        if all(_bindable(each) for each in range(port, port + span)):
            _handed_out.update(range(port, port + span))
            return port
    raise StackError(f"no {span} free port(s) in a row left among {scratch_ports()}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def local_postgres(data_dir: Path, port: int = POSTGRES_PORT) -> PostgresServer:
    """The PostgreSQL server of ``make run``, its data and password under ``data_dir``."""
    return PostgresServer(data_dir / "postgres", port)


def local_ca(data_dir: Path) -> CertificateAuthority:
    """``make run``'s small CA, in ``data_dir/ca``: it took over the secure Kafka's own, if any."""
    return CertificateAuthority(data_dir / "ca", former=data_dir / "kafka-secrets")


def local_kafka_secrets(data_dir: Path, hosts: Sequence[str] = ()) -> KafkaSecrets:
    """The secure Kafka's secrets in ``data_dir/kafka-secrets``, its certificate from ``local_ca``
    for loopback and ``hosts``."""
    return KafkaSecrets(data_dir / "kafka-secrets", (*LOCAL_HOSTS, *hosts), ca=local_ca(data_dir))


def local_kafka(data_dir: Path, port: int = 9092, nodes: int = 1, secure: bool = False,
                hosts: Sequence[str] = ()) -> KafkaBroker | KafkaCluster:
    """One node in ``data_dir/kafka`` on ``port`` and ``port + 1``, or a cluster of ``nodes``.

    Node i of a cluster listens on ``port + 2(i-1)`` (clients) and the port after it (controllers),
    with its data in ``data_dir/kafka-N-nodes/node-i``: a cluster of another size starts afresh.
    ``secure``: clients log in with SCRAM over TLS, the secrets in ``data_dir/kafka-secrets``, the
    data in a folder of its own (``kafka-secure``, ``kafka-N-nodes-secure``), as it has its users;
    ``hosts`` (``ADVERTISED_HOSTS``, secure only): other machines' clients reach it by these names.
    """
    secrets = local_kafka_secrets(data_dir, hosts) if secure else None
    suffix = "-secure" if secure else ""
    if nodes == 1:
        return KafkaBroker(data_dir / f"kafka{suffix}", port, port + 1, secrets=secrets)
    ports = [(port + 2 * i, port + 2 * i + 1) for i in range(nodes)]
    return KafkaCluster(data_dir / f"kafka-{nodes}-nodes{suffix}", ports, secrets=secrets)


@contextmanager
def local_stack(
    data_dir: Path, settings: Settings, kafka_port: int = 9092, postgres_port: int = POSTGRES_PORT,
    spark_port: int = 15002, replica_port: int = REPLICA_PORT, supervisor: Supervisor | None = None,
) -> Iterator[dict[str, str]]:
    """Start Kafka (of ``KAFKA_NODES``), PostgreSQL and Spark Connect unless ``KAFKA_BROKER`` /
    ``DATABASE_URL`` / ``SPARK_REMOTE`` name them; with ``POSTGRES_REPLICA`` on, a streaming
    replica of that PostgreSQL too, where the reports are read; with ``SPARK_CLUSTER`` on, a Spark
    master and worker that the Spark Connect server and the report runs use.

    Yields the environment variables that point the app at the services, and
    stops what it started on exit. Data stays in ``data_dir`` between runs. Each process it
    starts is given to ``supervisor``, if any, to be started again when it exits.
    """
    env: dict[str, str] = {}
    watch = supervisor.add if supervisor is not None else lambda part: None
    with ExitStack() as stack:
        if os.environ.get("KAFKA_BROKER"):
            log.info("Using the Kafka broker at %s", os.environ["KAFKA_BROKER"])
            if settings.kafka_secure:
                log.warning("KAFKA_SECURE=on secures only the Kafka started here; with KAFKA_BROKER"
                            " set, give the workers KAFKA_SECURITY_PROTOCOL and its settings instead.")
        else:
            env.update(_start_kafka(stack, data_dir, kafka_port, settings, watch))
        if os.environ.get("DATABASE_URL"):
            log.info("Using the PostgreSQL named by DATABASE_URL")
            if settings.postgres_replica:
                log.warning("POSTGRES_REPLICA=on replicates only the PostgreSQL started here; with"
                            " DATABASE_URL set, name your replica in REPORTS_DATABASE_URL instead.")
        else:
            postgres = local_postgres(data_dir, postgres_port)
            log.info("Starting PostgreSQL on 127.0.0.1:%d ...", postgres_port)
            postgres.start()
            stack.callback(_stopping, "PostgreSQL", postgres.stop)
            watch(Part("PostgreSQL", postgres.exited, postgres.start))
            postgres.create_database(DATABASE_NAME)
            env["DATABASE_URL"] = postgres.url(DATABASE_NAME)
            log.info("PostgreSQL is ready: %s; its password is in %s",
                     describe(env["DATABASE_URL"]), postgres.password_file)
            env.update(_least_privilege(postgres))
            if settings.advertised_hosts:
                open_postgres(stack, postgres, local_ca(data_dir), settings.advertised_hosts, watch,
                              postgres_port + 2)
            if settings.postgres_replica:
                replica = PostgresReplica(data_dir / "postgres-replica", replica_port, postgres)
                env["REPORTS_DATABASE_URL"] = _start_replica(stack, replica)
                watch(Part("The PostgreSQL replica", replica.exited, replica.start))
        if settings.spark_cluster:
            env.update(_start_spark_cluster(stack, data_dir / "spark-cluster", watch))
            settings = replace(settings, spark_master=env["SPARK_MASTER"],
                               spark_auth_properties=env["SPARK_AUTH_PROPERTIES"])
        if os.environ.get("SPARK_REMOTE"):
            log.info("Using the Spark Connect server at %s", shown_remote(os.environ["SPARK_REMOTE"]))
        else:
            env.update(_start_spark_connect(stack, data_dir, spark_port, settings, watch, _job_logins(env)))
        yield env


def _start_kafka(stack: ExitStack, data_dir: Path, port: int, settings: Settings,
                 watch: Callable[[Part], None]) -> dict[str, str]:
    """Start Kafka (with KAFKA_SECURE, its logins and ACLs); return the workers' settings for it."""
    kafka = local_kafka(data_dir, port, settings.kafka_nodes, settings.kafka_secure,
                        settings.advertised_hosts)
    log.info("Starting Apache Kafka (KRaft, %d node(s)) on %s%s ...", settings.kafka_nodes,
             kafka.bootstrap_servers, ", SCRAM logins over TLS" if settings.kafka_secure else "")
    kafka.start()
    stack.callback(_stopping, "Kafka", kafka.stop)
    for name, node in kafka_nodes(kafka):
        watch(Part(name, node.exited, node.start))
    log.info("Kafka is ready; its data and logs are in %s", kafka.home)
    if kafka.secrets is not None:
        secrets = kafka.secrets
        log.info("Setting Kafka's ACLs for the users worker and pos ...")
        grant(secrets, kafka.bootstrap_servers, settings.app_id, settings.orders_topic,
              settings.dead_letter_topic)
        log.info("Kafka asks every client for a login over TLS: the workers log in as 'worker'; points"
                 " of sale as 'pos', with the password in %s, trusting the CA %s.",
                 secrets.password_file("pos"), secrets.ca_file)
    return {"KAFKA_BROKER": kafka.bootstrap_servers, **kafka.client_env("worker")}


def kafka_nodes(kafka: KafkaBroker | KafkaCluster) -> list[tuple[str, KafkaBroker]]:
    """Each Kafka process with its name for the logs."""
    if isinstance(kafka, KafkaBroker):
        return [("Kafka", kafka)]
    return [(f"Kafka node {node.membership.node_id}", node) for node in kafka.nodes]


def _least_privilege(postgres: PostgresServer) -> dict[str, str]:
    """Migrate as the superuser, let the roles of migration 023 log in, and name the logins of
    the worker's storing of orders, the web (read only) and the report job (reads orders, writes
    reports)."""
    applied = asyncio.run(Database(postgres.url(DATABASE_NAME)).migrate())
    postgres.enable_roles(DATABASE_NAME)
    log.info("PostgreSQL's schema is up to date (%d migration(s) applied); the storing of orders,"
             " the web and the report job log in as their own roles, whose passwords are in %s", len(applied),
             postgres.role_password_file(WEB_ROLE).parent)
    return {"INGEST_DATABASE_URL": postgres.role_url(INGEST_ROLE, DATABASE_NAME),
            "WEB_DATABASE_URL": postgres.role_url(WEB_ROLE, DATABASE_NAME),
            "REPORT_JOB_DATABASE_URL": postgres.role_url(REPORTS_ROLE, DATABASE_NAME)}


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """What ``make run`` gives its workers of ``env``: where it made the roles of migration 023,
    ``DATABASE_URL`` is the ingest role's, so the long-running workers never hold the superuser's
    password. The migrations ran before them (``_least_privilege``); the day partitions' upkeep
    and the retentions go through migration 024's functions."""
    if "INGEST_DATABASE_URL" not in env:
        return env
    workers = {**env, "DATABASE_URL": env["INGEST_DATABASE_URL"]}
    del workers["INGEST_DATABASE_URL"]
    return workers


def _job_logins(env: dict[str, str]) -> list[str]:
    """The report job's logins, for a Spark Connect server of ours to keep: none unless the
    PostgreSQL is ours too."""
    return [env[name] for name in ("REPORT_JOB_DATABASE_URL", "REPORTS_DATABASE_URL") if name in env]


def _start_replica(stack: ExitStack, replica: PostgresReplica) -> str:
    """Start the replica, to be stopped before its primary; return the web role's URL of its database."""
    log.info("Starting a read replica of PostgreSQL on 127.0.0.1:%d ...", replica.port)
    replica.start()
    stack.callback(_stopping, "the PostgreSQL replica", replica.stop)
    url = replica.role_url(WEB_ROLE, DATABASE_NAME)
    log.info("The replica is streaming from the primary; reports are read from %s", describe(url))
    return url


def _start_spark_cluster(stack: ExitStack, home: Path, watch: Callable[[Part], None]) -> dict[str, str]:
    """Start a Spark master and one worker; the report runs and the Spark Connect server use them."""
    cluster = SparkCluster(home)
    log.info("Starting a Spark master on 127.0.0.1:%d and one worker ...", cluster.port)
    cluster.start()
    stack.callback(_stopping, "the Spark cluster", cluster.stop)
    for part in ("master", "worker"):
        watch(Part(f"The Spark {part}", partial(cluster.exited, part), partial(cluster.restart, part)))
    log.info("The Spark cluster is ready at %s (web UI http://127.0.0.1:%d); its logs are in %s",
             cluster.url, cluster.webui_port, cluster.home)
    return {"SPARK_MASTER": cluster.url, "SPARK_AUTH_PROPERTIES": str(cluster.auth_file)}


def _start_spark_connect(stack: ExitStack, data_dir: Path, port: int, settings: Settings,
                         watch: Callable[[Part], None], logins: list[str]) -> dict[str, str]:
    """Start the Spark Connect server; if it cannot start, each report run starts its own Spark.

    The database passwords of ``logins`` are kept in the server's own password file, so that
    the report job sends it none (``SPARK_JDBC_PASSWORD=server``). With ``ADVERTISED_HOSTS``, a
    TLS front on ``port + 1`` lets other machines' report jobs in (``open_spark_connect``).
    """
    home = data_dir / "spark-connect"
    pgpass = home / "pgpass" if logins else None
    if pgpass:
        home.mkdir(parents=True, exist_ok=True)
        write_pgpass(pgpass, logins)
    server = SparkConnectServer(
        home, port, timezone=settings.restaurant_timezone, master=settings.spark_master,
        driver_memory=settings.spark_driver_memory, jars_dir=settings.jars_dir,
        auth_file=Path(settings.spark_auth_properties) if settings.spark_auth_properties else None,
        pgpass_file=pgpass,
    )
    log.info("Starting the Spark Connect server on 127.0.0.1:%d ...", port)
    try:
        server.start()
    except StackError as exc:
        log.error("%s\nThe pipeline runs without it: each report run starts its own Spark.", exc)
        return {}
    stack.callback(_stopping, "the Spark Connect server", server.stop)
    watch(Part("The Spark Connect server", server.exited, server.start))
    log.info("The Spark Connect server is ready at %s; its token is in %s, its log is %s",
             shown_remote(server.remote), server.token_file, server.log_file)
    if settings.advertised_hosts:
        open_spark_connect(stack, server, local_ca(data_dir), settings.advertised_hosts, watch)
    return {"SPARK_REMOTE": server.remote, **({"SPARK_JDBC_PASSWORD": "server"} if pgpass else {})}


def open_spark_connect(stack: ExitStack, server: SparkConnectServer, ca: CertificateAuthority,
                       hosts: Sequence[str], watch: Callable[[Part], None]) -> TlsFront:
    """A TLS front on every interface, port ``server.port + 1``, with a certificate of ``ca`` for
    ``hosts``: pyspark sends its token to a server beyond loopback only over TLS."""
    keystore = server.home / "front.pem"
    ca.ensure_issued(keystore, "/CN=spark-connect", (*LOCAL_HOSTS, *hosts))
    front = TlsFront(EVERY_INTERFACE, server.port + 1, server.port, keystore, server.home / "front.log")
    log.info("Starting the Spark Connect TLS front on port %d of every interface ...", front.port)
    front.start()
    stack.callback(_stopping, "the Spark Connect TLS front", front.stop)
    watch(Part("The Spark Connect TLS front", front.exited, front.start))
    log.info("Other machines reach the Spark Connect server at sc://%s:%d/;use_ssl=true, with the token"
             " in %s (SPARK_CONNECT_TOKEN_FILE) and GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=%s",
             url_host(hosts[0]), front.port, server.token_file, ca.ca_file)
    return front


def open_postgres(stack: ExitStack, postgres: PostgresServer, ca: CertificateAuthority,
                  hosts: Sequence[str], watch: Callable[[Part], None], port: int) -> TlsFront:
    """A TLS front for PostgreSQL on every interface, port ``port``, with a certificate of ``ca``
    for ``hosts``: the wheel's server has no TLS of its own, so it stays on 127.0.0.1 and another
    machine's client reaches it only through the front (``sslmode=verify-full``, trusting ``ca``),
    logging in with the role's password, as one of the application's roles only: the front
    connects from ``POSTGRES_FRONT_SOURCE``, whose pg_hba.conf lines refuse the superuser."""
    home = postgres.home.parent / "postgres-front"
    home.mkdir(mode=0o700, exist_ok=True)
    keystore = home / "front.pem"
    ca.ensure_issued(keystore, "/CN=postgres", (*LOCAL_HOSTS, *hosts))
    postgres.admit_front(POSTGRES_FRONT_SOURCE, APP_ROLES)
    front = TlsFront(EVERY_INTERFACE, port, postgres.port, keystore, home / "front.log", postgres=True,
                     source=POSTGRES_FRONT_SOURCE)
    log.info("Starting the PostgreSQL TLS front on port %d of every interface ...", port)
    front.start()
    stack.callback(_stopping, "the PostgreSQL TLS front", front.stop)
    watch(Part("The PostgreSQL TLS front", front.exited, front.start))
    log.info("Other machines reach PostgreSQL at postgresql://ROLE@%s:%d/%s?sslmode=verify-full&sslrootcert=%s"
             " (the roles' passwords are in %s)", url_host(hosts[0]), port, DATABASE_NAME, ca.ca_file,
             postgres.role_password_file(WEB_ROLE).parent)
    return front


def _stopping(name: str, stop: object) -> None:
    log.info("Stopping %s ...", name)
    stop()  # type: ignore[operator]
