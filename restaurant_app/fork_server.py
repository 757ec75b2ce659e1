"""A fork server: Python commands started as forks of one process that has imported their modules.

Starting ``python -m spark_reports`` costs about 0.8 CPU-seconds before the job does anything,
most of it importing pyspark's Spark Connect client with pandas and pyarrow. The fork server
imports those modules once; each command then starts as a fork of it, with the modules loaded.

Each command still runs in a process of its own, as ``python`` would run it: its own process
group (killing the group kills what it started), its own environment, working directory,
standard output and standard error, and exit code. Its parent is the fork server, which ends
when the process that started it closes its end of their socket (or dies); the commands it
forked stay, and the report job's watchdog stops them (``spark_reports.watchdog``).

The protocol is one message per packet on a ``SOCK_SEQPACKET`` socket pair. A request is JSON
(``argv``, ``env``, ``cwd``) with the command's standard output and error as two file
descriptors; the server answers ``{"pid": ...}`` for each request, in order, and later
``{"pid": ..., "returncode": ...}`` when that process ends (negative: killed by that signal).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import runpy
import selectors
import signal
import socket
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from restaurant_app.errors import PipelineError

log = logging.getLogger(__name__)

MESSAGE_BYTES = 1 << 20
"""The largest request (a command line and its environment) or answer."""
STOP_SECONDS = 5.0
"""How long a server has to end once its socket is closed before it is killed."""


class ForkServerGone(PipelineError, RuntimeError):
    """The fork server stopped, so a command could not start or its end is unknown."""


class ForkedProcess:
    """A command forked by the server: the parts of ``asyncio.subprocess.Process`` the runner uses."""

    def __init__(self, pid: int, stdout: int, stderr: int, ended: asyncio.Future[int]) -> None:
        self.pid = pid
        self._output = (stdout, stderr)
        self._ended = ended
        self.returncode: int | None = None

    async def wait(self) -> int:
        """Wait until the process ends; return its exit code."""
        self.returncode = await asyncio.shield(self._ended)
        return self.returncode

    async def communicate(self) -> tuple[bytes, bytes]:
        """Read standard output and error to their end and wait for the process: (stdout, stderr)."""
        stdout, stderr = await asyncio.gather(*(read_to_end(fd) for fd in self._output))
        await self.wait()
        return stdout, stderr


async def read_to_end(fd: int) -> bytes:
    """Everything written to the pipe ``fd`` until its last writer closes it; ``fd`` is closed."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                os.fdopen(fd, "rb", buffering=0))
    try:
        return await reader.read()
    finally:
        transport.close()


