"""The simulator's settings: ORDER_SIMULATOR (it runs only when on, the default) and SIMULATED_STORES."""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.settings import Settings
from restaurant_app.traffic import HOURLY_DEMAND, OrderGenerator, chain
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


def test_one_simulated_store_is_the_single_store_with_the_restaurants_own_curve():
    moment = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # noon in São Paulo: the lunch peak
    single = OrderGenerator(seed=3).orders_for_tick(5, moment)
    assert {o.store_id for o in single} == {"main"}
    assert len(single) in (int(5 * HOURLY_DEMAND[12]), int(5 * HOURLY_DEMAND[12]) + 1)


def test_a_simulated_chain_has_stores_of_their_own_size_and_peak():
    stores = chain(20)
    assert [s.store_id for s in stores] == [f"loja-{n:02d}" for n in range(1, 21)]
    assert chain(20) == stores  # store N is the same in every process
    assert all(0.5 <= s.size <= 2.0 for s in stores)
    assert {s.shift_hours for s in stores} == {-1, 0, 1}
    generator = OrderGenerator(seed=4, stores=20)
    start = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # midnight in São Paulo
    ticks = [start + timedelta(seconds=tick) for tick in range(0, 24 * 3600, 600)]
    counts = Counter(o.store_id for moment in ticks for o in generator.orders_for_tick(1, moment))
    assert set(counts) == {s.store_id for s in stores}
    for store in stores:
        expected = sum(generator.demand(moment, store) for moment in ticks)
        assert abs(counts[store.store_id] - expected) < 0.25 * expected + 5, (store, counts[store.store_id])
    early = next(s for s in stores if s.shift_hours == -1)
    late = next(s for s in stores if s.shift_hours == 1)
    noon_local = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert generator.demand(noon_local, early) / early.size == HOURLY_DEMAND[11]
    assert generator.demand(noon_local, late) / late.size == HOURLY_DEMAND[13]


@pytest.mark.integration
def test_a_simulated_chain_places_orders_in_each_of_its_stores(worker: WorkerProcess, database_url: str):
    worker.env.update(SIMULATED_STORES="3", ORDER_INTERVAL_SECONDS="0.2", ORDERS_PER_TICK="1")
    worker.start()
    stores = "SELECT DISTINCT store_id FROM orders ORDER BY 1"
    wait_until(lambda: len(query(database_url, stores)) == 3, message="not every store placed orders")
    assert query(database_url, stores) == [("loja-01",), ("loja-02",), ("loja-03",)]
    assert query(database_url, "SELECT count(*) FROM rejected_orders") == [(0,)]
