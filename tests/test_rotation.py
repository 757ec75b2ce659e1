"""``python -m infra rotate-secrets`` forgets make run's generated secrets while it is stopped."""

import os
from pathlib import Path

import pytest

from infra.java import StackError
from infra.rotation import rotate_secrets
from infra.secret_file import make_secret, make_spark_auth_file

MADE = ("postgres/roles/restaurant_web", "postgres/roles/restaurant_reports", "spark-connect/token",
        "spark-cluster/auth.properties", "ca/ca.pem", "ca/ca.key", "kafka-secrets/broker.pem",
        "spark-connect/front.pem", "postgres-front/front.pem")
KEPT = ("postgres/password", "spark-connect/server.log", "kafka-secrets/pos.password",
        "kafka-secrets/admin.password")


def make_run_data(data_dir: Path) -> None:
    for name in (*MADE, *KEPT):
        (data_dir / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("auth.properties"):
            make_spark_auth_file(data_dir / name)
        else:
            make_secret(data_dir / name)


def test_the_made_secrets_go_and_the_rest_stays(tmp_path: Path):
    make_run_data(tmp_path)
    old = {name: (tmp_path / name).read_text() for name in MADE}
    removed = rotate_secrets(tmp_path)
    assert sorted(removed) == sorted(tmp_path / name for name in MADE)
    assert all((tmp_path / name).exists() for name in KEPT)
    make_run_data(tmp_path)  # as the next start does
    assert all((tmp_path / name).read_text() != old[name] for name in MADE)


def test_a_running_make_run_is_left_alone(tmp_path: Path):
    make_run_data(tmp_path)
    pid_file = tmp_path / "postgres" / "data" / "postmaster.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()}\n")  # a postmaster that runs
    with pytest.raises(StackError, match="stop it first"):
        rotate_secrets(tmp_path)
    assert all((tmp_path / name).exists() for name in MADE)
