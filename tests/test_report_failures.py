"""Which failures of a report run are outages (the same orders are read again) and which count
toward skipping them; no service is needed."""

import psycopg
import pytest

from restaurant_app.java_runtime import JavaUnavailable
from restaurant_app.replica import ReplicaBehind
from spark_reports.job import is_outage
from spark_reports.session import SparkConnectUnavailable

OUTAGES = [
    psycopg.OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    ReplicaBehind("The read replica has not replayed the primary's WAL within 60 s"),
    SparkConnectUnavailable("The Spark Connect server at sc://127.0.0.1:15002 stopped answering."),
    RuntimeError("An error occurred while calling o52.load. : org.postgresql.util.PSQLException:"
                 " Connection to 127.0.0.1:5432 refused. Check that the hostname and port are correct"),
    RuntimeError("org.postgresql.util.PSQLException: FATAL: the database system is starting up"),
    RuntimeError("<_MultiThreadedRendezvous of RPC that terminated with: status = StatusCode.UNAVAILABLE>"),
]

FAILURES_ON_THE_ORDERS = [
    RuntimeError("[DIVIDE_BY_ZERO] Division by zero. SQLSTATE: 22012"),
    psycopg.errors.NumericValueOutOfRange("numeric field overflow"),
    RuntimeError("Spark computed the hour starting 2026-11-29 14:00, which PostgreSQL did not expect"),
    JavaUnavailable("Java 17 or newer is needed for Kafka and Spark, but no 'java' was found."),
]


@pytest.mark.parametrize("error", OUTAGES, ids=lambda error: type(error).__name__)
def test_a_part_unavailable_is_an_outage(error: Exception):
    assert is_outage(error)


@pytest.mark.parametrize("error", FAILURES_ON_THE_ORDERS, ids=lambda error: type(error).__name__)
def test_a_failure_of_the_job_itself_is_not(error: Exception):
    assert not is_outage(error)
