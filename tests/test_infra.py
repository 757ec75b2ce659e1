"""The local stack: what it says when Java or the broker cannot start, and its safe defaults."""

import ipaddress
import logging
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest

from infra.java import StackError
from infra.kafka_broker import KafkaBroker
from infra.postgres import PostgresServer
from infra.scratch import ScratchStack
from infra.stack import free_port, local_stack, worker_env
from restaurant_app.java_runtime import JavaUnavailable, java_executable
from restaurant_app.settings import PROJECT_ROOT, Settings


def fake_java_home(tmp_path: Path, version_line: str) -> Path:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def test_a_missing_java_is_named_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk-here"))
    with pytest.raises(JavaUnavailable, match="no 'java' was found"):
        java_executable()


@pytest.mark.parametrize("line", ['openjdk version "11.0.2" 2019-01-15', 'java version "1.8.0_351"'])
def test_an_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str):
    monkeypatch.setenv("JAVA_HOME", str(fake_java_home(tmp_path, line)))
    with pytest.raises(JavaUnavailable, match="Java 17 or newer is needed"):
        java_executable()


def test_java_17_or_newer_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = fake_java_home(tmp_path, 'openjdk version "21.0.4" 2024-07-16')
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert java_executable() == str(home / "bin" / "java")


@pytest.mark.integration
def test_a_broker_that_cannot_start_fails_with_the_tail_of_its_log(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = KafkaBroker(tmp_path / "kafka", taken.getsockname()[1], free_port(), heap="256m")
        with pytest.raises(StackError) as error:
            broker.start(timeout=60)
    message = str(error.value)
    assert "The Kafka broker exited" in message
    assert "Address already in use" in message
    assert broker.process is None


def listening_addresses(process: psutil.Process) -> set[str]:
    """The local addresses of the TCP sockets that ``process`` listens on."""
    return {conn.laddr.ip for conn in process.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN}


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


@pytest.mark.integration
def test_kafka_and_postgres_listen_on_127_0_0_1_only(stack: ScratchStack):
    kafka = listening_addresses(stack.kafka_process())
    postgres = listening_addresses(stack.postgres_process())
    assert kafka and postgres
    assert all(is_loopback(address) for address in kafka | postgres), (kafka, postgres)


def started_postgres(home: Path) -> PostgresServer:
    server = PostgresServer(home / "postgres", free_port())
    server.start()
    return server


def refuses_without_password(server: PostgresServer) -> bool:
    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres", connect_timeout=10).close()
    except psycopg.OperationalError as error:
        return "password" in str(error)
    return False


@pytest.mark.integration
def test_a_new_cluster_asks_for_the_password_kept_in_a_private_file(own_service_home: Path):
    server = started_postgres(own_service_home)
    try:
        password = server.password_file.read_text().strip()
        mode = server.password_file.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == os.geteuid()
        assert len(password) >= 32
        assert f":{password}@" in server.url("restaurant")
        assert refuses_without_password(server)
        with psycopg.connect(server.url()) as conn:
            verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()
        assert verifier[0].startswith("SCRAM-SHA-256$")
        assert [path.name for path in server.home.iterdir() if "initdb" in path.name] == []
        assert password not in server.log_file.read_text()
    finally:
        server.stop()


def as_made_by_trust(server: PostgresServer) -> None:
    """Turn a cluster into what earlier versions made: no password, pg_hba.conf trusting everyone."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("ALTER ROLE postgres PASSWORD NULL")
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.stop()
    hba = server.data_dir / "pg_hba.conf"
    trusting, changed = re.subn(r"scram-sha-256$", "trust", hba.read_text(), flags=re.MULTILINE)
    assert changed >= 2
    hba.write_text(trusting)
    server.password_file.unlink()


@pytest.mark.integration
def test_a_cluster_made_with_trust_is_given_a_password_and_keeps_its_data(
    own_service_home: Path, caplog: pytest.LogCaptureFixture
):
    server = started_postgres(own_service_home)
    as_made_by_trust(server)
    with caplog.at_level(logging.INFO, logger="infra"):
        server.start()
    try:
        assert "it now asks for the one kept in" in caplog.text
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert "trust" not in [line.split()[-1] for line in (server.data_dir / "pg_hba.conf").read_text()
                               .splitlines() if line.strip() and not line.startswith("#")]
        assert refuses_without_password(server)
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT id FROM kept").fetchall() == [(42,)]
    finally:
        server.stop()


@pytest.mark.integration
def test_make_run_gives_the_worker_the_password_and_never_logs_it(
    stack: ScratchStack, own_service_home: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.setenv("KAFKA_BROKER", stack.bootstrap_servers)  # start PostgreSQL only
    monkeypatch.delenv("DATABASE_URL", raising=False)
    port = free_port()
    with caplog.at_level(logging.INFO, logger="infra"), \
            local_stack(own_service_home, Settings.from_env(), postgres_port=port) as env:
        password = (own_service_home / "postgres" / "password").read_text().strip()
        assert env["DATABASE_URL"] == f"postgresql://postgres:{password}@127.0.0.1:{port}/restaurant"
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("restaurant",)
        psql = subprocess.run([sys.executable, "-m", "infra", "psql"], input="SELECT 'psql' || 'works';\n",
                              env={**os.environ, **env}, cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=60, check=False)
        roles = {role: (own_service_home / "postgres" / "roles" / role).read_text().strip()
                 for role in ("restaurant_ingest", "restaurant_web", "restaurant_reports")}
        assert env["INGEST_DATABASE_URL"] == (
            f"postgresql://restaurant_ingest:{roles['restaurant_ingest']}@127.0.0.1:{port}/restaurant")
        assert env["WEB_DATABASE_URL"] == (
            f"postgresql://restaurant_web:{roles['restaurant_web']}@127.0.0.1:{port}/restaurant")
        assert env["REPORT_JOB_DATABASE_URL"] == (
            f"postgresql://restaurant_reports:{roles['restaurant_reports']}@127.0.0.1:{port}/restaurant")
        workers = worker_env(env)  # the long-running workers hold no superuser login
        assert workers["DATABASE_URL"] == env["INGEST_DATABASE_URL"] and "INGEST_DATABASE_URL" not in workers
        assert not any(password in value for value in workers.values())
        with psycopg.connect(env["WEB_DATABASE_URL"]) as conn:  # migrated already, and read only
            assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM orders")
    assert "psqlworks" in psql.stdout, psql.stderr
    assert f"PostgreSQL is ready: 127.0.0.1:{port}/restaurant" in caplog.text
    assert all(secret not in caplog.text for secret in (password, *roles.values()))
