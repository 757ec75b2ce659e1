"""Configuration from environment variables (see the README table).

Each program reads it once, at its entry point, with ``Settings.from_env()`` (or
``settings_or_exit()``, which turns a bad value into one line on stderr and exit code 2);
everything else takes the settings it needs as arguments. Every value is parsed and
range-checked here, so that a mistake stops the program before it starts anything.

Our own few lines of parsing rather than pydantic-settings: the settings are flat strings,
numbers and switches, and a new dependency (with pydantic's core) would buy no check these
helpers do not make, while its errors would need rewording into one line anyway.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from restaurant_app.errors import PipelineError
from restaurant_app.kafka_security import MECHANISMS, PROTOCOLS, KafkaSecurity

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JARS_DIR = PROJECT_ROOT / ".stack" / "jars"
"""Where ``make setup`` puts the jars Maven fetched: Kafka and the PostgreSQL JDBC driver."""

EXIT_BAD_SETTING = 2
"""The exit code of a program that stopped on a bad setting (as for a bad command-line option)."""

FLAGS = {"true": True, "1": True, "on": True, "yes": True,
         "false": False, "0": False, "off": False, "no": False}
"""What a switch accepts, in any case."""

LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "warn": "WARNING",
              "error": "ERROR", "critical": "CRITICAL", "crit": "CRITICAL"}
"""What LOG_LEVEL accepts, in any case, and the name of the level in Python's ``logging``."""


class SettingError(PipelineError, ValueError):
    """An environment variable has a value the pipeline cannot use; the message names both."""


def _raw(name: str) -> str | None:
    """The variable's value with spaces trimmed; None when unset or empty."""
    return (os.environ.get(name) or "").strip() or None


def _bad(name: str, accepts: str, raw: object) -> SettingError:
    return SettingError(f"{name} must be {accepts}, got {raw!r}")


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
    return _raw(name) or default


def _int(name: str, default: int, low: int | None = None, high: int | None = None) -> int:
    """An integer from ``low`` to ``high`` (either open when None); unset or empty: ``default``."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or (low is not None and value < low) or (high is not None and value > high):
        raise _bad(name, _range("an integer", low, high), raw)
    return value


def _float(name: str, default: float, low: float = 0.0, *, above: bool = False) -> float:
    """A finite number of at least ``low`` (more than ``low`` when ``above``); unset: ``default``."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (above and value == low):
        raise _bad(name, f"a number {'above' if above else 'of at least'} {low:g}", raw)
    return value


def _range(kind: str, low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} of at least {low}"
    return kind


def _one_of(name: str, values: tuple[str, ...]) -> str:
    """One of ``values``, the first when unset."""
    value = _str(name, values[0])
    if value not in values:
        raise _bad(name, f"one of {', '.join(values)}", value)
    return value


def _flag(name: str, default: bool) -> bool:
    """A switch: true/false, 1/0, on/off or yes/no in any case; unset or empty: ``default``."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        return FLAGS[raw.lower()]
    except KeyError:
        raise _bad(name, "true or false (also 1/0, on/off, yes/no)", raw) from None


def _log_level(name: str, default: str) -> str:
    """A level name of Python's ``logging`` (``INFO``...), from any case of LOG_LEVELS' keys."""
    raw = _raw(name) or default
    try:
        return LOG_LEVELS[raw.lower()]
    except KeyError:
        raise _bad(name, "one of debug, info, warning (or warn), error, critical (any case)",
                   raw) from None


def _timezone(name: str, default: str) -> str:
    value = _str(name, default)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(name, "an IANA time zone such as America/Sao_Paulo", value) from None
    return value


def is_loopback(host: str) -> bool:
    """Whether a server listening on ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_verified_tls(url: str, ca_file: str) -> str:
    """``url`` with ``sslmode=verify-full`` (and the CA ``ca_file``, else the system's) when it
    names a server beyond loopback and no ``sslmode`` of its own; as it is otherwise."""
    params = conninfo_to_dict(url)
    hosts = (params.get("host") or "localhost").split(",")
    if "sslmode" in params or all(host.startswith("/") or is_loopback(host) for host in hosts):
        return url
    tls = {"sslmode": "verify-full", "sslrootcert": ca_file or "system"}
    if url.startswith(("postgresql://", "postgres://")):
        return url + ("&" if "?" in url else "?") + urlencode(tls)
    return make_conninfo(url, **tls)


def _database_url(name: str, default: str = "") -> str:
    """A libpq URL, with verified TLS when it names a server beyond loopback (``with_verified_tls``)."""
    value = _str(name, default)
    ca_file = _str("POSTGRES_CA_FILE", "")
    if ca_file and not Path(ca_file).is_file():
        raise _bad("POSTGRES_CA_FILE", "a file of CA certificates (PEM)", ca_file)
    try:
        return with_verified_tls(value, ca_file) if value else value
    except ProgrammingError:
        raise _bad(name, "a PostgreSQL URL such as postgresql://user@host:5432/restaurant",
                   "<not shown: it may hold a password>") from None


