"""A TLS front for a server that speaks none: ``python -m infra tls-front``.

docker-compose.yml runs one beside the Spark Connect server, in its network namespace: the
server listens on 127.0.0.1 only, and the front takes TLS connections on the network (offering
HTTP/2, as gRPC asks) and passes each one's bytes to the server and back. pyspark sends its
token to a server that is not on loopback only over TLS, so the report job reaches Spark Connect
as ``sc://spark-connect:15443/;use_ssl=true``, trusting the compose CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


def server_context(pem: Path) -> ssl.SSLContext:
    """TLS 1.2 or newer with the key and certificate in ``pem``, offering HTTP/2 (gRPC's)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pem)
    context.set_alpn_protocols(["h2"])
    return context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()


async def _relay(target: tuple[str, int], client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError as exc:
        log.warning("A client came, but the server at %s:%d does not answer: %s", *target, exc)
        client_writer.close()
        return
    await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))


async def serve(listen: tuple[str, int], target: tuple[str, int], pem: Path) -> None:
    """Take TLS connections on ``listen`` and relay each to ``target`` until cancelled."""
    server = await asyncio.start_server(
        lambda reader, writer: _relay(target, reader, writer), *listen, ssl=server_context(pem))
    log.info("TLS front on %s:%d, for the server on %s:%d", *listen, *target)
    async with server:
        await server.serve_forever()


def address(text: str) -> tuple[str, int]:
    """``host:port`` as a pair."""
    host, _, port = text.rpartition(":")
    return host, int(port)
