"""Apache Kafka in KRaft combined mode from Maven's jars: one node, or a cluster of N on 127.0.0.1."""

import asyncio
import base64
import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from infra.certificates import url_host
from infra.java import StackError, classpath
from infra.kafka_secrets import BROKER_PRINCIPAL, MECHANISM, KafkaSecrets
from infra.process import ChildProcess, spawn, tail
from restaurant_app.java_runtime import java_executable
from restaurant_app.kafka_probe import (
    KafkaUnavailable,
    count_brokers,
    min_insync_replicas,
    replication_factor,
    wait_for_kafka,
)
from restaurant_app.kafka_security import PLAINTEXT, KafkaSecurity

GROUP_JOIN_WAIT_MS = 3000
"""Kafka's default ``group.initial.rebalance.delay.ms``: an empty group's first assignment waits this
long for more members, so that workers started together share the partitions from the start, rather
than the first taking them all and handing some over in a rebalance. The tests' brokers wait 0."""

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
log.dirs={data_dir}
num.partitions=3
auto.create.topics.enable=true
default.replication.factor={replicas}
min.insync.replicas={min_insync}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_insync}
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_insync}
group.initial.rebalance.delay.ms={rebalance_delay_ms}
log.retention.hours=168
# The log cleaner takes a 128 MB buffer by default, which a small heap (256m in the tests) may not
# have to spare at start-up; only the consumer-offsets topic is compacted here.
log.cleaner.dedupe.buffer.size=16777216
"""

PLAIN_LISTENERS = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
"""

