"""Finding a Java runtime, which Spark (and the local Kafka) need, and the JDBC driver Spark loads."""

import os
import re
import shutil
import subprocess
from pathlib import Path

from restaurant_app.errors import PipelineError

MINIMUM_JAVA = 17


class JavaUnavailable(PipelineError, RuntimeError):
    """No usable Java runtime; the message says what to do."""


def java_executable() -> str:
    """The ``java`` from ``JAVA_HOME`` or ``PATH``, checked to be version 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise JavaUnavailable(
            f"Java {MINIMUM_JAVA} or newer is needed for Kafka and Spark, but no 'java' was "
            "found. Install a JDK (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
        )
    output = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # Java 8 and older say "1.8"
        major = int(match.group(2))
    if major < MINIMUM_JAVA:
        raise JavaUnavailable(
            f"Java {MINIMUM_JAVA} or newer is needed, but {java} is version {major or 'unknown'}. "
            "Point JAVA_HOME at a newer JDK."
        )
    return java


def jdbc_driver(jars_dir: Path) -> Path:
    """The PostgreSQL JDBC driver jar (fetched by ``make setup``), which Spark needs to read PostgreSQL."""
    jars = sorted(jars_dir.glob("postgresql-*.jar"))
    if not jars:
        raise JavaUnavailable(f"The PostgreSQL JDBC driver is missing from {jars_dir}; run 'make setup'.")
    return jars[-1]
