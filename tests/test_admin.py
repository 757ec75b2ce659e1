"""The operator's command, python -m restaurant_app.admin: each subcommand and its exit code."""

import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.admin import ATTENTION, FAILED, OK, USAGE, describe_retention, main, when
from restaurant_app.database import migration_files
from restaurant_app.menu import MENU
from restaurant_app.models import Order, OrderItem
from restaurant_app.settings import PROJECT_ROOT
from tests.services import execute, produce, query, wait_until


def test_times_without_an_offset_are_the_restaurant_s():
    parse = when("America/Sao_Paulo")
    assert parse("2026-11-30T12:00").astimezone(UTC) == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert parse("2026-11-30T12:00+00:00") == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_bad_options_exit_2(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as stopped:
        main(["rebuild-reports", "--from", "yesterday", "--to", "2026-11-30"])
    assert stopped.value.code == USAGE
    assert main(["rebuild-reports", "--from", "2026-11-30", "--to", "2026-11-29"]) == USAGE
    assert capsys.readouterr().err.endswith("rebuild-reports: --to must be later than --from\n")


def test_retention_in_words():
    assert describe_retention(None) == "does not exist"
    assert describe_retention(-1) == "keeps messages for ever (retention.ms=-1)"
    assert describe_retention(172_800_000) == "keeps messages 2 day(s) (retention.ms=172800000)"


def admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restaurant_app.admin", *args], env={**os.environ, **env},
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)


def order(at: datetime, dish: int) -> Order:
    item = MENU[dish]
    return Order(order_id=str(uuid.uuid4()), created_at=at, customer_id=dish + 1,
                 customer_name=f"Cliente {dish + 1}",
                 channel="delivery", payment_method="pix",
                 items=[OrderItem(dish=item.name, category=item.category, unit_price=item.price,
                                  quantity=1)], total=item.price)


@pytest.mark.integration
def test_migrate_status_and_rebuild_reports(stack: ScratchStack, worker: WorkerProcess, database_url: str):
    env = {**worker.env, "SPARK_DRIVER_MEMORY": "512m"}
    versions = [version for version, _ in migration_files()]
    dry = admin(env, "migrate", "--dry-run")
    assert dry.returncode == OK and dry.stdout.startswith(f"{len(versions)} migration(s) to apply to ")
    assert dry.stdout.rstrip().endswith(", ".join(versions))
    assert query(database_url, "SELECT to_regclass('schema_migrations') IS NULL") == [(True,)]
    pending = admin(env, "status")
    assert pending.returncode == ATTENTION and f"{len(versions)} migration(s) pending" in pending.stdout
    applied = admin(env, "migrate")
    assert applied.returncode == OK and f"Applied {len(versions)} migration(s)" in applied.stdout
    assert admin(env, "migrate", "--dry-run").stdout.startswith("0 migration(s) to apply")

    minute = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    orders = [order(minute + timedelta(seconds=10 * n), n) for n in range(3)]
    worker.start()
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, o.dumps()) for o in orders])
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == 3)
    worker.stop()
    stale = admin(env, "status")
    assert stale.returncode == ATTENTION, stale.stdout + stale.stderr
    assert "Orders: 3 stored" in stale.stdout and "the last succeeded none" in stale.stdout

    revenue = sum((o.total for o in orders), Decimal(0))
    span = ("--from", minute.isoformat(), "--to", (minute + timedelta(minutes=1)).isoformat())
    first = admin(env, "rebuild-reports", *span, "--run")
    assert first.returncode == OK, first.stderr[-3000:]
    assert "Queued 1 minute window(s)" in first.stdout
    sales = ("SELECT gross_revenue FROM report_sales"
             " WHERE granularity = 'minute' AND period_start = %s AND store_id = ''")
    assert query(database_url, sales, (minute,)) == [(revenue,)]
    execute(database_url, "UPDATE report_sales SET gross_revenue = 0 WHERE granularity = 'minute'")
    again = admin(env, "rebuild-reports", *span, "--run")
    assert again.returncode == OK, again.stderr[-3000:]
    assert query(database_url, sales, (minute,)) == [(revenue,)]
    assert query(database_url, "SELECT count(*) FROM report_skipped_windows") == [(0,)]

    healthy = admin(env, "status")
    assert healthy.returncode == OK, healthy.stdout + healthy.stderr
    assert f"{worker.env['ORDERS_TOPIC']!r} keeps messages" in healthy.stdout
    assert admin({**env, "KAFKA_BROKER": "127.0.0.1:9"}, "status").returncode == FAILED
    away = admin({**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}, "status")
    assert away.returncode == FAILED and "is unreachable" in away.stderr and "Traceback" not in away.stderr


