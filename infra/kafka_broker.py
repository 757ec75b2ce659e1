"""A single-node Apache Kafka broker in KRaft combined mode, started from Maven's jars."""

import asyncio
import base64
import subprocess
import uuid
from pathlib import Path

from infra.java import StackError, classpath
from infra.process import spawn, tail, terminate
from restaurant_app.java_runtime import java_executable
from restaurant_app.kafka_probe import KafkaUnavailable, wait_for_kafka

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
"""

LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaBroker:
    """One Kafka broker that is also its own KRaft controller, with data in ``home``."""

    def __init__(self, home: Path, port: int = 9092, controller_port: int = 9093,
                 heap: str = "512m", log_level: str = "INFO") -> None:
        self.home = home
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.log_level = log_level
        self.log_file = home / "broker.log"
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        """Format the storage on first use, start the broker and wait until it answers."""
        java = java_executable()
        config = self._write_config()
        data_dir = self.home / "data"
        if not (data_dir / "meta.properties").exists():
            self._format(java, config)
        self.process = spawn(
            [java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC",
             f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
             "-cp", classpath(), "kafka.Kafka", str(config)],
            self.log_file,
        )
        try:
            asyncio.run(self._wait_until_ready(timeout))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
            self.process = None

    async def _wait_until_ready(self, timeout: float) -> None:
        waiting = asyncio.ensure_future(
            wait_for_kafka(self.bootstrap_servers, timeout, log_failures=False)
        )
        while not waiting.done():
            await asyncio.wait([waiting], timeout=0.5)
            if self.process is not None and self.process.poll() is not None and not waiting.done():
                waiting.cancel()
                raise StackError(
                    f"The Kafka broker exited with code {self.process.returncode} while starting."
                    f" Last lines of {self.log_file}:\n{tail(self.log_file)}"
                )
        try:
            waiting.result()
        except KafkaUnavailable:
            raise StackError(
                f"The Kafka broker did not answer on {self.bootstrap_servers} within {timeout:.0f} s."
                f" Last lines of {self.log_file}:\n{tail(self.log_file)}"
            ) from None

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        config.write_text(SERVER_PROPERTIES.format(
            port=self.port, controller_port=self.controller_port, data_dir=self.home / "data"
        ))
        (self.home / "log4j2.properties").write_text(LOG4J2_PROPERTIES.format(level=self.log_level))
        return config

    def _format(self, java: str, config: Path) -> None:
        result = subprocess.run(
            [java, "-cp", classpath(), "kafka.tools.StorageTool", "format",
             "--cluster-id", _cluster_id(), "--config", str(config)],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise StackError(f"Formatting Kafka's storage failed:\n{result.stdout}{result.stderr}")


def _cluster_id() -> str:
    """A new cluster id in Kafka's form: a UUID in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