SECURE_LISTENERS = """\
# Clients: SCRAM-SHA-512 over TLS. Brokers to each other: the same, as the super user admin.
# Brokers to controllers: TLS with the brokers' certificate on both sides.
# With ADVERTISED_HOSTS, clients listen on every interface, IPv4 and IPv6 (no host: Java's
# wildcard), and the first of the hosts is advertised.
listeners=SASL_SSL://{bind}:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://{advertised}:{port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms={mechanism}
sasl.mechanism.inter.broker.protocol={mechanism}
listener.name.sasl_ssl.{mechanism_lower}.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{password}";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca_file}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;{broker_principal}
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


@dataclass(frozen=True)
class Membership:
    """A node's place in its cluster: its id, the controllers' quorum, the cluster's size and id.

    The default is a cluster of one: the node is its own only voter and gets a new cluster id.
    """

    node_id: int = 1
    voters: str = ""
    size: int = 1
    cluster_id: str = ""


class KafkaBroker(ChildProcess):
    """One Kafka broker that is also a KRaft controller, with data in ``home``."""

    def __init__(self, home: Path, port: int = 9092, controller_port: int = 9093,
                 heap: str = "512m", log_level: str = "INFO",
                 membership: Membership = Membership(), secrets: KafkaSecrets | None = None,
                 rebalance_delay_ms: int = GROUP_JOIN_WAIT_MS) -> None:
        self.home = home
        self.rebalance_delay_ms = rebalance_delay_ms
        self.secrets = secrets
        """With secrets, clients must log in with SCRAM over TLS, and ACLs say what each may do."""
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.log_level = log_level
        self.membership = membership
        self.log_file = home / "broker.log"
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def security(self) -> KafkaSecurity:
        """How ``make run`` itself connects: plain TCP, or as the super user ``admin``."""
        return self.secrets.client("admin") if self.secrets else PLAINTEXT

    def client_env(self, user: str = "worker") -> dict[str, str]:
        """The settings that make a program of ours connect as ``user`` (none on a plain broker)."""
        return self.secrets.client_env(user) if self.secrets else {}

    @property
    def voter(self) -> str:
        """This node in ``controller.quorum.voters``' form: ``id@host:port``."""
        return f"{self.membership.node_id}@127.0.0.1:{self.controller_port}"

    def start(self, timeout: float = 90.0) -> None:
        """Format the storage on first use, start the broker and wait until it answers."""
        self.launch()
        self.wait_until_ready(timeout)

    def launch(self) -> None:
        """Format the storage on first use and start the broker, without waiting for it."""
        java = java_executable()
        formatted = (self.home / "data" / "meta.properties").exists()
        if self.secrets is not None:
            self._check_secrets_match(formatted)
            self.secrets.ensure()
        config = self._write_config()
        if not formatted:
            self._format(java, config)
        self.process = spawn(
            [java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC",
             f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
             "-cp", classpath(), "kafka.Kafka", str(config)],
            self.log_file,
        )

    def wait_until_ready(self, timeout: float) -> None:
        """Wait until the launched broker answers; stop it and explain if it does not."""
        try:
            asyncio.run(self._wait_until_ready(timeout))
        except BaseException:
            self.stop()
            raise

    async def _wait_until_ready(self, timeout: float) -> None:
        waiting = asyncio.ensure_future(
            wait_for_kafka(self.bootstrap_servers, timeout, log_failures=False, security=self.security)
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
        replicas = replication_factor(self.membership.size)
        text = SERVER_PROPERTIES.format(
            node_id=self.membership.node_id, voters=self.membership.voters or self.voter,
            data_dir=self.home / "data", replicas=replicas, min_insync=min_insync_replicas(replicas),
            rebalance_delay_ms=self.rebalance_delay_ms,
        ) + self._listeners()
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold a password
        with os.fdopen(fd, "w") as file:
            file.write(text)
        config.chmod(0o600)  # an older file kept its mode
        (self.home / "log4j2.properties").write_text(LOG4J2_PROPERTIES.format(level=self.log_level))
        return config

    def _check_secrets_match(self, formatted: bool) -> None:
        """Refuse to start a formatted secure broker whose logins are gone: new ones would not log in."""
        if formatted and not self.secrets.password_file("admin").exists():
            raise StackError(f"Kafka's data in {self.home} holds logins whose passwords are no longer in"
                             f" {self.secrets.home}; delete {self.home} too (the topics start empty), or"
                             " bring the passwords back.")

    def _listeners(self) -> str:
        if self.secrets is None:
            return PLAIN_LISTENERS.format(port=self.port, controller_port=self.controller_port)
        advertised = self.secrets.advertised_host
        return SECURE_LISTENERS.format(
            bind="" if advertised else "127.0.0.1", advertised=url_host(advertised or "127.0.0.1"),
            port=self.port, controller_port=self.controller_port, mechanism=MECHANISM,
            mechanism_lower=MECHANISM.lower(), password=self.secrets.password("admin"),
            keystore=self.secrets.keystore, ca_file=self.secrets.ca_file, broker_principal=BROKER_PRINCIPAL,
        )

    def _format(self, java: str, config: Path) -> None:
        users = self.secrets.scram_arguments() if self.secrets is not None else []
        result = subprocess.run(
            [java, "-cp", classpath(), "kafka.tools.StorageTool", "format",
             # One argument with "=": an id may start with "-", which would read as an option.
             f"--cluster-id={self.membership.cluster_id or new_cluster_id()}", "--config", str(config),
             *users],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise StackError(f"Formatting Kafka's storage failed:\n{result.stdout}{result.stderr}")


def new_cluster_id() -> str:
    """A new cluster id in Kafka's form: a UUID in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class KafkaCluster:
    """N combined broker-and-controller nodes on 127.0.0.1, one per pair of ``ports``, under ``home``.

    Every node is formatted with the same cluster id (kept in ``home/cluster-id``) and lists all
    nodes as voters, so any majority of them keeps the cluster going.
    """

    def __init__(self, home: Path, ports: Sequence[tuple[int, int]], heap: str = "512m",
                 log_level: str = "INFO", secrets: KafkaSecrets | None = None) -> None:
        self.home = home
        self.secrets = secrets
        voters = ",".join(f"{i}@127.0.0.1:{controller}" for i, (_, controller) in enumerate(ports, 1))
        cluster_id = self._cluster_id()
        self.nodes = [
            KafkaBroker(home / f"node-{i}", port, controller, heap, log_level,
                        Membership(i, voters, len(ports), cluster_id), secrets)
            for i, (port, controller) in enumerate(ports, 1)
        ]

    @property
    def bootstrap_servers(self) -> str:
        """Every node's address, so that a client finds the cluster while any one node is up."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def security(self) -> KafkaSecurity:
        return self.nodes[0].security

    def client_env(self, user: str = "worker") -> dict[str, str]:
        return self.nodes[0].client_env(user)

    def start(self, timeout: float = 180.0) -> None:
        """Start every node, then wait until each answers and the cluster lists them all.

        The nodes are launched together: none can finish starting before a majority of the
        controllers has elected a leader.
        """
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_until_ready(max(1.0, deadline - time.monotonic()))
            asyncio.run(self._wait_for_all_brokers(deadline))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the nodes together: the last of them, stopped alone, would wait for a quorum that is gone."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(KafkaBroker.stop, self.nodes))

    async def _wait_for_all_brokers(self, deadline: float) -> None:
        while True:
            try:
                if await count_brokers(self.bootstrap_servers, security=self.security) == len(self.nodes):
                    return
            except KafkaUnavailable:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"The {len(self.nodes)} Kafka nodes answer, but the cluster"
                                 f" does not list them all; see {self.home}/node-*/broker.log.")
            await asyncio.sleep(0.5)

    def _cluster_id(self) -> str:
        """The cluster's id: read from ``home/cluster-id``, or made and kept there on first use."""
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "cluster-id"
        if not path.exists():
            path.write_text(new_cluster_id())
        return path.read_text().strip()
