"""The local stack's commands.

``python -m infra run``: Kafka (KAFKA_NODES nodes), PostgreSQL, a Spark Connect server (on a Spark
master and worker with SPARK_CLUSTER=1) and WORKERS Faust workers, in the foreground; Ctrl-C (or
SIGTERM) stops the workers first, then every service this command started. Every process it
starts is started again when it exits (``infra.supervisor``).
``python -m infra psql``: a psql shell on the pipeline's database.
``python -m infra partitions N``: give ORDERS_TOPIC N partitions in all (Kafka never takes any away).
``python -m infra kafka-password USER``: a new password for ``worker`` or ``pos`` on a ``KAFKA_SECURE`` Kafka.
``python -m infra compose-secrets ROOT [--rotate]``, ``compose-setup``, ``tls-front``: docker-compose.yml's
one-shot services ``secrets`` and ``setup``, and Spark Connect's TLS front (``infra.compose_secrets``,
``infra.tls_front``).
"""

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path
from typing import NoReturn

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.errors import KafkaError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.compose_secrets import ComposeSecrets, set_up
from infra.java import StackError
from infra.kafka_secrets import ROTATABLE
from infra.postgres import POSTGRES_BIN_PATH
from infra.process import has_exited, terminate_all
from infra.rotation import rotate_secrets
from infra.stack import DATABASE_NAME, local_kafka_secrets, local_postgres, local_stack, worker_env
from infra.supervisor import GaveUp, Supervisor
from infra.tls_front import address, serve
from restaurant_app.java_runtime import JavaUnavailable
from restaurant_app.logs import configure_logging
from restaurant_app.settings import Settings, settings_or_exit

log = logging.getLogger("infra")

WORKER_STOP_SECONDS = 90.0
"""Kafka's session timeout (60 s), which a worker caught joining its group may wait out, and some."""


class Stop(BaseException):
    """A signal asked us to shut down; a BaseException, so that no ``except Exception`` (a restart
    that fails, say) swallows it."""


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def run(settings: Settings, worker_args: list[str]) -> int:
    """Start the stack and the workers, and keep every one of them running until a signal or a
    part that keeps dying stops it all: the workers first, then the services, in reverse order."""
    supervisor = Supervisor()
    with local_stack(settings.data_dir, settings, kafka_port=settings.kafka_port,
                     postgres_port=settings.postgres_port, spark_port=settings.spark_connect_port,
                     replica_port=settings.postgres_port + 1, supervisor=supervisor) as env:
        workers: list[Worker] = []
        return_code = 0
        try:
            for number in range(1, settings.workers + 1):
                workers.append(Worker(settings, number, {**os.environ, **worker_env(env)}, worker_args))
                supervisor.add(workers[-1])
            supervisor.watch(threading.Event())  # until a signal (Stop) or GaveUp
        except Stop as stop:
            log.info("Received %s; stopping the worker(s) ...", stop)
        except GaveUp as exc:
            log.error("%s make run stops.", exc)
            return_code = 1
        stop_workers([worker.process for worker in workers])
        return return_code


class Worker:
    """Worker ``number`` of ``make run``: a Faust worker process, started again by ``restart``."""

    def __init__(self, settings: Settings, number: int, env: dict[str, str], worker_args: list[str]
                 ) -> None:
        self.name = f"Worker {number}"
        self._start = partial(start_worker, settings, number, env, worker_args)
        self.process = self._start()

    def exited(self) -> str | None:
        return has_exited(self.process)

    def restart(self) -> None:
        self.process = self._start()


def own_place(settings: Settings, number: int) -> dict[str, str]:
    """Worker 1 runs as configured; worker N gets port WEB_PORT + N - 1 and the folder DATA_DIR/worker-N."""
    if number == 1:
        return {}
    return {"WEB_PORT": str(settings.web_port + number - 1),
            "DATA_DIR": str(settings.data_dir / f"worker-{number}")}


def start_worker(settings: Settings, number: int, env: dict[str, str], worker_args: list[str]
                 ) -> subprocess.Popen:
    env = {**env, **own_place(settings, number)}
    command = [sys.executable, "-m", "faust", "-A", "restaurant_app", "worker", *worker_args]
    log.info("Starting worker %d of %d: faust -A restaurant_app worker, web server on port %s",
             number, settings.workers, env.get("WEB_PORT", settings.web_port))
    return subprocess.Popen(command, env=env, start_new_session=True)


def stop_workers(workers: list[subprocess.Popen]) -> None:
    """Stop every worker at once. One caught joining its group waits for the group to settle,
    up to Kafka's session timeout (60 s), before it can leave cleanly."""
    terminate_all(workers, timeout=WORKER_STOP_SECONDS)
    for number, worker in enumerate(workers, 1):
        log.info("Worker %d stopped (exit code %d).", number, worker.returncode)


