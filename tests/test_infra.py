"""The local stack explains what is wrong when Java or the broker cannot start."""

import socket
import stat
from pathlib import Path

import pytest

from infra.java import StackError
from infra.kafka_broker import KafkaBroker
from infra.stack import free_port
from restaurant_app.java_runtime import JavaUnavailable, java_executable


def fake_java_home(tmp_path: Path, version_line: str) -> Path:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def test_a_missing_java_is_named_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk-here"))
    with pytest.raises(JavaUnavailable, match="no 'java' was found"):
        java_executable()


@pytest.mark.parametrize("line", ['openjdk version "11.0.2" 2019-01-15', 'java version "1.8.0_351"'])
def test_an_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str):
    monkeypatch.setenv("JAVA_HOME", str(fake_java_home(tmp_path, line)))
    with pytest.raises(JavaUnavailable, match="Java 17 or newer is needed"):
        java_executable()


def test_java_17_or_newer_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = fake_java_home(tmp_path, 'openjdk version "21.0.4" 2024-07-16')
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert java_executable() == str(home / "bin" / "java")


@pytest.mark.integration
def test_a_broker_that_cannot_start_fails_with_the_tail_of_its_log(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = KafkaBroker(tmp_path / "kafka", taken.getsockname()[1], free_port(), heap="256m")
        with pytest.raises(StackError) as error:
            broker.start(timeout=60)
    message = str(error.value)
    assert "The Kafka broker exited" in message
    assert "Address already in use" in message
    assert broker.process is None
