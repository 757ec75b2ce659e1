"""Finding a Java runtime and the jars that Maven fetched."""

import os
import re
import shutil
import subprocess
from pathlib import Path

from restaurant_app.settings import PROJECT_ROOT

MINIMUM_JAVA = 17
JARS_DIR = PROJECT_ROOT / ".stack" / "jars"


class StackError(RuntimeError):
    """A local service could not be set up or started; the message says what to do."""


def java_executable() -> str:
    """The ``java`` from ``JAVA_HOME`` or ``PATH``, checked to be version 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StackError(
            f"Java {MINIMUM_JAVA} or newer is needed for Kafka and Spark, but no 'java' was "
            "found. Install a JDK (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
        )
    output = subprocess.run(
        [java, "-version"], capture_output=True, text=True, check=False
    ).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # Java 8 and older say "1.8"
        major = int(match.group(2))
    if major < MINIMUM_JAVA:
        raise StackError(
            f"Java {MINIMUM_JAVA} or newer is needed, but {java} is version {major or 'unknown'}. "
            "Point JAVA_HOME at a newer JDK."
        )
    return java


def classpath() -> str:
    """The classpath of the jars fetched by ``make jars`` (Kafka and the JDBC driver)."""
    if not any(JARS_DIR.glob("kafka_*.jar")):
        raise StackError(f"The Kafka jars are missing from {JARS_DIR}; run 'make jars' first.")
    return str(JARS_DIR / "*")


def jdbc_driver() -> Path:
    """The PostgreSQL JDBC driver jar, which Spark needs to read and write PostgreSQL."""
    jars = sorted(JARS_DIR.glob("postgresql-*.jar"))
    if not jars:
        raise StackError(f"The PostgreSQL JDBC driver is missing from {JARS_DIR}; run 'make jars'.")
    return jars[-1]
