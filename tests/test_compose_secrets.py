"""docker-compose.yml's secrets (infra/compose_secrets.py) and Spark Connect's TLS front
(infra/tls_front.py), made and used here, without Docker: openssl makes the certificates."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from pathlib import Path

import pytest

from infra import compose_secrets
from infra.compose_secrets import ROTATED, SERVICES, SUPERUSER_PREVIOUS, ComposeSecrets
from infra.tls_front import serve

pytestmark = pytest.mark.integration


@pytest.fixture
def made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ComposeSecrets, dict[Path, int]]:
    """The secrets made under a temporary root; the owners `secrets` gives, recorded, not set."""
    owners: dict[Path, int] = {}
    monkeypatch.setattr(compose_secrets.os, "chown",
                        lambda path, uid, gid: owners.__setitem__(Path(path), uid))
    secrets = ComposeSecrets(tmp_path)
    secrets.ensure()
    return secrets, owners


def contents(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in folder.iterdir()}


def test_each_service_gets_only_its_files_owned_by_its_user_and_private(made):
    secrets, owners = made
    for service in SERVICES:
        folder = secrets.root / service.volume
        assert folder.stat().st_mode & 0o777 == 0o700 and owners[folder] == service.uid
        made_now = [name for name in service.files if name != SUPERUSER_PREVIOUS]  # only after a rotation
        assert sorted(path.name for path in folder.iterdir()) == sorted(made_now)
        for path in folder.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600 and owners[path] == service.uid, path
    assert secrets.made.stat().st_mode & 0o777 == 0o700 and secrets.made not in owners  # root's
    worker = contents(secrets.root / "worker")
    assert "admin" not in " ".join(worker) and "ca.key" not in worker  # no other service's secret
    assert ":postgres:" not in worker["worker.pgpass"]  # no superuser's login in the workers
    assert all("postgres.password" not in contents(secrets.root / s.volume)  # the superuser's
               for s in SERVICES if s.volume not in ("postgres", "setup"))


def test_a_second_start_keeps_the_secrets_and_rotate_changes_only_the_rotated(made):
    secrets, _ = made
    before = contents(secrets.made)
    secrets.ensure()
    after = contents(secrets.made)
    assert {k: v for k, v in after.items() if k != "scram-arguments"} == {
        k: v for k, v in before.items() if k != "scram-arguments"}  # new salts, same passwords
    assert SUPERUSER_PREVIOUS not in after
    assert sorted(secrets.rotate()) == sorted([*ROTATED, "postgres.password"])
    secrets.ensure()
    rotated = contents(secrets.made)
    for name in (*ROTATED, "postgres.password", "broker.pem", "postgres.pem", "postgres-replica.pem",
                 "spark-connect.pem", "spark-cluster.properties"):
        assert rotated[name] != before[name], name
    for name in ("admin.password", "replication.password"):
        assert rotated[name] == before[name], name
    assert rotated[SUPERUSER_PREVIOUS] == before["postgres.password"]  # for setup to log in once
    for pem in ("broker.pem", "postgres.pem", "spark-connect.pem"):  # issued again by the new CA
        assert secrets.kafka.ca.signed(secrets.made / pem), pem
    role = "restaurant_web"
    assert rotated[f"{role}.password"].strip() in rotated["worker.pgpass"]  # handed out anew
    setup = contents(secrets.root / "setup")
    assert setup[SUPERUSER_PREVIOUS] == before["postgres.password"]
    assert setup["worker.password"] == rotated["worker.password"]


def test_the_spark_cluster_and_spark_connect_encrypt_and_open_no_ui_or_rest_server(made):
    secrets, _ = made
    cluster = dict(line.split("=", 1) for line in contents(secrets.root / "spark")[
        "spark-cluster.properties"].splitlines())
    assert cluster["spark.authenticate"] == "true" and len(cluster["spark.authenticate.secret"]) >= 32
    assert cluster["spark.network.crypto.enabled"] == "true"
    assert cluster["spark.network.crypto.saslFallback"] == "false"  # no unencrypted SASL instead
    assert cluster["spark.network.crypto.cipher"] == "AES/GCM/NoPadding"  # authenticated encryption
    assert cluster["spark.master.rest.enabled"] == "false"
    connect = dict(line.split("=", 1) for line in contents(secrets.root / "spark-connect")[
        "spark-connect.properties"].splitlines())
    assert connect.items() >= cluster.items()
    assert connect["spark.ui.enabled"] == "false"


def test_the_pgpass_files_hold_each_role_s_password_for_its_servers(made):
    secrets, _ = made
    password = (secrets.made / "restaurant_ingest.password").read_text().strip()
    worker = (secrets.made / "worker.pgpass").read_text()
    assert f"postgres:5432:restaurant:restaurant_ingest:{password}" in worker
    job = (secrets.made / "job.pgpass").read_text().split()
    assert [line.rsplit(":", 2)[0] for line in job] == [
        "postgres:5432:restaurant", "postgres-replica:5432:restaurant"]
    assert all(line.split(":")[3] in ("restaurant_reports", "restaurant_web") for line in job)


@contextlib.asynccontextmanager
async def echo_server():
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def through_front(pem: Path, context: ssl.SSLContext) -> tuple[bytes, str | None]:
    """Send a line through a TLS front on ``pem`` to an echo server; its answer and the ALPN chosen."""
    async with echo_server() as target:
        port = free_port()
        front = asyncio.ensure_future(serve(("127.0.0.1", port), ("127.0.0.1", target), pem))
        try:
            for _ in range(50):
                try:
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", port, ssl=context, server_hostname="spark-connect")
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.1)
            writer.write(b"hello\n")
            answer = await reader.readline()
            protocol = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            writer.close()
            return answer, protocol
        finally:
            front.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await front


def test_the_tls_front_relays_with_the_certificate_made_for_spark_connect_and_offers_http2(made):
    secrets, _ = made
    pem = secrets.root / "spark-connect" / "spark-connect.pem"
    trusting = ssl.create_default_context(cafile=str(secrets.root / "worker" / "ca.pem"))
    trusting.set_alpn_protocols(["h2"])
    assert asyncio.run(through_front(pem, trusting)) == (b"hello\n", "h2")
    with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust the compose CA
        asyncio.run(through_front(pem, ssl.create_default_context()))
    assert os.stat(pem).st_mode & 0o777 == 0o600