@pytest.mark.integration
def test_replay_stores_again_what_the_database_lost(stack: ScratchStack, worker: WorkerProcess,
                                                     database_url: str):
    topic, now = worker.env["ORDERS_TOPIC"], datetime.now(UTC)
    worker.start()
    kept = [order(now, n) for n in range(3)]
    produce(stack.kafka.bootstrap_servers, topic, [(None, o.dumps()) for o in kept])
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == 3)
    since = datetime.now(UTC)
    lost = [order(now, n) for n in range(3, 6)]
    produce(stack.kafka.bootstrap_servers, topic, [(None, o.dumps()) for o in lost])
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == 6)
    busy = admin(worker.env, "replay", "--from", since.isoformat())
    assert busy.returncode == FAILED and "has 1 member(s)" in busy.stderr
    assert len(busy.stderr.splitlines()) == 1 and "Traceback" not in busy.stderr
    worker.stop()

    lost_ids = [o.order_id for o in lost[:2]]  # as if restored from a backup taken before them
    execute(database_url, "DELETE FROM order_keys WHERE order_id = ANY(%s::uuid[])", (lost_ids,))
    wait_until(lambda: admin(worker.env, "replay", "--from", since.isoformat(), "--dry-run").returncode
               == OK, message="the stopped worker's session did not end")
    dry = admin(worker.env, "replay", "--from", since.isoformat(), "--dry-run")
    moves = [line for line in dry.stdout.splitlines() if line.startswith(f"{topic}[")]
    offsets = [[0 if word == "none" else int(word) for word in line.split()[-3::2]] for line in moves]
    assert len(moves) == 2 and sum(current - new for current, new in offsets) == 3
    assert admin(worker.env, "replay", "--from", since.isoformat()).returncode == OK
    worker.start()
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == 6)
    worker.stop()  # the worker has read every message again, the stored one included:
    ends = admin(worker.env, "replay", "--from", datetime.now(UTC).isoformat(), "--dry-run").stdout
    at_end = [line.split()[-3] == line.split()[-1] for line in ends.splitlines() if line.startswith(topic)]
    assert at_end == [True, True], ends
    stored = query(database_url, "SELECT order_id::text, count(*) FROM orders GROUP BY 1")
    assert sorted(stored) == sorted((o.order_id, 1) for o in kept + lost)
    unreachable = admin({**worker.env, "KAFKA_BROKER": "127.0.0.1:9"}, "replay", "--from", since.isoformat())
    assert unreachable.returncode == FAILED and "is unreachable" in unreachable.stderr
    missing = admin({**worker.env, "ORDERS_TOPIC": "no-such-topic"}, "replay", "--from", since.isoformat())
    assert missing.returncode == FAILED and "does not exist" in missing.stderr


def make_run_data(data_dir: Path) -> set[str]:
    """A DATA_DIR as make run leaves it; return the paths reset keeps."""
    for name in ("jars/postgresql.jar", "bin/promtool", "postgres/data/PG_VERSION", "kafka/data/meta",
                 "spark-connect/token", "worker.log"):
        (data_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / name).write_text("x")
    return {"jars", "jars/postgresql.jar", "bin", "bin/promtool"}


def tree(data_dir: Path) -> set[str]:
    return {str(path.relative_to(data_dir)) for path in data_dir.rglob("*")}


def test_reset_asks_for_yes_then_keeps_only_jars_and_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    kept, before = make_run_data(tmp_path), tree(tmp_path)
    assert main(["reset"]) == USAGE
    assert tree(tmp_path) == before
    assert "would delete 4 item(s)" in capsys.readouterr().err
    assert main(["reset", "--yes"]) == OK
    assert tree(tmp_path) == kept
    assert capsys.readouterr().out.startswith(f"Deleted 4 item(s) in {tmp_path} (kafka, postgres, ")


@pytest.mark.integration
def test_reset_refuses_while_make_run_s_postgres_runs(stack: ScratchStack, tmp_path: Path):
    make_run_data(tmp_path)
    pid_file = stack.postgres.data_dir / "postmaster.pid"  # a running PostgreSQL's, as make run's would be
    shutil.copy(pid_file, tmp_path / "postgres" / "data" / "postmaster.pid")
    before = tree(tmp_path)
    refused = admin({"DATA_DIR": str(tmp_path)}, "reset", "--yes")
    assert refused.returncode == FAILED and refused.stderr.startswith("reset: make run is up")
    assert len(refused.stderr.splitlines()) == 1 and tree(tmp_path) == before
