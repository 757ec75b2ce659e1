"""A Spark Connect server from the pyspark wheel: one warm Spark that every report run connects to."""

import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path

from infra.java import StackError
from infra.process import ChildProcess, check_port_is_free, spawn, tail
from infra.secret_file import make_secret, read_secret
from restaurant_app.java_runtime import java_executable, jdbc_driver
from restaurant_app.settings import DEFAULT_JARS_DIR

SPARK_HOME = Path(importlib.util.find_spec("pyspark").submodule_search_locations[0])
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
TOKEN_VARIABLE = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
"""Where the server reads the token every client must present (``spark.connect.authenticate.token``)."""

LOG4J2_PROPERTIES = """\
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c{{1}})%n%ex
logger.server.name = org.apache.spark.sql.connect.service.SparkConnectServer
logger.server.level = INFO
"""


class SparkConnectServer(ChildProcess):
    """One Spark Connect server on 127.0.0.1:``port``, with its log and scratch files in ``home``.

    The PostgreSQL JDBC driver is on its class path, since the report job's reads and writes
    run in the server; new sessions start in the restaurant's time zone. Every client must
    give the token made on first start and kept in ``home/token`` (readable by its owner only):
    it reaches the server in its environment, never on a command line that others can read.
    """

    def __init__(self, home: Path, port: int = 15002, *, timezone: str, master: str = "local[*]",
                 driver_memory: str = "1g", log_level: str = "WARN",
                 jars_dir: Path = DEFAULT_JARS_DIR, auth_file: Path | None = None,
                 pgpass_file: Path | None = None) -> None:
        self.home = home
        self.auth_file = auth_file
        self.pgpass_file = pgpass_file
        self.jars_dir = jars_dir
        self.port = port
        self.timezone = timezone
        self.master = master
        self.driver_memory = driver_memory
        self.log_level = log_level
        self.log_file = home / "server.log"
        self.token_file = home / "token"
        self.process: subprocess.Popen | None = None

    @property
    def remote(self) -> str:
        """The server's address and token in the form of ``SPARK_REMOTE``.

        The host is ``localhost``: for it, pyspark sends the token over a local channel; for any
        other name it insists on TLS, which the server does not speak.
        """
        return f"sc://localhost:{self.port}/;token={read_secret(self.token_file, 'The Spark Connect server')}"

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and wait until it accepts connections."""
        java_executable()
        check_port_is_free(self.port, "The Spark Connect server", "Stop whatever holds that port, or"
                           " set SPARK_REMOTE to use a server already running.")
        self.home.mkdir(parents=True, exist_ok=True)
        make_secret(self.token_file)
        log_config = self.home / "log4j2.properties"
        log_config.write_text(LOG4J2_PROPERTIES.format(level=self.log_level))
        env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
               TOKEN_VARIABLE: read_secret(self.token_file, "The Spark Connect server")}
        if self.pgpass_file:  # the database passwords, which the report job then need not send
            env["PGPASSFILE"] = str(self.pgpass_file)
        self.process = spawn(self._command(log_config), self.log_file, env=env, cwd=self.home)
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _command(self, log_config: Path) -> list[str]:
        conf = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.port.maxRetries": "0",  # a taken port fails the start instead of moving on
            "spark.sql.session.timeZone": self.timezone,
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            # With the UI off, nobody reads the jobs, stages and queries Spark keeps for it. The
            # defaults keep 1,000 of each, well over an hour of report runs (about ten queries
            # each), in a heap the garbage collector then goes through on every run.
            "spark.sql.ui.retainedExecutions": "10",
            "spark.ui.retainedJobs": "20",
            "spark.ui.retainedStages": "20",
            "spark.ui.retainedTasks": "200",
            **({"spark.executorEnv.PGPASSFILE": str(self.pgpass_file)} if self.pgpass_file else {}),
        }
        # A standalone master's shared secret (SparkCluster.auth_file) comes as a properties file.
        auth = ["--properties-file", str(self.auth_file)] if self.auth_file else []
        return [
            str(SPARK_HOME / "bin" / "spark-submit"), "--class", SERVER_CLASS, *auth,
            "--name", "restaurant-sales-spark-connect", "--master", self.master,
            "--driver-memory", self.driver_memory, "--jars", str(jdbc_driver(self.jars_dir)),
            "--driver-java-options", f"-Dlog4j2.configurationFile={log_config}",
            *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
        ]

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process is not None and self.process.poll() is not None:
                raise StackError(
                    f"The Spark Connect server exited with code {self.process.returncode} while"
                    f" starting. Last lines of {self.log_file}:\n{tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"The Spark Connect server did not answer on 127.0.0.1:{self.port} within"
                    f" {timeout:.0f} s. Last lines of {self.log_file}:\n{tail(self.log_file)}"
                )
            time.sleep(0.25)

    def _answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
        except OSError:
            return False
        return True