def _secret(name: str) -> str:
    """The secret in ``name``, or read from the file that ``name``_FILE names (its line break
    left out), which keeps it out of the environment that ``docker inspect`` and ``ps e`` show."""
    file_name = f"{name}_FILE"
    if _raw(name) is not None and _raw(file_name) is not None:
        raise SettingError(f"{name} and {file_name} are both set; set one of them")
    path = _readable_file(file_name)
    if path is None:
        return _str(name, "")
    value = path.read_text().strip()
    if not value:
        raise SettingError(f"{file_name} {str(path)!r} is empty")
    return value


def _dashboard_token(name: str, web_host: str) -> str:
    """The web's login token: required once ``web_host`` is beyond loopback."""
    value = _secret(name)
    if not value and not is_loopback(web_host):
        raise SettingError(f"{name} must be set when WEB_HOST ({web_host}) is beyond loopback:"
                           " the dashboard and its API would be open to the network")
    return value


def _hour_of_day(name: str, default: str) -> int:
    """A whole hour of the clock, ``HH:00`` (``04:00``), as its hour."""
    value = _str(name, default)
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):00", value)
    if match is None:
        raise _bad(name, "a whole hour of the clock from 00:00 to 23:00, such as 04:00", value)
    return int(match[1])


def _spark_remote(name: str) -> str:
    """A Spark Connect URL, with the token of ``SPARK_CONNECT_TOKEN_FILE`` added when set."""
    value = _str(name, "")
    if value and not value.startswith("sc://"):
        raise _bad(name, "empty or a Spark Connect URL sc://host:port", value)
    token_file = _readable_file("SPARK_CONNECT_TOKEN_FILE")
    if token_file is None:
        return value
    if not value or SECRET_PARAMETER.search(value):
        raise SettingError("SPARK_CONNECT_TOKEN_FILE is set, but SPARK_REMOTE is "
                           + ("unset" if not value else "holding a ;token= of its own") + "; set one token")
    token = token_file.read_text().strip()
    if not token or not re.fullmatch(r"[A-Za-z0-9_.~-]+", token):
        raise SettingError(f"SPARK_CONNECT_TOKEN_FILE {str(token_file)!r} holds no token (letters,"
                           " digits and -_.~ only)")
    return value.rstrip("/") + "/;token=" + token if "/;" not in value else value + ";token=" + token


HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def _advertised_hosts(name: str) -> tuple[str, ...]:
    """Host names or addresses, comma-separated; unset: none."""
    hosts = tuple(host.strip() for host in _str(name, "").split(",") if host.strip())
    for host in hosts:
        if not (HOST_NAME.fullmatch(host) or is_ip_address(host)):
            raise _bad(name, "host names or IP addresses, comma-separated", host)
    return hosts


def is_ip_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address rather than a host name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _kafka_secure(name: str, advertised_hosts: tuple[str, ...]) -> bool:
    """On by default once ``make run``'s services are reached from other machines, and then required."""
    secure = _flag(name, bool(advertised_hosts))
    if advertised_hosts and not secure:
        raise SettingError(f"{name} cannot be off while ADVERTISED_HOSTS ({','.join(advertised_hosts)})"
                           " opens make run's Kafka to other machines: its clients must log in over TLS.")
    return secure


def _readable_file(name: str) -> Path | None:
    """A file this process can read, or None when unset."""
    raw = _raw(name)
    if raw is None:
        return None
    path = Path(raw)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise _bad(name, f"a file this user can read ({exc.strerror})", raw) from None
    return path


SASL_SETTINGS = ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE")
TLS_SETTINGS = ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")
KAFKA_SECURITY_SETTINGS = ("KAFKA_SECURITY_PROTOCOL", *SASL_SETTINGS, *TLS_SETTINGS)
"""The variables ``Settings.kafka_security`` is read from."""


