"""ORDER_SIMULATOR: the simulated point of sale runs only when it is on (the default)."""

import time

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.settings import Settings
from restaurant_app.traffic import OrderGenerator
from tests.services import produce, query, wait_until


@pytest.mark.parametrize(("raw", "expected"), [(None, True), ("", True), ("on", True), ("OFF", False),
                                               (" off ", False), ("On", True), ("no", False),
                                               ("1", True), ("false", False)])
def test_the_simulator_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch, raw: str | None,
                                               expected: bool):
    if raw is None:
        monkeypatch.delenv("ORDER_SIMULATOR", raising=False)
    else:
        monkeypatch.setenv("ORDER_SIMULATOR", raw)
    assert Settings.from_env().order_simulator is expected


@pytest.mark.parametrize("raw", ["of", "2", "enabled"])
def test_any_other_value_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch, raw: str):
    monkeypatch.setenv("ORDER_SIMULATOR", raw)
    with pytest.raises(ValueError, match=f"ORDER_SIMULATOR must be true or false .*, got '{raw}'"):
        Settings.from_env()


@pytest.mark.integration
def test_with_the_simulator_off_the_worker_stores_only_the_orders_sent_to_it(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    worker.env.update(ORDER_SIMULATOR="off", ORDER_INTERVAL_SECONDS="0.2", ORDERS_PER_TICK="3")
    worker.start()
    worker.wait_for_log("The order simulator is off", timeout=30)
    sent = OrderGenerator(seed=30).order()
    produce(stack.kafka.bootstrap_servers, worker.env["ORDERS_TOPIC"], [(None, sent.dumps())])
    wait_until(lambda: query(database_url, "SELECT count(*) FROM orders")[0][0] == 1)
    time.sleep(2)  # ten of the simulator's ticks, had it been on
    assert query(database_url, "SELECT order_id::text FROM orders") == [(sent.order_id,)]
    assert "Placed" not in worker.log_file.read_text()
