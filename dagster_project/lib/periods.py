"""Billing-period arithmetic: the one place that knows where periods start and end.

Periods are half-open ``[start, end)`` in UTC (naive ``datetime`` values are UTC).
``calendar`` periods are aligned to unit boundaries counted from 1970-01-01 (months at the
1st 00:00, 5-minute periods at :00, :05, ...; ``every: 3`` months gives calendar quarters).
``anniversary`` periods count whole units from an origin instant; months are added from the
origin each time and clamped to the month's last day (Jan 31 -> Feb 28/29 -> Mar 31).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1)


def as_utc_naive(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def add_units(moment: datetime, unit: str, count: int) -> datetime:
    """``moment`` plus ``count`` units; month/year arithmetic clamps to the month end."""
    if unit == "minute":
        return moment + timedelta(minutes=count)
    if unit == "day":
        return moment + timedelta(days=count)
    months = count * (12 if unit == "year" else 1)
    if unit not in ("month", "year"):
        raise ValueError(f"unknown period unit {unit!r}")
    month_index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(month_index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _units_between(origin: datetime, moment: datetime, unit: str) -> int:
    """Whole units from origin to moment (floor), for locating the containing period."""
    if unit == "minute":
        return int((moment - origin).total_seconds() // 60)
    if unit == "day":
        return (moment - origin).days
    months = (moment.year - origin.year) * 12 + (moment.month - origin.month)
    if add_units(origin, "month", months) > moment:
        months -= 1
    return months // 12 if unit == "year" else months


def period_containing(moment: datetime, unit: str, every: int, origin: datetime = EPOCH) -> tuple[datetime, datetime]:
    """The period ``[start, end)`` of ``every`` units, counted from ``origin``, holding ``moment``."""
    moment = as_utc_naive(moment)
    origin = as_utc_naive(origin)
    if unit == "year" and origin == EPOCH:
        index = (moment.year - 1970) // every
        start = datetime(1970 + index * every, 1, 1)
        return start, datetime(1970 + (index + 1) * every, 1, 1)
    index = _units_between(origin, moment, unit) // every
    start = add_units(origin, unit, index * every)
    end = add_units(origin, unit, (index + 1) * every)
    return start, end


def periods_between(
    start: datetime, stop: datetime, unit: str, every: int, origin: datetime = EPOCH
) -> list[tuple[datetime, datetime]]:
    """Every whole period overlapping ``[start, stop)``, in order."""
    start, stop = as_utc_naive(start), as_utc_naive(stop)
    periods = []
    cursor = start
    while cursor < stop:
        period = period_containing(cursor, unit, every, origin)
        periods.append(period)
        cursor = period[1]
    return periods


def seconds(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds())