def _kafka_security() -> KafkaSecurity:
    """KAFKA_SECURITY_PROTOCOL and what it needs, each file readable; nothing set that it would ignore."""
    security = KafkaSecurity(
        protocol=_one_of("KAFKA_SECURITY_PROTOCOL", PROTOCOLS),
        sasl_mechanism=_one_of("KAFKA_SASL_MECHANISM", MECHANISMS),
        sasl_username=_str("KAFKA_SASL_USERNAME", ""),
        sasl_password_file=_readable_file("KAFKA_SASL_PASSWORD_FILE"),
        ssl_cafile=_readable_file("KAFKA_SSL_CAFILE"),
        ssl_certfile=_readable_file("KAFKA_SSL_CERTFILE"),
        ssl_keyfile=_readable_file("KAFKA_SSL_KEYFILE"),
    )
    for names, used in ((SASL_SETTINGS, security.uses_sasl), (TLS_SETTINGS, security.uses_tls)):
        ignored = [name for name in names if _raw(name) is not None and not used]
        if ignored:
            raise SettingError(f"{ignored[0]} is set, but KAFKA_SECURITY_PROTOCOL {security.protocol}"
                               f" does not use it; set KAFKA_SECURITY_PROTOCOL (SASL_SSL, say) or unset it")
    if security.uses_sasl:
        _check_sasl_login(security)
    if (security.ssl_certfile is None) != (security.ssl_keyfile is None):
        raise SettingError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE must be set together")
    try:
        security.ssl_context()
    except ssl.SSLError as exc:
        raise SettingError(f"KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE or KAFKA_SSL_KEYFILE is not a usable"
                           f" PEM file: {exc.reason or exc}") from None
    return security


def _check_sasl_login(security: KafkaSecurity) -> None:
    if not security.sasl_username or security.sasl_password_file is None:
        raise SettingError(f"KAFKA_SECURITY_PROTOCOL {security.protocol} needs KAFKA_SASL_USERNAME and"
                           " KAFKA_SASL_PASSWORD_FILE (a file holding the password)")
    if not security.password():
        raise SettingError(f"KAFKA_SASL_PASSWORD_FILE {str(security.sasl_password_file)!r} is empty")


def _count(name: str, default: int, *, old_name: str = "") -> int:
    """A positive integer, read from ``name`` or else from its former name ``old_name``."""
    if old_name and _raw(name) is None:
        return _int(old_name, default, 1)
    return _int(name, default, 1)


def _days(name: str, default: int) -> int:
    """How many days something is kept; 0 keeps it for ever."""
    return _int(name, default, 0, 36_500)


def _optional_count(name: str) -> int | None:
    return _count(name, 1) if _raw(name) is not None else None


def _optional_int(name: str) -> int | None:
    return _int(name, 0) if _raw(name) is not None else None


