"""The restaurant's business day: from ``BUSINESS_DAY_STARTS`` on its clock to that hour the next day.

A restaurant that closes after midnight counts its night in the day it opened: with 04:00, an
order at 01:30 on the 2nd belongs to the 1st. The start is the local midnight plus that many
hours of elapsed time (as PostgreSQL's and Spark's interval arithmetic counts them), so on a day
whose clock changes for daylight saving time between midnight and the start, the day starts an
hour early or late on the wall clock. Day reports, "today" on the dashboard and the day's dish
ranking all follow it; a day report's ``period_start`` is its business day's start.
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SQL_DAY_START = "(date_trunc('day', {moment} - {shift}, {zone}) + {shift})"
"""The start of the business day holding ``moment`` (a timestamptz), in SQL; ``shift`` is an interval."""


def shift(hours: int) -> timedelta:
    return timedelta(hours=hours)


def day_start(moment: datetime, zone: ZoneInfo, hours: int) -> datetime:
    """The start of the business day holding ``moment``, on ``zone``'s clock."""
    local = (moment.astimezone(UTC) - shift(hours)).astimezone(zone)
    return date_start(local.date(), zone, hours)


def date_start(day: date, zone: ZoneInfo, hours: int) -> datetime:
    """The start of the business day of the calendar date ``day``."""
    midnight = datetime.combine(day, time.min, zone)
    return (midnight.astimezone(UTC) + shift(hours)).astimezone(zone)
