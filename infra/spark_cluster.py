"""A Spark standalone cluster from the pyspark wheel: one master and one worker on 127.0.0.1."""

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from infra.java import StackError
from infra.process import check_port_is_free, has_exited, spawn, tail, terminate
from infra.secret_file import make_spark_auth_file
from infra.spark_connect import SPARK_HOME
from restaurant_app.java_runtime import java_executable

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class SparkCluster:
    """A standalone master on 127.0.0.1:``port`` (web UI ``webui_port``) and one worker of
    ``cores`` cores and ``memory`` for executors (web UI ``webui_port + 1``), logs and work
    folders in ``home``.

    Both, and every application on them, authenticate with the shared secret of
    ``home/auth.properties`` (``spark.authenticate``; made on first start, readable by its owner
    only, passed as a properties file, never on a command line); their web UIs have no kill links.
    """

    def __init__(self, home: Path, port: int = 7077, webui_port: int = 8080, *,
                 cores: int = 1, memory: str = "1g") -> None:
        self.home = home
        self.port = port
        self.webui_port = webui_port
        self.cores = cores
        self.memory = memory
        self.master_log = home / "master.log"
        self.worker_log = home / "worker.log"
        self.auth_file = home / "auth.properties"
        self.master: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The master's address in the form of ``SPARK_MASTER``."""
        return f"spark://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        """Start the master, then the worker, and wait until the worker has registered."""
        java_executable()
        for port in (self.port, self.webui_port, self.webui_port + 1):
            check_port_is_free(port, "The Spark cluster", "Stop whatever holds that port, or set"
                               " SPARK_MASTER to a master already running.")
        self.home.mkdir(parents=True, exist_ok=True)
        make_spark_auth_file(self.auth_file)
        try:
            self.master = spawn(self._master_command(), self.master_log, env=self._env(), cwd=self.home)
            self.worker = spawn(self._worker_command(), self.worker_log, env=self._env(), cwd=self.home)
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the worker (and its executors), then the master."""
        for process in (self.worker, self.master):
            if process is not None:
                terminate(process)
        self.worker = self.master = None

    def exited(self, part: str) -> str | None:
        """None while the ``master`` or ``worker`` runs; else how it ended, in words."""
        return has_exited(getattr(self, part))

    def restart(self, part: str, timeout: float = 90.0) -> None:
        """Start the ``master`` or the ``worker`` again; wait until a worker is registered again."""
        command = self._master_command() if part == "master" else self._worker_command()
        log_file = self.master_log if part == "master" else self.worker_log
        setattr(self, part, spawn(command, log_file, env=self._env(), cwd=self.home))
        self._wait_until_ready(timeout)

    def alive_workers(self) -> int:
        """How many workers the master counts alive; 0 while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=2) as answer:
                state = json.load(answer)
        except (OSError, ValueError):
            return 0
        return state.get("aliveworkers", len(state.get("workers", [])))

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOG_DIR": str(self.home), "SPARK_WORKER_DIR": str(self.home / "work"),
                # No REST submission server: nothing here submits through it, and it would take
                # port 6066, the worker's web port.
                "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}

    def _master_command(self) -> list[str]:
        return [str(SPARK_HOME / "bin" / "spark-class"), MASTER_CLASS, "--host", "127.0.0.1",
                "--port", str(self.port), "--webui-port", str(self.webui_port),
                "--properties-file", str(self.auth_file)]

    def _worker_command(self) -> list[str]:
        return [str(SPARK_HOME / "bin" / "spark-class"), WORKER_CLASS, self.url,
                "--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory,
                "--webui-port", str(self.webui_port + 1), "--work-dir", str(self.home / "work"),
                "--properties-file", str(self.auth_file)]

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_workers() < 1:
            self._check_running()
            if time.monotonic() > deadline:
                raise StackError(
                    f"No Spark worker registered with the master at {self.url} within {timeout:.0f} s."
                    f" Last lines of {self.master_log}:\n{tail(self.master_log)}\n"
                    f"Last lines of {self.worker_log}:\n{tail(self.worker_log)}"
                )
            time.sleep(0.5)

    def _check_running(self) -> None:
        for name, process, log_file in (("master", self.master, self.master_log),
                                        ("worker", self.worker, self.worker_log)):
            if process is not None and process.poll() is not None:
                raise StackError(
                    f"The Spark {name} exited with code {process.returncode} while starting."
                    f" Last lines of {log_file}:\n{tail(log_file)}"
                )

