"""``POST /api/orders``: orders/s taken in batches, and single orders at a fixed rate, on one worker.

Every answer must be 202; afterwards every order taken must be stored exactly once. The worker's
CPU time per request is measured too: it depends less on what else the machine runs than the
rates and latencies do.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import psutil
import psycopg

from bench.latency import percentile
from bench.pipeline import pipeline_env, wait_for_orders
from infra.scratch import ScratchStack, WorkerProcess
from restaurant_app.traffic import OrderGenerator

log = logging.getLogger("bench")

BATCH_SIZE = 100
BATCH_CLIENTS = 4
CONNECTIONS = 100
"""The most connections the single-order client keeps open; requests beyond wait for one (timed)."""
WARM_UP_SECONDS = 5.0
STORED_WITHIN_SECONDS = 300
"""Each part's CPU is read once its orders are stored, so that it counts storing them too."""


TEMPLATE_ORDERS = 1_000
ORDER_ID = re.compile(rb'"order_id":"[0-9a-f-]{36}"')


class Bodies:
    """Request bodies of new orders, cheap to make: generated orders made new by their order ids
    alone, so that the client's CPU goes to sending, not to inventing orders."""

    def __init__(self, generator: OrderGenerator) -> None:
        self.templates = [generator.order(datetime.now(UTC)).dumps() for _ in range(TEMPLATE_ORDERS)]
        self.made = 0

    def order(self) -> bytes:
        self.made += 1
        template = self.templates[self.made % len(self.templates)]
        return ORDER_ID.sub(f'"order_id":"{uuid.uuid4()}"'.encode(), template, count=1)

    def batch(self) -> bytes:
        return b"[" + b",".join(self.order() for _ in range(BATCH_SIZE)) + b"]"


class WorkerCpu:
    """The worker process's CPU seconds (user and system) since the last reading."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.last = self.seconds()

    def seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def since(self) -> float:
        now = self.seconds()
        spent, self.last = now - self.last, now
        return spent


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, int]:
    """Seconds to the answer, and the orders it says were taken; anything but 202 fails the run."""
    start = time.monotonic()
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
            if answer.status != 202:
                raise RuntimeError(f"POST /api/orders answered {answer.status}: {await answer.text()}")
            taken = await answer.json()
    except aiohttp.ClientError as exc:
        raise RuntimeError(f"POST /api/orders failed: {exc}") from exc
    return time.monotonic() - start, taken.get("accepted", 1)


async def batches(url: str, bodies: Bodies, seconds: float) -> tuple[float, list[float], int]:
    """``BATCH_CLIENTS`` clients posting batches back to back: orders/s, latencies, orders taken."""
    latencies: list[float] = []
    taken = 0
    end = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal taken
        while time.monotonic() < end:
            latency, count = await post(session, url, bodies.batch())
            latencies.append(latency)
            taken += count

    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        await asyncio.gather(*(client(session) for _ in range(BATCH_CLIENTS)))
        return taken / (time.monotonic() - start), latencies, taken


async def singles(url: str, bodies: Bodies, seconds: float, rate: float) -> tuple[float, list[float], int]:
    """One order per request, started at ``rate`` per second whatever the answers: rate, latencies, taken."""
    latencies: list[float] = []
    requests: list[asyncio.Task] = []

    async def one(session: aiohttp.ClientSession, body: bytes) -> None:
        latencies.append((await post(session, url, body))[0])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:
        start = time.monotonic()
        while (due := start + len(requests) / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            requests.append(asyncio.ensure_future(one(session, bodies.order())))
        await asyncio.gather(*requests)
        return len(requests) / (time.monotonic() - start), latencies, len(requests)


def stored_once(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT order_id) FROM orders").fetchone()


def api_run(stack: ScratchStack, seconds: float, rate: float, seed: int, number: int) -> dict[str, float]:
    """One worker taking orders over HTTP: in batches, then one per request at ``rate``."""
    database_url = stack.new_database(f"bench_api_{number}")
    env = {**pipeline_env(stack, database_url, f"bench-api-{uuid.uuid4().hex[:8]}", "api"),
           "ORDER_SIMULATOR": "off"}
    log_file = stack.home / "logs" / f"api-worker-{number}.log"
    worker = WorkerProcess(env, log_file, web_port=int(env["WEB_PORT"]))
    try:
        worker.start(ready_timeout=120)
        url = f"{worker.url}/api/orders"
        bodies = Bodies(OrderGenerator(seed))
        warm = asyncio.run(batches(url, bodies, WARM_UP_SECONDS))[2]
        wait_for_orders(database_url, warm, worker, timeout=STORED_WITHIN_SECONDS)
        cpu = WorkerCpu(worker.pid)
        batch_rate, batch_latencies, batch_taken = asyncio.run(batches(url, bodies, seconds))
        wait_for_orders(database_url, warm + batch_taken, worker, timeout=STORED_WITHIN_SECONDS)
        batch_cpu = cpu.since()
        single_rate, single_latencies, single_taken = asyncio.run(singles(url, bodies, seconds, rate))
        expected = warm + batch_taken + single_taken
        wait_for_orders(database_url, expected, worker, timeout=STORED_WITHIN_SECONDS)
        single_cpu = cpu.since()
        rows, distinct = stored_once(database_url)
        if rows != expected or distinct != expected:
            raise RuntimeError(f"{expected} orders taken, {rows} stored ({distinct} distinct)")
    finally:
        worker.stop()
    return {
        "batch_orders_per_s": batch_rate,
        "batch_p50_ms": percentile(batch_latencies, 0.5) * 1000,
        "batch_p99_ms": percentile(batch_latencies, 0.99) * 1000,
        "batch_cpu_ms": batch_cpu / len(batch_latencies) * 1000,
        "single_requests_per_s": single_rate,
        "single_p50_ms": percentile(single_latencies, 0.5) * 1000,
        "single_p99_ms": percentile(single_latencies, 0.99) * 1000,
        "single_cpu_ms": single_cpu / single_taken * 1000,
        "orders_stored": rows,
    }
