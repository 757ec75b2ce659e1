"""The jars that Maven fetched for the local stack, and the stack's own error."""

from pathlib import Path

from restaurant_app.errors import PipelineError
from restaurant_app.settings import DEFAULT_JARS_DIR


class StackError(PipelineError, RuntimeError):
    """A local service could not be set up or started; the message says what to do."""


def classpath(jars_dir: Path = DEFAULT_JARS_DIR) -> str:
    """The classpath of the jars fetched by ``make setup`` (Kafka and the JDBC driver)."""
    if not any(jars_dir.glob("kafka_*.jar")):
        raise StackError(f"The Kafka jars are missing from {jars_dir}; run 'make setup' first.")
    return str(jars_dir / "*")
