"""A TLS front for a server that speaks none: ``python -m infra tls-front``.

It takes TLS connections (1.2 or newer, offering HTTP/2 by ALPN, as gRPC asks) and passes each
one's bytes to a server on loopback and back; a client that does not speak TLS, or asks for no
HTTP/2, is dropped. It authenticates nobody itself: the server behind it does (Spark Connect's
token, which pyspark sends to a server that is not on loopback only over TLS).

docker-compose.yml runs one beside the Spark Connect server, in its network namespace, so the
report job reaches it as ``sc://spark-connect:15443/;use_ssl=true``, trusting the compose CA;
``make run`` with ``ADVERTISED_HOSTS`` runs one (``TlsFront``) on every interface, port 15003.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from infra.java import StackError
from infra.process import ChildProcess, spawn, tail

log = logging.getLogger(__name__)

ALPN = ["h2"]
CHUNK = 64 * 1024
HANDSHAKE_SECONDS = 10.0


def server_context(pem: Path) -> ssl.SSLContext:
    """TLS 1.2 or newer with the key and certificate in ``pem``, offering HTTP/2 (gRPC's)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pem)
    context.set_alpn_protocols(ALPN)
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
    peer = client_writer.get_extra_info("peername")
    if client_writer.get_extra_info("ssl_object").selected_alpn_protocol() not in ALPN:
        log.warning("Refused %s: it did not ask for HTTP/2 (ALPN h2).", peer)
        client_writer.close()
        return
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
        lambda reader, writer: _relay(target, reader, writer), *listen, ssl=server_context(pem),
        ssl_handshake_timeout=HANDSHAKE_SECONDS, reuse_address=True)
    log.info("TLS front on %s:%d, for the server on %s:%d", *listen, *target)
    async with server:
        await server.serve_forever()


def address(text: str) -> tuple[str, int]:
    """``host:port`` as a pair (an IPv6 host may be in brackets)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class TlsFront(ChildProcess):
    """``python -m infra tls-front`` as a child process, relaying ``host:port`` to 127.0.0.1:``backend``."""

    stop_timeout = 5.0

    def __init__(self, host: str, port: int, backend: int, keystore: Path, log_file: Path) -> None:
        self.host = host
        self.port = port
        self.backend = backend
        self.keystore = keystore
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until it accepts connections."""
        command = [sys.executable, "-m", "infra", "tls-front", "--listen", f"{self.host}:{self.port}",
                   "--to", f"127.0.0.1:{self.backend}", "--pem", str(self.keystore)]
        self.process = spawn(command, self.log_file)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise StackError(f"The TLS front on {self.host}:{self.port} did not start."
                                 f" Last lines of {self.log_file}:\n{tail(self.log_file)}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=1.0).close()
        except OSError:
            return False
        return True
