"""A TLS front for a server that listens on loopback only: it accepts TLS connections (HTTP/2 by
ALPN, as gRPC asks) on ``host:port`` and relays each one's bytes, decrypted, to 127.0.0.1:``backend``.

It authenticates nobody itself: the server behind it does (Spark Connect's token, which a client
now sends encrypted). A client that does not speak TLS, or offers no protocol but HTTP/2's, is
dropped at the handshake. ``python -m infra.tls_front --listen HOST:PORT --backend PORT --keystore
PEM`` runs one in the foreground; ``TlsFront`` runs one as a child process of ``make run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from infra.java import StackError
from infra.process import ChildProcess, spawn, tail

log = logging.getLogger("infra.tls_front")

ALPN = ["h2"]
CHUNK = 65_536
HANDSHAKE_SECONDS = 10.0


def server_context(keystore: Path) -> ssl.SSLContext:
    """TLS 1.2 or later, HTTP/2 by ALPN, the key and certificate in ``keystore`` (one PEM file)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(keystore)
    context.set_alpn_protocols(ALPN)
    return context


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until either side closes."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, backend: int, keystore: Path) -> None:
    """Accept TLS on ``host:port`` and relay each connection to 127.0.0.1:``backend``, until cancelled."""

    async def connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        peer = client_writer.get_extra_info("peername")
        if client_writer.get_extra_info("ssl_object").selected_alpn_protocol() not in ALPN:
            log.warning("Refused %s: it did not ask for HTTP/2 (ALPN h2).", peer)
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError as exc:
            log.warning("Could not reach 127.0.0.1:%d for %s: %s", backend, peer, exc)
            client_writer.close()
            return
        await asyncio.gather(relay(client_reader, server_writer), relay(server_reader, client_writer))

    server = await asyncio.start_server(connection, host, port, ssl=server_context(keystore),
                                        ssl_handshake_timeout=HANDSHAKE_SECONDS, reuse_address=True)
    log.info("Relaying TLS on %s:%d to 127.0.0.1:%d", host, port, backend)
    async with server:
        await server.serve_forever()


class TlsFront(ChildProcess):
    """``python -m infra.tls_front`` as a child process, its log in ``log_file``."""

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
        command = [sys.executable, "-m", "infra.tls_front", "--listen", f"{self.host}:{self.port}",
                   "--backend", str(self.backend), "--keystore", str(self.keystore)]
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


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.tls_front", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to accept TLS on")
    parser.add_argument("--backend", type=int, required=True, help="the port on 127.0.0.1 to relay to")
    parser.add_argument("--keystore", type=Path, required=True,
                        help="a PEM file: the key and its certificate")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(message)s")
    # The SSL handshake failures of clients that do not speak TLS are logged by asyncio as errors
    # with a traceback; one line says it.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(host.strip("[]"), int(port), args.backend, args.keystore))
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        loop.run_until_complete(task)
    log.info("Stopped.")


if __name__ == "__main__":
    _main()
