"""dagster_project.lib.periods: half-open UTC periods, calendar and anniversary (SPEC §3.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagster_project.lib.periods import add_units, as_utc_naive, period_containing, periods_between, seconds

US = timedelta(microseconds=1)


def dt(*parts: int) -> datetime:
    return datetime(*parts)


# --- calendar boundaries ----------------------------------------------------------------------


def test_calendar_five_minutes():
    # 10:07 lies in [10:05, 10:10): 5-minute periods start at :00, :05, :10, ...
    assert period_containing(dt(2026, 10, 1, 10, 7), "minute", 5) == (dt(2026, 10, 1, 10, 5), dt(2026, 10, 1, 10, 10))


def test_calendar_five_minutes_across_an_hour():
    # 10:58 -> [10:55, 11:00); 11:00 exactly -> [11:00, 11:05)
    assert period_containing(dt(2026, 10, 1, 10, 58), "minute", 5) == (dt(2026, 10, 1, 10, 55), dt(2026, 10, 1, 11))
    assert period_containing(dt(2026, 10, 1, 11), "minute", 5) == (dt(2026, 10, 1, 11), dt(2026, 10, 1, 11, 5))
    # and across midnight: 23:59:59 -> [23:55, 00:00 next day)
    assert period_containing(dt(2026, 10, 31, 23, 59, 59), "minute", 5) == (
        dt(2026, 10, 31, 23, 55),
        dt(2026, 11, 1),
    )


def test_calendar_day():
    assert period_containing(dt(2026, 10, 1, 10, 7), "day", 1) == (dt(2026, 10, 1), dt(2026, 10, 2))
    # year end: Dec 31 -> [Dec 31, Jan 1 next year)
    assert period_containing(dt(2026, 12, 31, 23), "day", 1) == (dt(2026, 12, 31), dt(2027, 1, 1))


def test_calendar_month():
    assert period_containing(dt(2026, 10, 15, 12), "month", 1) == (dt(2026, 10, 1), dt(2026, 11, 1))
    assert period_containing(dt(2026, 12, 31, 23, 59), "month", 1) == (dt(2026, 12, 1), dt(2027, 1, 1))


def test_calendar_year():
    assert period_containing(dt(2026, 7, 4), "year", 1) == (dt(2026, 1, 1), dt(2027, 1, 1))
    assert period_containing(dt(2026, 12, 31, 23, 59, 59, 999999), "year", 1) == (dt(2026, 1, 1), dt(2027, 1, 1))
    assert period_containing(dt(2027, 1, 1), "year", 1) == (dt(2027, 1, 1), dt(2028, 1, 1))


@pytest.mark.parametrize(
    ("moment", "start", "end", "days"),
    [
        (dt(2026, 2, 10), dt(2026, 2, 1), dt(2026, 3, 1), 28),   # Feb 2026: not a leap year
        (dt(2028, 2, 29, 12), dt(2028, 2, 1), dt(2028, 3, 1), 29),  # Feb 2028: leap year (2028 % 4 == 0)
        (dt(2026, 11, 30, 23), dt(2026, 11, 1), dt(2026, 12, 1), 30),
        (dt(2026, 10, 31, 23), dt(2026, 10, 1), dt(2026, 11, 1), 31),
    ],
)
def test_month_lengths(moment, start, end, days):
    assert period_containing(moment, "month", 1) == (start, end)
    assert seconds(start, end) == days * 86_400


def test_instant_at_period_end_belongs_to_next_period():
    end = dt(2026, 11, 1)
    # exactly at the end: the next period [Nov 1, Dec 1)
    assert period_containing(end, "month", 1) == (dt(2026, 11, 1), dt(2026, 12, 1))
    # one microsecond earlier: still October
    assert period_containing(end - US, "month", 1) == (dt(2026, 10, 1), dt(2026, 11, 1))
    # same for 5-minute periods: 10:10:00 -> [10:10, 10:15), 10:09:59.999999 -> [10:05, 10:10)
    assert period_containing(dt(2026, 10, 1, 10, 10), "minute", 5)[0] == dt(2026, 10, 1, 10, 10)
    assert period_containing(dt(2026, 10, 1, 10, 10) - US, "minute", 5)[0] == dt(2026, 10, 1, 10, 5)
    # days and years
    assert period_containing(dt(2026, 10, 2) - US, "day", 1) == (dt(2026, 10, 1), dt(2026, 10, 2))
    assert period_containing(dt(2027, 1, 1) - US, "year", 1) == (dt(2026, 1, 1), dt(2027, 1, 1))


def test_aware_instants_are_converted_to_utc():
    # 2026-10-31T22:30-02:00 is 2026-11-01T00:30Z: November, not October
    moment = datetime(2026, 10, 31, 22, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert as_utc_naive(moment) == dt(2026, 11, 1, 0, 30)
    assert period_containing(moment, "month", 1) == (dt(2026, 11, 1), dt(2026, 12, 1))
    assert period_containing(datetime(2026, 10, 1, tzinfo=UTC), "month", 1) == (dt(2026, 10, 1), dt(2026, 11, 1))


def test_every_three_months_gives_calendar_quarters():
    # counted from 1970-01: quarters start Jan, Apr, Jul, Oct
    assert period_containing(dt(2026, 2, 14), "month", 3) == (dt(2026, 1, 1), dt(2026, 4, 1))
    assert period_containing(dt(2026, 5, 1), "month", 3) == (dt(2026, 4, 1), dt(2026, 7, 1))
    assert period_containing(dt(2026, 9, 30, 23), "month", 3) == (dt(2026, 7, 1), dt(2026, 10, 1))
    assert period_containing(dt(2026, 10, 1), "month", 3) == (dt(2026, 10, 1), dt(2027, 1, 1))
    assert periods_between(dt(2026, 1, 1), dt(2027, 1, 1), "month", 3) == [
        (dt(2026, 1, 1), dt(2026, 4, 1)),
        (dt(2026, 4, 1), dt(2026, 7, 1)),
        (dt(2026, 7, 1), dt(2026, 10, 1)),
        (dt(2026, 10, 1), dt(2027, 1, 1)),
    ]


# --- anniversary ------------------------------------------------------------------------------


def test_anniversary_month_from_jan_31_clamps_to_month_end():
    origin = dt(2028, 1, 31, 9, 30)
    # Jan 31 + 1 month -> Feb 29 2028 (leap, clamped); + 2 months -> Mar 31 (from the origin, not Feb 29)
    assert add_units(origin, "month", 1) == dt(2028, 2, 29, 9, 30)
    assert add_units(origin, "month", 2) == dt(2028, 3, 31, 9, 30)
    assert add_units(origin, "month", 3) == dt(2028, 4, 30, 9, 30)
    assert period_containing(dt(2028, 2, 10), "month", 1, origin) == (origin, dt(2028, 2, 29, 9, 30))
    assert period_containing(dt(2028, 3, 15), "month", 1, origin) == (dt(2028, 2, 29, 9, 30), dt(2028, 3, 31, 9, 30))
    # boundary instants: exactly at Feb 29 09:30 -> second period; one µs before -> first
    assert period_containing(dt(2028, 2, 29, 9, 30), "month", 1, origin)[0] == dt(2028, 2, 29, 9, 30)
    assert period_containing(dt(2028, 2, 29, 9, 30) - US, "month", 1, origin)[0] == origin
    assert periods_between(origin, dt(2028, 4, 1), "month", 1, origin) == [
        (origin, dt(2028, 2, 29, 9, 30)),
        (dt(2028, 2, 29, 9, 30), dt(2028, 3, 31, 9, 30)),
        (dt(2028, 3, 31, 9, 30), dt(2028, 4, 30, 9, 30)),
    ]


def test_anniversary_non_leap_year_and_year_unit():
    origin = dt(2027, 1, 31)
    assert add_units(origin, "month", 1) == dt(2027, 2, 28)  # 2027 is not a leap year
    # Feb 29 2028 + 1 year -> Feb 28 2029 (clamped); + 4 years -> Feb 29 2032
    leap = dt(2028, 2, 29)
    assert add_units(leap, "year", 1) == dt(2029, 2, 28)
    assert add_units(leap, "year", 4) == dt(2032, 2, 29)
    assert period_containing(dt(2029, 1, 1), "year", 1, leap) == (leap, dt(2029, 2, 28))


def test_anniversary_days_and_minutes():
    origin = dt(2026, 10, 11, 14, 3, 20)
    assert period_containing(dt(2026, 10, 12, 14, 3, 19), "day", 1, origin) == (origin, dt(2026, 10, 12, 14, 3, 20))
    assert period_containing(dt(2026, 10, 12, 14, 3, 20), "day", 1, origin)[0] == dt(2026, 10, 12, 14, 3, 20)
    # 5-minute anniversary: 14:03:20 -> 14:08:20 -> 14:13:20
    assert period_containing(dt(2026, 10, 11, 14, 10), "minute", 5, origin) == (
        dt(2026, 10, 11, 14, 8, 20),
        dt(2026, 10, 11, 14, 13, 20),
    )


def test_unknown_unit_rejected():
    with pytest.raises(ValueError, match="week"):
        add_units(dt(2026, 1, 1), "week", 1)


def test_periods_between_month_range():
    # [Oct 11, Dec 5) overlaps October, November, December: the whole periods are returned
    assert periods_between(dt(2026, 10, 11), dt(2026, 12, 5), "month", 1) == [
        (dt(2026, 10, 1), dt(2026, 11, 1)),
        (dt(2026, 11, 1), dt(2026, 12, 1)),
        (dt(2026, 12, 1), dt(2027, 1, 1)),
    ]
    # an empty range has no periods; a range ending at a boundary does not include the next period
    assert periods_between(dt(2026, 10, 1), dt(2026, 10, 1), "month", 1) == []
    assert periods_between(dt(2026, 10, 1), dt(2026, 11, 1), "month", 1) == [(dt(2026, 10, 1), dt(2026, 11, 1))]


# --- property: periods_between tiles a range ----------------------------------------------------

_instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2032, 12, 31))
_unit_every = st.sampled_from(
    [("minute", 1), ("minute", 5), ("minute", 60), ("day", 1), ("day", 7), ("month", 1), ("month", 3), ("year", 1)]
)


@settings(max_examples=100, deadline=None)
@given(
    start=_instants,
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
    unit_every=_unit_every,
    anniversary=st.booleans(),
    origin=_instants,
)
def test_periods_between_tiles_range(start, length, unit_every, anniversary, origin):
    unit, every = unit_every
    if unit == "minute":
        length = length / 500  # keep the number of minute periods small
    stop = start + length
    kwargs = {"origin": origin} if anniversary else {}
    periods = periods_between(start, stop, unit, every, **kwargs)
    if start == stop:
        assert periods == []
        return
    # the first covers start, the last covers stop - 1µs: no part of [start, stop) is left out
    assert periods[0][0] <= start < periods[0][1]
    assert periods[-1][0] < stop <= periods[-1][1]
    for (_, first_end), (second_start, _) in zip(periods, periods[1:], strict=False):
        assert first_end == second_start  # consecutive periods touch: no gap, no overlap
    for period_start, period_end in periods:
        assert period_start < period_end
        # each period contains its start and not its end (half-open)
        assert period_containing(period_start, unit, every, **kwargs) == (period_start, period_end)
        assert period_containing(period_end, unit, every, **kwargs)[0] == period_end
        assert period_containing(period_end - US, unit, every, **kwargs) == (period_start, period_end)
