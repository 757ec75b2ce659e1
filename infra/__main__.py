"""The local stack's commands.

``python -m infra run``: Kafka, PostgreSQL and the Faust worker, in the foreground;
Ctrl-C (or SIGTERM) stops the worker first, then every service this command started.
``python -m infra psql``: a psql shell on the pipeline's database.
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
from typing import NoReturn

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.java import StackError
from infra.postgres import POSTGRES_BIN_PATH
from infra.process import terminate
from infra.stack import DATABASE_NAME, local_postgres, local_stack
from restaurant_app.java_runtime import JavaUnavailable
from restaurant_app.settings import Settings

log = logging.getLogger("infra")


class Stop(Exception):
    """A signal asked us to shut down."""


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def run(settings: Settings, worker_args: list[str]) -> int:
    with local_stack(settings.data_dir) as env:
        command = [sys.executable, "-m", "faust", "-A", "restaurant_app", "worker",
                   "-l", settings.log_level, *worker_args]
        log.info("Starting the pipeline: faust -A restaurant_app worker")
        worker = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True)
        try:
            return worker.wait()
        except Stop as stop:
            log.info("Received %s; stopping the worker ...", stop)
            terminate(worker, timeout=60)
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start Kafka, PostgreSQL and the Faust worker")
    commands.add_parser("psql", help="open psql on the pipeline's database (make run must be up)")
    args, worker_args = parser.parse_known_args()
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
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
