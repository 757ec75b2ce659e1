"""The worker with a sink that fails with an error nobody foresaw while the file ``FAULT_FLAG`` exists.

``faust -A tests.faulty_app worker``: the fault tests' way of breaking the save path from outside.
"""

import os
from pathlib import Path

import agents.persistence
from restaurant_app.order_sink import OrderSink
from restaurant_app.worker import app

__all__ = ["app"]


class FlaggedFault:
    """Wraps the real sink; ``save`` raises while the flag file exists."""

    def __init__(self, sink: OrderSink, flag: Path) -> None:
        self.sink = sink
        self.flag = flag

    async def ready(self) -> None:
        await self.sink.ready()

    async def save(self, orders, rejections=()):
        if self.flag.exists():
            raise RuntimeError("the fault tests' injected failure")
        return await self.sink.save(orders, rejections)

    async def mark_dead_lettered(self, rejections) -> None:
        await self.sink.mark_dead_lettered(rejections)


agents.persistence.sink = FlaggedFault(agents.persistence.sink, Path(os.environ["FAULT_FLAG"]))
