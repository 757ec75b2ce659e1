"""A backlog of near-1 MB messages: the worker's memory stays under the bound docs/guarantees.md states."""

import threading
import time

import psutil
import pytest

from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.traffic import OrderGenerator
from tests.services import create_topic, produce, query, wait_until
from tests.test_held_batches import set_topic_config

pytestmark = pytest.mark.integration

MB = 1024 * 1024
BASELINE = 300 * MB
"""What the worker takes with no backlog at all, and to spare (the bound docs/guarantees.md states)."""
IN_FLIGHT = 64 * MB  # INGEST_MAX_BYTES' default
BOUND = BASELINE + 3 * IN_FLIGHT
HELD_SECONDS = 15
BACKLOG = 500
RAW_KEPT = 100_000


class PeakMemory(threading.Thread):
    """Samples a process's resident memory until stopped; ``peak`` is the most it saw."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.done = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.05)


def test_a_backlog_of_500_near_limit_messages_keeps_the_worker_under_its_memory_bound(
    stack: ScratchStack, worker: WorkerProcess, database_url: str
):
    worker.env["REJECTED_RAW_MAX_BYTES"] = str(RAW_KEPT)
    # The dead-letter topic refuses at first: the first batch is held while the backlog waits.
    dead_letter_topic = worker.env["DEAD_LETTER_TOPIC"]
    create_topic(stack.bootstrap_servers, dead_letter_topic, **{"max.message.bytes": "64"})
    worker.start()
    worker.stop()
    generator = OrderGenerator(seed=196)
    good = [generator.order() for _ in range(20)]
    big = [b"{" + bytes([48 + n % 10]) * 999_000 + str(n).encode() for n in range(BACKLOG)]
    messages = [(None, o.dumps()) for o in good[:10]] + [(None, b) for b in big]
    messages += [(None, o.dumps()) for o in good[10:]]
    produce(stack.bootstrap_servers, worker.env["ORDERS_TOPIC"], messages)

    worker.start()
    memory = PeakMemory(worker.pid)
    memory.start()
    done = ("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM rejected_orders"
            " WHERE dead_lettered_at IS NOT NULL)")
    try:
        worker.wait_for_log("Could not publish", timeout=120)
        time.sleep(HELD_SECONDS)  # the consumer reads on while the batch is held, up to its bound
        held_peak = memory.peak
        set_topic_config(stack.bootstrap_servers, dead_letter_topic, **{"max.message.bytes": "1048588"})
        wait_until(lambda: query(database_url, done) == [(len(good), BACKLOG)], timeout=600,
                   message=f"the backlog was not worked off: {query(database_url, done)}")
    finally:
        memory.done.set()
        memory.join()
    print(f"peak RSS of the worker: {held_peak / MB:.0f} MB while held, {memory.peak / MB:.0f} MB"
          f" in all (bound {BOUND / MB:.0f} MB)")
    assert memory.peak < BOUND
    kept = query(database_url, "SELECT length(raw), raw_length, reason FROM rejected_orders")
    assert {(raw, length) for raw, length, _ in kept} == {(RAW_KEPT, len(big[0]))} | (
        {(RAW_KEPT, len(b)) for b in big})
