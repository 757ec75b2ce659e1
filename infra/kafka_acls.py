"""The ACLs of a secure local Kafka: what the ``worker`` and ``pos`` users may do, and nothing more.

Set with Kafka's own ``AclCommand`` (from the Maven jars), as the super user ``admin``. Adding an
ACL that exists already changes nothing, so they are set again at every start.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from infra.java import StackError, classpath
from infra.kafka_secrets import KafkaSecrets
from restaurant_app.java_runtime import java_executable
from restaurant_app.settings import DEFAULT_JARS_DIR

ACL_COMMAND = "org.apache.kafka.tools.AclCommand"
WORKER_WRITES = ("Write", "Describe", "Create", "DescribeConfigs")
"""What the workers may do on the topics they write: write, see and create them, read their settings."""


def _allow(user: str, operations: tuple[str, ...], *resources: str) -> list[str]:
    return [f"--allow-principal=User:{user}", *(f"--operation={op}" for op in operations), *resources]


def rules(app_id: str, orders_topic: str, dead_letter_topic: str) -> list[list[str]]:
    """AclCommand's arguments, one command each.

    The workers read and write the orders topic (the simulator writes it too) and create it,
    write and create the dead-letter topic, read both topics' settings (the admin command shows
    their retention), use their consumer group, and own Faust's topics, whose names start with
    ``APP_ID-``. Points of sale only write the orders topic.
    """
    return [
        _allow("worker", ("Read", *WORKER_WRITES), f"--topic={orders_topic}"),
        _allow("worker", WORKER_WRITES, f"--topic={dead_letter_topic}"),
        _allow("worker", ("Read", "Write", "Describe", "Create"),
               "--resource-pattern-type=prefixed", f"--topic={app_id}-"),
        _allow("worker", ("Read", "Describe"), f"--group={app_id}"),
        _allow("pos", ("Write", "Describe"), f"--topic={orders_topic}"),
    ]


def grant(secrets: KafkaSecrets, bootstrap_servers: str, app_id: str, orders_topic: str,
          dead_letter_topic: str, jars_dir: Path = DEFAULT_JARS_DIR) -> None:
    """Set every ACL of ``rules`` on the cluster at ``bootstrap_servers``."""
    admin = secrets.java_properties("admin")
    base = [java_executable(), "-Xmx128m", "-cp", classpath(jars_dir), ACL_COMMAND,
            "--bootstrap-server", bootstrap_servers, "--command-config", str(admin), "--add"]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(
            lambda rule: subprocess.run([*base, *rule], capture_output=True, text=True, check=False),
            rules(app_id, orders_topic, dead_letter_topic)))
    failed = [result for result in results if result.returncode != 0]
    if failed:
        raise StackError(f"Setting Kafka's ACLs failed:\n{failed[0].stdout}{failed[0].stderr}")
