"""Growing pauses between tries of something that waits out an outage."""

import asyncio
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Pauses of ``first`` seconds, doubled after each, at most ``longest``; ``delay`` is the next one."""

    first: float
    longest: float
    delay: float = field(init=False)

    def __post_init__(self) -> None:
        self.delay = self.first

    async def wait(self) -> None:
        """Sleep the next pause, and double the one after it."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.longest)
