"""``python -m bench.validation``: the CPU µs per order of checking a message, as the worker does.

Encodes ``--orders`` generated orders of a 50-store chain as the producer does (``Order.dumps``),
then times ``parse_message`` over all of them with the worker's limits (``time.process_time``),
``--runs`` times. Three variants: version 1 orders, version 2 bills (``whole_bills``), and version 1
orders written as ASCII-only JSON (every accent a ``\\uXXXX`` escape). Prints each variant's min and
median µs per order, and which path (fast or full) took its messages. The garbage collector is
set as in the worker (``settle_garbage_collector``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

from restaurant_app.traffic import OrderGenerator
from restaurant_app.validation import DEFAULT_MAX_CLOCK_SKEW, fast_path_order, parse_message
from restaurant_app.worker import settle_garbage_collector

STORES = 50
MAX_ORDER_AGE = timedelta(days=7)
"""The worker's default ``MAX_ORDER_AGE_DAYS``."""


def messages(count: int, seed: int, whole_bills: bool) -> list[bytes]:
    """``count`` generated orders of the last hour, as the producer encodes them."""
    generator = OrderGenerator(seed, stores=STORES, whole_bills=whole_bills)
    start = datetime.now(UTC) - timedelta(hours=1)
    return [generator.order(start + timedelta(milliseconds=n), f"loja-{n % STORES:02d}").dumps()
            for n in range(count)]


def ascii_only(raw: bytes) -> bytes:
    """``raw`` as ASCII-only JSON, as ``json.dumps`` writes it by default: accents as ``\\uXXXX``."""
    return json.dumps(json.loads(raw), separators=(",", ":")).encode()


def cpu_us_per_message(raws: list[bytes]) -> float:
    """CPU µs per message of ``parse_message`` with the worker's limits, over all of ``raws``."""
    started = time.process_time()
    for raw in raws:
        parse_message(raw, max_clock_skew=DEFAULT_MAX_CLOCK_SKEW, max_age=MAX_ORDER_AGE)
    return (time.process_time() - started) / len(raws) * 1e6


def fast_share(raws: list[bytes]) -> float:
    """The share of ``raws`` the fast path takes."""
    now = datetime.now(UTC)
    return sum(fast_path_order(raw, now, DEFAULT_MAX_CLOCK_SKEW) is not None for raw in raws) / len(raws)


def main() -> None:
    """Measure each variant ``--runs`` times and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    v1 = messages(args.orders, args.seed, whole_bills=False)
    variants = {"v1": v1, "v2 (whole_bills)": messages(args.orders, args.seed, whole_bills=True),
                "v1 escaped Unicode": [ascii_only(raw) for raw in v1]}
    settle_garbage_collector()  # as the worker does once started
    for name, raws in variants.items():
        figures = [cpu_us_per_message(raws) for _ in range(args.runs)]
        print(f"{name:20} min {min(figures):6.2f}  median {statistics.median(figures):6.2f} µs/order"
              f"  (fast path {fast_share(raws):.1%}, {len(raws):,} orders x {args.runs} runs)")


if __name__ == "__main__":
    main()
