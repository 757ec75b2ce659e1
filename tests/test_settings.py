"""Checked settings: each parser, the one-line error and exit code 2, log levels and JSON logs."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restaurant_app.errors import PipelineError
from restaurant_app.logs import JsonFormatter, configure_logging, faust_logging_config
from restaurant_app.settings import (
    EXIT_BAD_SETTING,
    FLAGS,
    KAFKA_SECURITY_SETTINGS,
    LOG_LEVELS,
    SettingError,
    Settings,
    settings_or_exit,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with none of the pipeline's variables set."""
    for name in [field.upper() for field in Settings.__dataclass_fields__] + ["TOPIC_PARTITIONS",
                                                                               *KAFKA_SECURITY_SETTINGS]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def error_for(env: pytest.MonkeyPatch, name: str, value: str) -> str:
    env.setenv(name, value)
    with pytest.raises(SettingError) as caught:
        Settings.from_env()
    return str(caught.value)


def test_defaults_when_nothing_is_set(env: pytest.MonkeyPatch):
    settings = Settings.from_env()
    assert (settings.web_port, settings.workers, settings.order_simulator) == (6066, 1, True)
    assert (settings.postgres_replica, settings.spark_cluster) == (False, False)
    assert (settings.log_level, settings.log_format) == ("INFO", "text")
    assert settings.topic_replication_factor is None and settings.generator_seed is None


def test_a_setting_error_is_ours_and_a_value_error():
    assert issubclass(SettingError, PipelineError) and issubclass(SettingError, ValueError)


@pytest.mark.parametrize("raw", [*sorted(FLAGS), "TRUE", "On", " yes ", "No"])
def test_switches_accept_every_spelling(env: pytest.MonkeyPatch, raw: str):
    for name, field in (("POSTGRES_REPLICA", "postgres_replica"), ("SPARK_CLUSTER", "spark_cluster"),
                        ("ORDER_SIMULATOR", "order_simulator")):
        env.setenv(name, raw)
        assert getattr(Settings.from_env(), field) is FLAGS[raw.strip().lower()]


@pytest.mark.parametrize("name", ["POSTGRES_REPLICA", "SPARK_CLUSTER", "ORDER_SIMULATOR"])
def test_a_bad_switch_names_what_it_accepts(env: pytest.MonkeyPatch, name: str):
    assert error_for(env, name, "maybe") == (
        f"{name} must be true or false (also 1/0, on/off, yes/no), got 'maybe'")


@pytest.mark.parametrize("raw", [*sorted(LOG_LEVELS), "WARNING", "Debug", "CRITICAL"])
def test_log_levels_in_any_case(env: pytest.MonkeyPatch, raw: str):
    env.setenv("LOG_LEVEL", raw)
    level = Settings.from_env().log_level
    assert level == LOG_LEVELS[raw.lower()]
    assert isinstance(logging.getLevelName(level), int)


def test_a_bad_log_level(env: pytest.MonkeyPatch):
    assert error_for(env, "LOG_LEVEL", "loud") == (
        "LOG_LEVEL must be one of debug, info, warning (or warn), error, critical (any case), got 'loud'")


@pytest.mark.parametrize(("name", "value", "accepts"), [
    ("WEB_PORT", "abc", "an integer from 1 to 65535"),
    ("WEB_PORT", "0", "an integer from 1 to 65535"),
    ("WEB_PORT", "65536", "an integer from 1 to 65535"),
    ("WORKERS", "0", "an integer of at least 1"),
    ("BATCH_MAX_ORDERS", "-5", "an integer of at least 1"),
    ("ORDERS_TOPIC_PARTITIONS", "2.5", "an integer of at least 1"),
    ("TOPIC_REPLICATION_FACTOR", "0", "an integer of at least 1"),
    ("GENERATOR_SEED", "seven", "an integer"),
    ("ORDER_INTERVAL_SECONDS", "0", "a number above 0"),
    ("BATCH_WITHIN_SECONDS", "nan", "a number above 0"),
    ("REPORT_TIMEOUT_SECONDS", "inf", "a number above 0"),
    ("MAX_CLOCK_SKEW_SECONDS", "-1", "a number of at least 0"),
    ("REPORT_GRACE_SECONDS", "soon", "a number of at least 0"),
    ("DASHBOARD_LANGUAGE", "fr", "one of pt-BR, en, auto"),
    ("LOG_FORMAT", "xml", "one of text, json"),
    ("RESTAURANT_TIMEZONE", "Mars/Olympus", "an IANA time zone such as America/Sao_Paulo"),
    ("SPARK_REMOTE", "http://x:15002", "empty or a Spark Connect URL sc://host:port"),
])
def test_a_bad_value_is_named_with_what_is_accepted(env: pytest.MonkeyPatch, name: str, value: str,
                                                    accepts: str):
    assert error_for(env, name, value) == f"{name} must be {accepts}, got {value!r}"


