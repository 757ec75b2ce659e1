"""Cancellations and refunds against their stored order: what each takes back, or why it may not.

An event is judged in the transaction that stores it, with its order's key row locked
(``order_sink.EVENT_TARGET``), so the events of one order are judged one after another. What
an event takes back (``amount``) is at most what is left of the order's total; the revenue it
takes back (``revenue``) is taken first, and a service charge that went to the staff last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from restaurant_app.errors import PipelineError
from restaurant_app.models import OrderEvent


class EventRefused(PipelineError):
    """The event's order does not allow it; the text says why."""


@dataclass(frozen=True)
class EventTarget:
    """The stored order an event refers to, and what earlier events took back of it."""

    created_at: datetime
    total: Decimal
    store_id: str
    staff_service_charge: Decimal
    """The order's service charge if it is not the restaurant's revenue, else 0."""
    lines: int
    taken: Decimal
    revenue_taken: Decimal
    cancelled_by: str | None


def judged(event: OrderEvent, target: EventTarget) -> tuple[Decimal, Decimal]:
    """What ``event`` takes back of its order: (amount, revenue); ``EventRefused`` if it may not."""
    order = event.order_id
    if target.cancelled_by is not None:
        raise EventRefused(f"order {order} is already cancelled (event {target.cancelled_by})")
    if event.created_at < target.created_at:
        raise EventRefused(f"the {event.kind} at {event.created_at.isoformat()} is before its order,"
                           f" placed at {target.created_at.isoformat()}")
    left = target.total - target.taken
    revenue_left = max(target.total - target.staff_service_charge - target.revenue_taken, Decimal(0))
    if event.kind == "cancellation":
        if left == 0:
            raise EventRefused(f"order {order} was refunded in full: nothing is left to cancel")
        if event.amount is not None and event.amount != left:
            raise EventRefused(f"cancellation amount {event.amount} is not what is left of order"
                               f" {order}'s total, {left}")
        return left, revenue_left
    if event.amount > left:
        raise EventRefused(f"refund of {event.amount} is more than what is left of order {order}'s"
                           f" total, {left}")
    beyond = [line for line in event.lines if line > target.lines]
    if beyond:
        raise EventRefused(f"refund names line {beyond[0]}, but order {order} has {target.lines} line(s)")
    return event.amount, min(event.amount, revenue_left)


def same_event(event: OrderEvent, kind: str, order_id: str, created_at: datetime, reason: str,
               amount: Decimal, lines: list[int]) -> bool:
    """Whether ``event`` is the stored one sent again (a cancellation without amount takes the stored one)."""
    return ((kind, order_id, created_at, reason, list(event.lines))
            == (event.kind, event.order_id, event.created_at, event.reason, lines)
            and (event.amount is None or event.amount == amount))
