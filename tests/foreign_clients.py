"""Publishing with Kafka clients we did not write: kcat (librdkafka) and Kafka's own Java console producer."""

import shutil
import subprocess
from collections.abc import Sequence

from infra.java import classpath
from restaurant_app.java_runtime import java_executable

CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"


def kcat(bootstrap_servers: str, topic: str, values: Sequence[bytes], *options: str | bytes,
         delimiter: bytes = b"\n") -> None:
    """Publish ``values`` with ``kcat -P``, one message each, ``delimiter`` between them."""
    kcat_path = shutil.which("kcat")
    assert kcat_path, "kcat is missing: apt-get install kcat"
    assert all(delimiter not in value for value in values), "a value holds the delimiter"
    command: list[str | bytes] = [kcat_path, "-P", "-b", bootstrap_servers, "-t", topic,
                                  "-D", delimiter, "-X", "message.max.bytes=1048588", *options]
    completed = subprocess.run(command, input=delimiter.join(values) + delimiter,
                               capture_output=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")


def console_producer(bootstrap_servers: str, topic: str, lines: Sequence[bytes], codec: str) -> None:
    """Publish ``lines`` with Kafka's console producer (from the Maven jars), compressed with ``codec``."""
    command = [java_executable(), "-Xmx256m", "-cp", classpath(), CONSOLE_PRODUCER,
               "--bootstrap-server", bootstrap_servers, "--topic", topic,
               "--compression-codec", codec, "--producer-property", "acks=all"]
    completed = subprocess.run(command, input=b"\n".join(lines) + b"\n", capture_output=True,
                               timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-3000:]