def test_numbers_in_range_are_taken(env: pytest.MonkeyPatch):
    for name, value in (("WEB_PORT", "65535"), ("MAX_CLOCK_SKEW_SECONDS", "0"),
                        ("BATCH_WITHIN_SECONDS", "0.001"), ("GENERATOR_SEED", "-3")):
        env.setenv(name, f" {value} ")
    settings = Settings.from_env()
    assert (settings.web_port, settings.max_clock_skew_seconds) == (65535, 0.0)
    assert (settings.batch_within_seconds, settings.generator_seed) == (0.001, -3)


def test_the_former_name_of_a_setting_is_checked_too(env: pytest.MonkeyPatch):
    env.setenv("TOPIC_PARTITIONS", "3")
    assert Settings.from_env().orders_topic_partitions == 3
    assert error_for(env, "TOPIC_PARTITIONS", "x") == (
        "TOPIC_PARTITIONS must be an integer of at least 1, got 'x'")


def test_settings_or_exit_prints_one_line_and_exits_2(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    env.setenv("WEB_PORT", "abc")
    with pytest.raises(SystemExit) as stopped:
        settings_or_exit()
    assert stopped.value.code == EXIT_BAD_SETTING == 2
    assert capsys.readouterr().err == (
        "Configuration error: WEB_PORT must be an integer from 1 to 65535, got 'abc'\n")


def record(message: str, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("restaurant_app.x", logging.WARNING, __file__, 1, message, ("a",),
                             exc_info)


def test_json_logs_are_one_object_a_line_with_the_traceback_inside():
    try:
        raise RuntimeError("line one\nline two")
    except RuntimeError:
        line = JsonFormatter().format(record("stored %s", sys.exc_info()))
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == ("WARNING", "restaurant_app.x", "stored a")
    assert "RuntimeError: line one\nline two" in entry["exception"]
    assert entry["time"].endswith("+00:00")


def test_the_worker_logs_at_log_level_whatever_faust_was_told(env: pytest.MonkeyPatch):
    env.setenv("LOG_LEVEL", "debug")
    env.setenv("LOG_FORMAT", "json")
    config = faust_logging_config(Settings.from_env())
    assert config["merge"] and config["root"] == {"level": "DEBUG"}
    assert config["handlers"]["default"]["formatter"] == "json"
    assert config["formatters"]["json"]["()"] is JsonFormatter


def test_other_processes_log_at_log_level_in_log_format(env: pytest.MonkeyPatch):
    env.setenv("LOG_LEVEL", "Warning")
    env.setenv("LOG_FORMAT", "json")
    saved = logging.root.handlers[:], logging.root.level
    try:
        configure_logging(Settings.from_env())
        assert logging.root.level == logging.WARNING
        assert isinstance(logging.root.handlers[0].formatter, JsonFormatter)
    finally:
        logging.root.handlers[:], logging.root.level = saved


FAUST = str(Path(sys.executable).with_name("faust"))
BAD_SETTING_COMMANDS = [
    [FAUST, "-A", "restaurant_app", "--help"],
    [FAUST, "-A", "restaurant_app", "worker"],
    [sys.executable, "-m", "infra", "run"],
    [sys.executable, "-m", "spark_reports"],
]


@pytest.mark.integration
@pytest.mark.parametrize("command", BAD_SETTING_COMMANDS, ids=lambda command: " ".join(command[-2:]))
@pytest.mark.parametrize(("name", "value"), [("WEB_PORT", "abc"), ("POSTGRES_REPLICA", "maybe"),
                                             ("LOG_LEVEL", "loud")])
def test_every_program_stops_on_a_bad_setting_with_one_line(command: list[str], name: str, value: str):
    """The real programs, before they start anything: exit code 2, one line, no traceback."""
    done = subprocess.run(command, env={**os.environ, name: value}, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"Configuration error: {name} must be ") and line.endswith(f"got {value!r}")
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_a_worker_with_log_format_json_writes_one_json_object_a_line(worker):
    """And at LOG_LEVEL, whatever Faust's -l says."""
    worker.log_level = "warn"  # faust -l warn
    worker.env.update(LOG_FORMAT="json", LOG_LEVEL="Info")
    worker.start()
    worker.stop()
    output = worker.log_file.read_text()
    banner_end = output.index("+\n", output.index("| appdir")) + 2  # Faust's banner, on stdout
    lines = output[banner_end:].splitlines()
    entries = [json.loads(line) for line in lines]  # fails on any line that is not one JSON object
    assert len(entries) > 5 and "INFO" in {entry["level"] for entry in entries}
    assert any(entry["message"].endswith("Ready") for entry in entries)


def test_advertised_hosts_make_kafka_secure_and_require_it(env: pytest.MonkeyPatch):
    assert Settings.from_env().advertised_hosts == () and not Settings.from_env().kafka_secure
    env.setenv("ADVERTISED_HOSTS", " kafka.example.lan, 192.0.2.7 ,fd00::2")
    settings = Settings.from_env()
    assert settings.advertised_hosts == ("kafka.example.lan", "192.0.2.7", "fd00::2")
    assert settings.kafka_secure
    message = error_for(env, "KAFKA_SECURE", "off")
    assert "KAFKA_SECURE cannot be off while ADVERTISED_HOSTS" in message


@pytest.mark.parametrize("raw", ["-kafka", "kafka.example.lan/", "a b", "kafka_1:9092"])
def test_an_advertised_host_that_is_no_name_is_refused(env: pytest.MonkeyPatch, raw: str):
    assert "ADVERTISED_HOSTS" in error_for(env, "ADVERTISED_HOSTS", raw)



@pytest.mark.parametrize("name", ["DASHBOARD_TOKEN", "ORDERS_API_TOKEN"])
def test_a_token_comes_from_its_file_without_the_line_break(env: pytest.MonkeyPatch, tmp_path: Path,
                                                            name: str):
    secret = tmp_path / "token"
    secret.write_text("s3cret-token\n")
    env.setenv(f"{name}_FILE", str(secret))
    assert getattr(Settings.from_env(), name.lower()) == "s3cret-token"
    env.setenv(name, "another")
    both = error_for(env, f"{name}_FILE", str(secret))
    assert both == f"{name} and {name}_FILE are both set; set one of them"
    env.delenv(name)
    secret.write_text("\n")
    assert "is empty" in error_for(env, f"{name}_FILE", str(secret))
    assert "a file this user can read" in error_for(env, f"{name}_FILE", str(tmp_path / "missing"))


def test_the_dashboard_token_file_counts_as_the_login_beyond_loopback(env: pytest.MonkeyPatch,
                                                                     tmp_path: Path):
    env.setenv("WEB_HOST", "0.0.0.0")
    assert "DASHBOARD_TOKEN must be set" in error_for(env, "WEB_HOST", "0.0.0.0")
    (tmp_path / "token").write_text("s3cret-token")
    env.setenv("DASHBOARD_TOKEN_FILE", str(tmp_path / "token"))
    assert Settings.from_env().dashboard_token == "s3cret-token"


@pytest.mark.parametrize(("remote", "expected"), [
    ("sc://spark-connect:15443/;use_ssl=true", "sc://spark-connect:15443/;use_ssl=true;token=t0ken"),
    ("sc://spark-connect:15443", "sc://spark-connect:15443/;token=t0ken"),
    ("sc://spark-connect:15443/", "sc://spark-connect:15443/;token=t0ken"),
])
def test_the_spark_connect_token_file_joins_spark_remote(env: pytest.MonkeyPatch, tmp_path: Path, remote: str,
                                                        expected: str):
    (tmp_path / "token").write_text("t0ken\n")
    env.setenv("SPARK_CONNECT_TOKEN_FILE", str(tmp_path / "token"))
    env.setenv("SPARK_REMOTE", remote)
    assert Settings.from_env().spark_remote == expected


def test_a_spark_connect_token_file_needs_a_remote_without_a_token_and_a_token(env: pytest.MonkeyPatch,
                                                                             tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("t0ken")
    env.setenv("SPARK_CONNECT_TOKEN_FILE", str(token))
    with pytest.raises(SettingError, match="SPARK_REMOTE is unset"):
        Settings.from_env()
    assert "holding a ;token= of its own" in error_for(env, "SPARK_REMOTE", "sc://h:1/;token=other")
    env.setenv("SPARK_REMOTE", "sc://h:1")
    token.write_text("two words")
    with pytest.raises(SettingError, match="holds no token") as caught:
        Settings.from_env()
    assert "two words" not in str(caught.value)
