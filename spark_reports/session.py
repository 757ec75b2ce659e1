"""The Spark session, local or on a Spark Connect server, and the JDBC connection to PostgreSQL."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import grpc
from psycopg.conninfo import conninfo_to_dict
from pyspark.errors.exceptions.connect import SparkConnectGrpcException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.connect.client.retries import DefaultPolicy

from restaurant_app.errors import PipelineError
from restaurant_app.java_runtime import jdbc_driver
from restaurant_app.settings import Settings, is_loopback, shown_remote

log = logging.getLogger("spark_reports")

JDBC_DRIVER_CLASS = "org.postgresql.Driver"
FETCH_SIZE = 10_000
SUBMIT_OPTIONS = ("spark.master", "spark.driver.memory", "spark.jars", "spark.driver.extraJavaOptions")
WRITE_BATCH_SIZE = 5_000
SPLIT_COLUMN = "split_hash"
HASHTEXT_MIN, HASHTEXT_MAX = -(2**31), 2**31 - 1
"""The range of PostgreSQL's ``hashtext``, which a split read divides evenly."""


SMALL_RUN_MINUTES = 1_440
"""Runs that recompute at most a day of minutes read little, so a quick start matters most."""

QUICK_START_JVM = {
    # For a few thousand rows, optimising a JVM that lives for one run costs more than it saves.
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
}

SMALL_RUN_SQL = {
    # For a few thousand rows, compiling code costs more than it saves: Spark evaluates the
    # expressions as they are instead of generating and compiling Java for each query (in a warm
    # Spark Connect server, that compiling was half of each run's CPU), and plans each query
    # once instead of again after each stage.
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
    # The run's inputs are read into one partition each (``one_partition``), so that most
    # operators need no shuffle: joins keep single partitions (Spark otherwise guesses a table
    # read over JDBC to be too large for one), never broadcast (each broadcast is a job of its
    # own), and unions keep their inputs' single partition.
    "spark.sql.defaultSizeInBytes": "1024",
    "spark.sql.maxSinglePartitionBytes": str(2**63 - 1),
    "spark.sql.autoBroadcastJoinThreshold": "-1",
    "spark.sql.unionOutputPartitioning": "true",
}

SPARK_CONNECT_PORT = 15002
"""The port of ``sc://host`` when the URL names none, as in Spark's own client."""
CONNECT_TIMEOUT_SECONDS = 5.0
CONNECT_RETRIES = DefaultPolicy(max_retries=4)
"""About 4 s of retries (50 ms, each wait 4 times the last) for a server that stops answering;
Spark's default, made for servers far away, retries for ten minutes, past the job's timeout."""


class SparkConnectUnavailable(PipelineError, RuntimeError):
    """The Spark Connect server named by ``SPARK_REMOTE`` does not answer."""


def is_small(minutes: int) -> bool:
    """Whether a run of ``minutes`` minute windows is small enough to compute in one partition."""
    return minutes <= SMALL_RUN_MINUTES


def one_partition(frame: DataFrame, minutes: int) -> DataFrame:
    """``frame`` in one partition for a small run, so that little computed from it shuffles.

    With ``SMALL_RUN_SQL``, most Spark jobs of a small run are then one stage of one task; a
    shuffle costs the server more to schedule and serialize than its few thousand rows cost.
    """
    return frame.coalesce(1) if is_small(minutes) else frame


def session_conf(settings: Settings, minutes: int) -> dict[str, str]:
    """The SQL settings of one run's session, which a Spark Connect session sets for itself."""
    small = is_small(minutes)
    return {
        "spark.sql.session.timeZone": settings.restaurant_timezone,
        # One task per stage for a small run: each task costs the server more to schedule and
        # serialize than its few thousand rows cost to process.
        "spark.sql.shuffle.partitions": "1" if small else "8",
        "spark.sql.debug.maxToStringFields": "200",
        **(SMALL_RUN_SQL if small else {}),
    }


def spark_conf(settings: Settings, minutes: int) -> dict[str, str]:
    """Settings for a small, quiet local Spark sized to a run of ``minutes`` minute windows."""
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "restaurant-sales-reports",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.jars": str(jdbc_driver(settings.jars_dir)),
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "WARN",
        **session_conf(settings, minutes),
        **(QUICK_START_JVM if is_small(minutes) else {}),
    }


