"""Configuration from environment variables (see the README table).

Each program reads it once, at its entry point, with ``Settings.from_env()``; everything
else takes the settings it needs as arguments.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JARS_DIR = PROJECT_ROOT / ".stack" / "jars"
"""Where ``make setup`` puts the jars Maven fetched: Kafka and the PostgreSQL JDBC driver."""


SECRET_PARAMETER = re.compile(r"(;\s*token\s*=\s*)[^;/\s]*", re.IGNORECASE)
"""A Spark Connect URL's ``;token=...`` parameter (``sc://host:port/;token=...``)."""


def shown_remote(remote: str) -> str:
    """``SPARK_REMOTE`` as logs and answers show it: ``sc://host:port``, never its parameters or user."""
    address = urlsplit(remote)
    port = f":{address.port}" if address.port else ""
    return f"{address.scheme}://{address.hostname or ''}{port}"


def redacted(text: str) -> str:
    """``text`` with the value of any ``;token=`` parameter hidden."""
    return SECRET_PARAMETER.sub(r"\1<hidden>", text)


def _str(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _one_of(name: str, values: tuple[str, ...]) -> str:
    """One of ``values``, the first when unset."""
    value = _str(name, values[0])
    if value not in values:
        raise ValueError(f"{name} must be one of {', '.join(values)}, got {value!r}")
    return value


SWITCH = {"on": True, "off": False}


def _switch(name: str, default: bool) -> bool:
    """``on`` or ``off`` (any case); unset or empty: ``default``."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return SWITCH[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"{name} must be on or off, got {raw!r}") from None


def _optional_int(name: str) -> int | None:
    return _int(name, 0) if os.environ.get(name) else None


def _count(name: str, default: int, *, old_name: str = "") -> int:
    """A positive integer, read from ``name`` or else from its former name ``old_name``."""
    value = _int(name, _int(old_name, default) if old_name else default)
    if value < 1:
        raise ValueError(f"{name} must be 1 or more, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting of the pipeline; field names match the environment variables."""

    kafka_broker: str
    database_url: str
    reports_database_url: str
    app_id: str
    orders_topic: str
    dead_letter_topic: str
    orders_topic_partitions: int
    topic_replication_factor: int | None
    kafka_nodes: int
    workers: int
    order_simulator: bool
    simulated_stores: int
    order_interval_seconds: float
    orders_per_tick: int
    generator_seed: int | None
    restaurant_timezone: str
    dashboard_language: str
    batch_max_orders: int
    batch_within_seconds: float
    ingest_max_bytes: int
    rejected_raw_max_bytes: int
    max_clock_skew_seconds: float
    max_order_age_days: float
    held_batch_alarm_seconds: float
    web_host: str
    web_port: int
    orders_api_token: str
    report_interval_seconds: float
    report_grace_seconds: float
    report_timeout_seconds: float
    spark_master: str
    spark_driver_memory: str
    spark_remote: str
    spark_jdbc_partitions: int
    data_dir: Path
    jars_dir: Path
    log_level: str

    @property
    def kafka_url(self) -> str:
        """The broker list in the ``kafka://`` form Faust expects."""
        servers = self.kafka_broker.removeprefix("kafka://")
        return f"kafka://{servers}"

    @property
    def bootstrap_servers(self) -> str:
        """The broker list in the ``host:port[,host:port]`` form Kafka clients expect."""
        return self.kafka_broker.removeprefix("kafka://")

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_str("DATA_DIR", str(PROJECT_ROOT / ".stack")))
        return cls(
            kafka_broker=_str("KAFKA_BROKER", "localhost:9092"),
            database_url=_str(
                "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/restaurant"
            ),
            reports_database_url=_str("REPORTS_DATABASE_URL", ""),
            app_id=_str("APP_ID", "restaurant-sales"),
            orders_topic=_str("ORDERS_TOPIC", "orders"),
            dead_letter_topic=_str("DEAD_LETTER_TOPIC", "orders-dead-letter"),
            orders_topic_partitions=_count("ORDERS_TOPIC_PARTITIONS", 6, old_name="TOPIC_PARTITIONS"),
            topic_replication_factor=(_count("TOPIC_REPLICATION_FACTOR", 1)
                                      if os.environ.get("TOPIC_REPLICATION_FACTOR") else None),
            kafka_nodes=_count("KAFKA_NODES", 1),
            workers=_count("WORKERS", 1),
            order_simulator=_switch("ORDER_SIMULATOR", True),
            simulated_stores=_count("SIMULATED_STORES", 1),
            order_interval_seconds=_float("ORDER_INTERVAL_SECONDS", 10.0),
            orders_per_tick=_int("ORDERS_PER_TICK", 1),
            generator_seed=_optional_int("GENERATOR_SEED"),
            restaurant_timezone=_str("RESTAURANT_TIMEZONE", "America/Sao_Paulo"),
            dashboard_language=_one_of("DASHBOARD_LANGUAGE", ("pt-BR", "en", "auto")),
            batch_max_orders=_int("BATCH_MAX_ORDERS", 5000),
            batch_within_seconds=_float("BATCH_WITHIN_SECONDS", 0.05),
            ingest_max_bytes=_count("INGEST_MAX_BYTES", 64 * 1024 * 1024),
            rejected_raw_max_bytes=_count("REJECTED_RAW_MAX_BYTES", 1_048_588),
            max_clock_skew_seconds=_float("MAX_CLOCK_SKEW_SECONDS", 300.0),
            max_order_age_days=_float("MAX_ORDER_AGE_DAYS", 7.0),
            held_batch_alarm_seconds=_float("HELD_BATCH_ALARM_SECONDS", 60.0),
            web_host=_str("WEB_HOST", "127.0.0.1"),
            web_port=_int("WEB_PORT", 6066),
            orders_api_token=_str("ORDERS_API_TOKEN", ""),
            report_interval_seconds=_float("REPORT_INTERVAL_SECONDS", 60.0),
            report_grace_seconds=_float("REPORT_GRACE_SECONDS", 5.0),
            report_timeout_seconds=_float("REPORT_TIMEOUT_SECONDS", 300.0),
            spark_master=_str("SPARK_MASTER", "local[*]"),
            spark_driver_memory=_str("SPARK_DRIVER_MEMORY", "1g"),
            spark_remote=_str("SPARK_REMOTE", ""),
            spark_jdbc_partitions=_count("SPARK_JDBC_PARTITIONS", 2),
            data_dir=data_dir,
            jars_dir=Path(_str("JARS_DIR", str(DEFAULT_JARS_DIR))),
            log_level=_str("LOG_LEVEL", "info"),
        )