class ForkServer:
    """The client side: starts the server process on first use and asks it to fork commands."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self.preload = list(preload)
        self.process: asyncio.subprocess.Process | None = None
        self._socket: socket.socket | None = None
        self._starting: deque[asyncio.Future[tuple[int, asyncio.Future[int]]]] = deque()
        self._running: dict[int, asyncio.Future[int]] = {}
        self._starting_lock = asyncio.Lock()

    async def start(self) -> int:
        """Start the server unless it is running; return its process id."""
        async with self._starting_lock:
            if self._socket is None or self.process is None or self.process.returncode is not None:
                await self._start()
            assert self.process is not None
            return self.process.pid

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str],
                    cwd: Path | None = None) -> ForkedProcess:
        """Fork the Python command line ``argv`` (``python -m module ...``, ``python script ...``
        or ``python -c code ...``), its output in pipes; starts the server if it is not running."""
        await self.start()
        request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": str(cwd or Path.cwd())})
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        try:
            pid, ended = await self._fork(request.encode(), stdout_w, stderr_w)
        except BaseException:
            os.close(stdout_r)
            os.close(stderr_r)
            raise
        return ForkedProcess(pid, stdout_r, stderr_r, ended)

    async def _fork(self, request: bytes, stdout: int, stderr: int) -> tuple[int, asyncio.Future[int]]:
        """Send one request with the write ends of its pipes, which are closed here; return the
        forked process's id and the future of its end."""
        assert self._socket is not None
        started = asyncio.get_running_loop().create_future()
        self._starting.append(started)
        try:
            socket.send_fds(self._socket, [request], [stdout, stderr])
        except OSError as exc:
            self._starting.remove(started)
            raise ForkServerGone(f"the fork server is not answering: {exc}") from exc
        finally:
            os.close(stdout)
            os.close(stderr)
        return await started

    async def _start(self) -> None:
        await self.stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__, str(theirs.fileno()), *self.preload,
                pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL,
            )
        ours.setblocking(False)
        self._socket = ours
        asyncio.get_running_loop().add_reader(ours, self._receive)
        log.info("Started a fork server (pid %d) that imports %s once for every command it forks.",
                 self.process.pid, ", ".join(self.preload) or "nothing")

    def _receive(self) -> None:
        assert self._socket is not None
        try:
            message = self._socket.recv(MESSAGE_BYTES)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if not message:
            self._lost()
            return
        answer = json.loads(message)
        if "returncode" in answer:
            ended = self._running.pop(answer["pid"])
            if not ended.done():
                ended.set_result(answer["returncode"])
        else:
            ended = self._running[answer["pid"]] = asyncio.get_running_loop().create_future()
            started = self._starting.popleft()
            if started.cancelled():  # nobody waits for this command any more
                os.kill(answer["pid"], signal.SIGKILL)
            else:
                started.set_result((answer["pid"], ended))

    def _lost(self) -> None:
        """The server is gone: fail whatever waits on it; the next ``spawn`` starts a new one."""
        self._close_socket()
        gone = ForkServerGone("the fork server stopped")
        for future in [*self._starting, *self._running.values()]:
            if not future.done():
                future.set_exception(gone)
        self._starting.clear()
        self._running.clear()

    def _close_socket(self) -> None:
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket)
            self._socket.close()
            self._socket = None

    async def stop(self) -> None:
        """Stop the server (it ends when its socket closes, or is killed if it does not within
        ``STOP_SECONDS``, as while still importing); commands it forked go on."""
        self._close_socket()
        if self.process is None or self.process.returncode is not None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.process.wait()), STOP_SECONDS)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def serve(channel: socket.socket, preload: Sequence[str]) -> None:
    """The server process: import ``preload``, then fork a process for each request until the
    client closes the socket, and report each one's end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker, which closes the socket
    for module in preload:
        importlib.import_module(module)
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    selector.register(wakeup_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is wakeup_r:
                os.read(wakeup_r, 4096)
                if not report_ended(channel):
                    return
                continue
            message, fds, _, _ = socket.recv_fds(channel, MESSAGE_BYTES, 2)
            if not message:
                return
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                for fd in (wakeup_r, wakeup_w):
                    os.close(fd)
                selector.close()
                channel.close()
                run_command(request, *fds)
            for fd in fds:
                os.close(fd)
            if not answer(channel, {"pid": pid}):
                return


def report_ended(channel: socket.socket) -> bool:
    """Wait for every forked process that has ended and tell the client its exit code; return
    False if the client is gone."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return True
        if not answer(channel, {"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}):
            return False


def answer(channel: socket.socket, message: dict) -> bool:
    """Send ``message`` to the client; return False if the client is gone."""
    try:
        channel.send(json.dumps(message).encode())
    except OSError:
        return False
    return True


def run_command(request: dict, stdout: int, stderr: int) -> NoReturn:
    """In the forked process: become the command, as ``python`` would run it, and exit with it."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()  # a process group of its own, which the runner kills as one
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    os.close(stdout)
    os.close(stderr)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    arguments = request["argv"][1:]
    # Anything the command raises, SystemExit included, ends this process as it would end python.
    if arguments[:1] == ["-m"]:
        sys.argv = [arguments[1], *arguments[2:]]
        runpy.run_module(arguments[1], run_name="__main__", alter_sys=True)
    elif arguments[:1] == ["-c"]:
        sys.argv = ["-c", *arguments[2:]]
        exec(compile(arguments[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = arguments
        runpy.run_path(arguments[0], run_name="__main__")
    raise SystemExit(0)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2:])