@contextmanager
def spark_session(settings: Settings, minutes: int,
                  opened: SparkSession | None = None) -> Iterator[SparkSession]:
    """The session of a run of ``minutes`` windows, stopped when the run ends.

    It is a session on the Spark Connect server that ``SPARK_REMOTE`` names, or a local one;
    for a small run, the session ``opened`` early (``open_early``) if there is one, which its
    opener stops.
    """
    remote = settings.spark_remote
    with lost_server_explained(remote):
        if opened is not None and is_small(minutes):
            yield opened
            return
        spark = connect_spark(settings, minutes) if remote else start_local_spark(settings, minutes)
        try:
            yield spark
        finally:
            spark.stop()


@contextmanager
def lost_server_explained(remote: str) -> Iterator[None]:
    """Say in one line that the Spark Connect server stopped answering, instead of gRPC's dump."""
    try:
        yield
    except SparkConnectGrpcException as exc:
        if exc.getGrpcStatusCode() != grpc.StatusCode.UNAVAILABLE:
            raise
        raise SparkConnectUnavailable(
            f"The Spark Connect server at {shown_remote(remote)} (SPARK_REMOTE) stopped answering."
        ) from None


def start_local_spark(settings: Settings, minutes: int) -> SparkSession:
    """Start (or, under spark-submit, join) a Spark session in this process.

    Under spark-submit, the options given on its command line win over ours.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.pop("SPARK_REMOTE", None)  # PySpark takes any SPARK_REMOTE, even empty, for a server
    if settings.spark_auth_properties:  # a file, so that the master's secret is on no command line
        properties = settings.spark_auth_properties
        os.environ["PYSPARK_SUBMIT_ARGS"] = f"--properties-file {properties} pyspark-shell"
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder
    for key, value in spark_conf(settings, minutes).items():
        if not (submitted and key in SUBMIT_OPTIONS):
            builder = builder.config(key, value)
    return builder.getOrCreate()


def connect_spark(settings: Settings, minutes: int) -> SparkSession:
    """A new session of our own on the Spark Connect server, with this run's SQL settings.

    Stopping it ends only this session; the server and its other sessions go on.
    """
    check_reachable(settings.spark_remote)
    spark = SparkSession.builder.remote(channel_remote(settings.spark_remote)).create()
    spark.client.set_retry_policies([CONNECT_RETRIES])
    try:
        # All in one request: each request is a round trip to the server.
        spark.conf._set_all(configs=session_conf(settings, minutes), silent=False)
    except BaseException:
        spark.stop()  # or the client retries at exit, to release the session
        raise
    return spark


def open_early(settings: Settings) -> SparkSession | None:
    """A session for a small run on the Spark Connect server, opened before the run is due, so
    that the run starts computing at once; None without a server, or if it does not answer now
    (the run then tries again, and says what is wrong)."""
    if not settings.spark_remote:
        return None
    try:
        with lost_server_explained(settings.spark_remote):
            return connect_spark(settings, SMALL_RUN_MINUTES)
    except Exception as exc:  # noqa: BLE001 - the run opens its own session and reports the error
        log.info("Could not open the Spark Connect session ahead of the run: %s", exc)
        return None


def channel_remote(remote: str) -> str:
    """``remote`` with a loopback address named ``localhost``: pyspark sends a token to
    ``localhost`` over a local channel, and to any other name only over TLS."""
    address = urlsplit(remote)
    if not is_loopback(address.hostname or "") or "use_ssl=true" in remote.lower():
        return remote
    port = f":{address.port}" if address.port else ""
    return address._replace(netloc=f"localhost{port}").geturl()


def check_reachable(remote: str) -> None:
    """Fail at once, in one line, when nothing listens at ``sc://host:port``."""
    address = urlsplit(remote)
    host, port = address.hostname or "localhost", address.port or SPARK_CONNECT_PORT
    try:
        socket.create_connection((host, port), CONNECT_TIMEOUT_SECONDS).close()
    except OSError as exc:
        raise SparkConnectUnavailable(
            f"The Spark Connect server at {shown_remote(remote)} (SPARK_REMOTE) is unreachable:"
            f" {exc.strerror or exc}. Start it (make run starts one) or unset SPARK_REMOTE"
            " to run Spark inside the job."
        ) from None