@dataclass(frozen=True)
class Settings:
    """Every setting of the pipeline; field names match the environment variables."""

    kafka_broker: str
    kafka_security: KafkaSecurity
    database_url: str
    reports_database_url: str
    web_database_url: str
    ingest_database_url: str
    report_job_database_url: str
    app_id: str
    orders_topic: str
    dead_letter_topic: str
    orders_topic_partitions: int
    topic_replication_factor: int | None
    kafka_nodes: int
    kafka_secure: bool
    advertised_hosts: tuple[str, ...]
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
    dashboard_token: str
    report_interval_seconds: float
    report_grace_seconds: float
    report_timeout_seconds: float
    spark_master: str
    spark_driver_memory: str
    spark_remote: str
    spark_auth_properties: str
    spark_jdbc_password: str
    spark_jdbc_partitions: int
    data_dir: Path
    jars_dir: Path
    postgres_replica: bool
    spark_cluster: bool
    orders_retention_days: int
    rejected_retention_days: int
    report_runs_retention_days: int
    minute_reports_retention_days: int
    hour_reports_retention_days: int
    topic_retention_hours: int
    log_level: str
    log_format: str
    business_day_starts_hour: int = 0
    """When the restaurant's day starts on its clock (``BUSINESS_DAY_STARTS``), as an hour."""
    kafka_port: int = 9092
    """Where ``make run``'s Kafka takes clients (its first node; node i at + 2(i-1))."""
    postgres_port: int = 5432
    """Where ``make run``'s PostgreSQL listens on 127.0.0.1 (its replica at + 1, its TLS front at + 2)."""
    spark_connect_port: int = 15002
    """Where ``make run``'s Spark Connect server listens on 127.0.0.1 (its TLS front at + 1)."""

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
        """Every setting from the environment; a bad value raises SettingError naming it."""
        return cls(
            kafka_broker=_str("KAFKA_BROKER", "localhost:9092"),
            kafka_security=_kafka_security(),
            database_url=_database_url("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/restaurant"),
            reports_database_url=_database_url("REPORTS_DATABASE_URL"),
            web_database_url=_database_url("WEB_DATABASE_URL"),
            ingest_database_url=_database_url("INGEST_DATABASE_URL"),
            report_job_database_url=_database_url("REPORT_JOB_DATABASE_URL"),
            app_id=_str("APP_ID", "restaurant-sales"),
            orders_topic=_str("ORDERS_TOPIC", "orders"),
            dead_letter_topic=_str("DEAD_LETTER_TOPIC", "orders-dead-letter"),
            orders_topic_partitions=_count("ORDERS_TOPIC_PARTITIONS", 6, old_name="TOPIC_PARTITIONS"),
            topic_replication_factor=_optional_count("TOPIC_REPLICATION_FACTOR"),
            kafka_nodes=_count("KAFKA_NODES", 1),
            kafka_secure=_kafka_secure("KAFKA_SECURE", _advertised_hosts("ADVERTISED_HOSTS")),
            advertised_hosts=_advertised_hosts("ADVERTISED_HOSTS"),
            workers=_count("WORKERS", 1),
            order_simulator=_flag("ORDER_SIMULATOR", True),
            simulated_stores=_count("SIMULATED_STORES", 1),
            order_interval_seconds=_float("ORDER_INTERVAL_SECONDS", 10.0, above=True),
            orders_per_tick=_count("ORDERS_PER_TICK", 1),
            generator_seed=_optional_int("GENERATOR_SEED"),
            restaurant_timezone=_timezone("RESTAURANT_TIMEZONE", "America/Sao_Paulo"),
            dashboard_language=_one_of("DASHBOARD_LANGUAGE", ("pt-BR", "en", "auto")),
            batch_max_orders=_count("BATCH_MAX_ORDERS", 5000),
            batch_within_seconds=_float("BATCH_WITHIN_SECONDS", 0.05, above=True),
            ingest_max_bytes=_count("INGEST_MAX_BYTES", 64 * 1024 * 1024),
            rejected_raw_max_bytes=_count("REJECTED_RAW_MAX_BYTES", 1_048_588),
            max_clock_skew_seconds=_float("MAX_CLOCK_SKEW_SECONDS", 300.0),
            max_order_age_days=_float("MAX_ORDER_AGE_DAYS", 7.0, above=True),
            held_batch_alarm_seconds=_float("HELD_BATCH_ALARM_SECONDS", 60.0, above=True),
            web_host=_str("WEB_HOST", "127.0.0.1"),
            web_port=_int("WEB_PORT", 6066, 1, 65535),
            orders_api_token=_secret("ORDERS_API_TOKEN"),
            dashboard_token=_dashboard_token("DASHBOARD_TOKEN", _str("WEB_HOST", "127.0.0.1")),
            report_interval_seconds=_float("REPORT_INTERVAL_SECONDS", 60.0, above=True),
            report_grace_seconds=_float("REPORT_GRACE_SECONDS", 5.0),
            report_timeout_seconds=_float("REPORT_TIMEOUT_SECONDS", 300.0, above=True),
            spark_master=_str("SPARK_MASTER", "local[*]"),
            spark_driver_memory=_str("SPARK_DRIVER_MEMORY", "1g"),
            spark_remote=_spark_remote("SPARK_REMOTE"),
            spark_auth_properties=_str("SPARK_AUTH_PROPERTIES", ""),
            spark_jdbc_password=_one_of("SPARK_JDBC_PASSWORD", ("send", "server")),
            spark_jdbc_partitions=_count("SPARK_JDBC_PARTITIONS", 2),
            data_dir=Path(_str("DATA_DIR", str(PROJECT_ROOT / ".stack"))),
            jars_dir=Path(_str("JARS_DIR", str(DEFAULT_JARS_DIR))),
            postgres_replica=_flag("POSTGRES_REPLICA", False),
            spark_cluster=_flag("SPARK_CLUSTER", False),
            orders_retention_days=_days("ORDERS_RETENTION_DAYS", 400),
            rejected_retention_days=_days("REJECTED_RETENTION_DAYS", 30),
            report_runs_retention_days=_days("REPORT_RUNS_RETENTION_DAYS", 7),
            minute_reports_retention_days=_days("MINUTE_REPORTS_RETENTION_DAYS", 7),
            hour_reports_retention_days=_days("HOUR_REPORTS_RETENTION_DAYS", 90),
            topic_retention_hours=_int("TOPIC_RETENTION_HOURS", 168, 0),
            log_level=_log_level("LOG_LEVEL", "info"),
            log_format=_one_of("LOG_FORMAT", ("text", "json")),
            business_day_starts_hour=_hour_of_day("BUSINESS_DAY_STARTS", "00:00"),
            kafka_port=_int("KAFKA_PORT", 9092, 1, 65535),
            postgres_port=_int("POSTGRES_PORT", 5432, 1, 65535),
            spark_connect_port=_int("SPARK_CONNECT_PORT", 15002, 1, 65535),
        )


def settings_or_exit() -> Settings:
    """``Settings.from_env()``, or the reason on one line of stderr and exit code 2."""
    try:
        return Settings.from_env()
    except SettingError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_SETTING) from None
