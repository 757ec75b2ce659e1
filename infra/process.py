"""Starting and stopping a long-running child process with its output in a log file."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from infra.java import StackError


def spawn(command: list[str], log_file: Path, **kwargs: object) -> subprocess.Popen:
    """Start ``command`` in its own process group, appending its output to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )


def terminate(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Ask a process group to stop; kill it if it has not stopped within ``timeout``."""
    terminate_all([process], timeout)


def terminate_all(processes: list[subprocess.Popen], timeout: float) -> None:
    """Ask process groups to stop, all at once; kill those still running after ``timeout``."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def check_port_is_free(port: int, service: str, advice: str) -> None:
    """Fail at once, saying so in one line, when ``service`` could not listen on 127.0.0.1:``port``.

    Connections closed a moment ago (TIME_WAIT, after a crash) do not count: servers reuse the address.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StackError(
                f"{service} cannot listen on 127.0.0.1:{port}: {exc.strerror}. {advice}"
            ) from None


def tail(log_file: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    if not log_file.exists():
        return "(no log written)"
    return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])


def describe_exit(returncode: int) -> str:
    """A child's exit status in words: its code, or the signal that ended it."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def has_exited(process: subprocess.Popen | None) -> str | None:
    """None while ``process`` runs; else how it ended, in words."""
    if process is None:
        return "is not running"
    code = process.poll()
    return None if code is None else describe_exit(code)


class ChildProcess:
    """Owns one long-running child process, in ``self.process``; ``stop`` and ``kill`` end it."""

    process: subprocess.Popen | None = None
    stop_timeout: float = 30.0

    def stop(self) -> None:
        """Ask it to stop (SIGTERM to its group), killing it if it has not within ``stop_timeout``."""
        if self.process is not None:
            terminate(self.process, timeout=self.stop_timeout)
            self.process = None

    def exited(self) -> str | None:
        """None while it runs; else how it ended, in words (for the supervisor)."""
        return has_exited(self.process)

    def kill(self) -> None:
        """SIGKILL: it gets no chance to flush, commit or hand anything over."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