def jdbc_tls(params: dict[str, str]) -> dict[str, str]:
    """libpq's ``sslmode`` and ``sslrootcert`` in the JDBC driver's terms; ``sslrootcert=system``
    (the system's CAs) is Java's own trust store there."""
    tls = {key: params[key] for key in ("sslmode", "sslrootcert") if params.get(key)}
    if tls.get("sslrootcert") == "system":
        del tls["sslrootcert"]
        tls["sslfactory"] = "org.postgresql.ssl.DefaultJavaSSLFactory"
    return tls


@dataclass(frozen=True)
class Jdbc:
    """Where Spark reads and writes PostgreSQL: a JDBC URL and the login."""

    url: str
    user: str
    password: str

    @classmethod
    def from_database_url(cls, database_url: str, *, with_password: bool = True) -> Jdbc:
        """Translate a libpq URL (``postgresql://user:pw@host:port/db``) into JDBC terms.

        Without the password, the driver where the SQL runs finds it in its own ``PGPASSFILE``.
        """
        params = conninfo_to_dict(database_url)
        host = params.get("host") or "localhost"
        if host.startswith("/"):
            raise ValueError(
                "Spark reaches PostgreSQL over TCP, but DATABASE_URL names a Unix socket;"
                " give a host name or address instead."
            )
        url = f"jdbc:postgresql://{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
        # stringtype=unspecified lets PostgreSQL turn Spark's JSON strings into jsonb.
        options = {"stringtype": "unspecified", "reWriteBatchedInserts": "true", **jdbc_tls(params)}
        url += "?" + urlencode(options)
        return cls(url, params.get("user") or "postgres", (with_password and params.get("password")) or "")

    def options(self) -> dict[str, str]:
        password = {"password": self.password} if self.password else {}
        return {"url": self.url, "user": self.user, **password, "driver": JDBC_DRIVER_CLASS}

    def read(self, spark: SparkSession, query: str) -> DataFrame:
        """The result of one SQL query, read in one statement, so it is one consistent snapshot."""
        return (spark.read.format("jdbc").options(**self.options())
                .option("query", query).option("fetchsize", FETCH_SIZE).load())

    def read_split(self, spark: SparkSession, query: str, key: str, partitions: int) -> DataFrame:
        """The result of ``query`` read by ``partitions`` statements at once, each taking the rows
        whose text column ``key`` hashes into its share of PostgreSQL's ``hashtext`` range.

        All rows of one key come from one statement. The statements take their own snapshots,
        so a row committed while they run may be in some shares and not others: the caller must
        read only rows that a later read corrects (the report job's do, see ``read_inputs``).
        """
        if partitions == 1:
            return self.read(spark, query)
        table = f"(SELECT q.*, hashtext(q.{key}) AS {SPLIT_COLUMN} FROM ({query}) q) AS split"
        return (spark.read.format("jdbc").options(**self.options())
                .option("dbtable", table).option("fetchsize", FETCH_SIZE)
                .option("partitionColumn", SPLIT_COLUMN).option("numPartitions", partitions)
                .option("lowerBound", HASHTEXT_MIN).option("upperBound", HASHTEXT_MAX)
                .load().drop(SPLIT_COLUMN))

    def append(self, frame: DataFrame, table: str, partitions: int | None) -> None:
        """Insert ``frame``'s rows into ``table`` over at most ``partitions`` connections; None:
        as many as ``frame`` has partitions.

        With a bound, Spark plans the whole query once more to count its partitions before the
        write plans it: a frame of one partition (a small run's) needs none.
        """
        writer = (frame.write.format("jdbc").options(**self.options()).option("dbtable", table)
                  .option("batchsize", WRITE_BATCH_SIZE))
        if partitions is not None:
            writer = writer.option("numPartitions", partitions)
        writer.mode("append").save()
