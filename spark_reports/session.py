"""The Spark session and the JDBC connection to PostgreSQL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from pyspark.sql import DataFrame, SparkSession

from restaurant_app.settings import Settings

JDBC_DRIVER_CLASS = "org.postgresql.Driver"
FETCH_SIZE = 10_000
SUBMIT_OPTIONS = ("spark.master", "spark.driver.memory", "spark.jars", "spark.driver.extraJavaOptions")
WRITE_BATCH_SIZE = 5_000


SMALL_RUN_MINUTES = 1_440
"""Runs that recompute at most a day of minutes read little, so a quick start matters most."""

QUICK_START = {
    # For a few thousand rows, compiling code and optimising the JVM cost more than they save.
    "spark.sql.codegen.wholeStage": "false",
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
}


def jdbc_driver(jars_dir: Path) -> Path:
    """The PostgreSQL JDBC driver jar, which Spark needs to read and write PostgreSQL."""
    jars = sorted(jars_dir.glob("postgresql-*.jar"))
    if not jars:
        raise FileNotFoundError(f"The PostgreSQL JDBC driver is missing from {jars_dir}; run 'make setup'.")
    return jars[-1]


def spark_conf(settings: Settings, minutes: int) -> dict[str, str]:
    """Settings for a small, quiet Spark sized to a run of ``minutes`` minute windows."""
    small = minutes <= SMALL_RUN_MINUTES
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "restaurant-sales-reports",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.jars": str(jdbc_driver(settings.jars_dir)),
        "spark.sql.session.timeZone": settings.restaurant_timezone,
        "spark.sql.shuffle.partitions": "2" if small else "8",
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "WARN",
        "spark.sql.debug.maxToStringFields": "200",
        **(QUICK_START if small else {}),
    }


def start_spark(settings: Settings, minutes: int) -> SparkSession:
    """Start (or, under spark-submit, join) the Spark session for a run of ``minutes`` windows.

    Under spark-submit, the options given on its command line win over ours.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder
    for key, value in spark_conf(settings, minutes).items():
        if not (submitted and key in SUBMIT_OPTIONS):
            builder = builder.config(key, value)
    return builder.getOrCreate()


@dataclass(frozen=True)
class Jdbc:
    """Where Spark reads and writes PostgreSQL: a JDBC URL and the login."""

    url: str
    user: str
    password: str

    @classmethod
    def from_database_url(cls, database_url: str) -> Jdbc:
        """Translate a libpq URL (``postgresql://user:pw@host:port/db``) into JDBC terms."""
        params = conninfo_to_dict(database_url)
        host = params.get("host") or "localhost"
        if host.startswith("/"):
            raise ValueError(
                "Spark reaches PostgreSQL over TCP, but DATABASE_URL names a Unix socket;"
                " give a host name or address instead."
            )
        url = f"jdbc:postgresql://{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
        extra = "&".join(f"{key}={params[key]}" for key in ("sslmode",) if params.get(key))
        # stringtype=unspecified lets PostgreSQL turn Spark's JSON strings into jsonb.
        url += "?stringtype=unspecified&reWriteBatchedInserts=true" + (f"&{extra}" if extra else "")
        return cls(url, params.get("user") or "postgres", params.get("password") or "")

    def options(self) -> dict[str, str]:
        return {"url": self.url, "user": self.user, "password": self.password,
                "driver": JDBC_DRIVER_CLASS}

    def read(self, spark: SparkSession, query: str) -> DataFrame:
        """The result of one SQL query, read in one statement, so it is one consistent snapshot."""
        return (spark.read.format("jdbc").options(**self.options())
                .option("query", query).option("fetchsize", FETCH_SIZE).load())

    def append(self, frame: DataFrame, table: str) -> None:
        (frame.write.format("jdbc").options(**self.options()).option("dbtable", table)
         .option("batchsize", WRITE_BATCH_SIZE).mode("append").save())