def add_partitions(settings: Settings, count: int) -> int:
    """Give the orders topic ``count`` partitions in all; the workers use them once restarted.

    On ``make run``'s secure Kafka (KAFKA_SECURE) as its ``admin``: the workers may not alter topics.
    """
    security = (local_kafka_secrets(settings.data_dir).client("admin") if settings.kafka_secure
                else settings.kafka_security)

    async def grow() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **security.client_options())
        await admin.start()
        try:
            await admin.create_partitions({settings.orders_topic: NewPartitions(count)})
        finally:
            await admin.close()

    try:
        asyncio.run(grow())
    except KafkaError as exc:
        log.error("Topic %r could not get %d partitions: %s", settings.orders_topic, count, exc)
        return 1
    log.info("Topic %r has %d partitions now; restart the workers to share them.",
             settings.orders_topic, count)
    return 0


def change_password(settings: Settings, user: str) -> int:
    """Rotate ``user``'s password on ``make run``'s secure Kafka; say what to restart."""
    secrets = local_kafka_secrets(settings.data_dir)
    try:
        secrets.rotate(user, settings.bootstrap_servers)
    except StackError as exc:
        log.error("%s", exc)
        return 1
    log.info("Kafka's user %s has a new password, in %s; the old one no longer logs in. Restart"
             " what logs in as %s (make run's workers, your points of sale) to use it.",
             user, secrets.password_file(user), user)
    return 0


def psql(settings: Settings) -> NoReturn:
    """Replace this process with psql, connected to ``DATABASE_URL`` or the local server.

    The password goes in PGPASSWORD, not on the command line, which any user can read.
    """
    url = os.environ.get("DATABASE_URL") or local_postgres(settings.data_dir).url(DATABASE_NAME)
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
    psql = str(POSTGRES_BIN_PATH / "psql")
    os.execve(psql, [psql, make_conninfo(**params)], env)


def compose_command(settings: Settings, args: argparse.Namespace) -> int:
    """docker-compose.yml's commands: ``compose-secrets``, ``compose-setup`` and ``tls-front``."""
    if args.command == "compose-secrets":
        made = ComposeSecrets(args.root)
        forgotten = made.rotate() if args.rotate else []
        made.ensure()
        log.info("The services' secrets are ready in %s (%d made anew: %s).", args.root, len(forgotten),
                 ", ".join(forgotten) or "none asked")
    elif args.command == "compose-setup":
        log.info("Set up: %s.", "; ".join(set_up(settings)))
    else:
        asyncio.run(serve(args.listen, args.to, args.pem, postgres=args.postgres, source=args.source))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start Kafka, PostgreSQL, Spark Connect and the Faust worker(s)")
    commands.add_parser("psql", help="open psql on the pipeline's database (make run must be up)")
    grow = commands.add_parser("partitions", help="give ORDERS_TOPIC more partitions (make run must be up)")
    grow.add_argument("count", type=int, help="how many partitions the topic should have in all")
    rotate = commands.add_parser("kafka-password", help="give a user of the secure Kafka a new password"
                                                        " (KAFKA_SECURE=1 make run must be up)")
    rotate.add_argument("user", choices=ROTATABLE, help="whose password to change")
    commands.add_parser("rotate-secrets", help="make run stopped: its next start makes new passwords"
                        " for the PostgreSQL roles, a new Spark Connect token and cluster secret")
    made = commands.add_parser("compose-secrets", help="docker compose's service `secrets`: make what"
                               " is missing under ROOT and give each service's volume its own files")
    made.add_argument("root", type=Path, help="the folder holding every secrets volume")
    made.add_argument("--rotate", action="store_true", help="first forget the secrets a restart can change")
    commands.add_parser("compose-setup", help="docker compose's service `setup`: migrations, the roles'"
                        " logins, Kafka's ACLs")
    front = commands.add_parser("tls-front", help="take TLS connections and relay them to a local server")
    front.add_argument("--listen", type=address, required=True, help="HOST:PORT to take TLS on")
    front.add_argument("--to", type=address, required=True, help="HOST:PORT of the server")
    front.add_argument("--pem", type=Path, required=True, help="the key and certificate (PEM)")
    front.add_argument("--postgres", action="store_true", help="PostgreSQL's way into TLS (an SSLRequest"
                       " first) rather than TLS from the first byte with HTTP/2")
    front.add_argument("--from", dest="source", help="the local address to connect to the server from")
    args, worker_args = parser.parse_known_args()
    settings = settings_or_exit()
    configure_logging(settings)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    if args.command == "partitions":
        return add_partitions(settings, args.count)
    if args.command == "kafka-password":
        return change_password(settings, args.user)
    try:
        if args.command in ("compose-secrets", "compose-setup", "tls-front"):
            return compose_command(settings, args)
        if args.command == "rotate-secrets":
            removed = rotate_secrets(settings.data_dir)
            log.info("Removed %d secret file(s) under %s; make run makes new ones at its next start.",
                     len(removed), settings.data_dir)
            return 0
        if args.command == "psql":
            return psql(settings)
        if args.command == "run":
            return run(settings, worker_args)
    except (StackError, JavaUnavailable) as exc:
        log.error("%s", exc)
        return 1
    except Stop:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
