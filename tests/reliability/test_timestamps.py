"""Timestamps: offsets, DST changes, period boundaries +-1 us, far past and future.

Loader-level properties run in milliseconds; where an event lands in a billing period is read
from the reference run (``harness.edge_events``), which rated them through dbt.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dagster_project.ingest.loader import load_new_files
from tests.reliability import harness
from tests.reliability.fuzz import budget

pytestmark = pytest.mark.xdist_group("reference")  # shares the reference run

AS_OF = datetime(2026, 11, 2, tzinfo=UTC)


def load_times(moments: list[str]) -> dict[str, tuple[datetime | None, str | None]]:
    """transactionId -> (stored request_time, rejection reason) for one line per moment."""
    with tempfile.TemporaryDirectory() as folder, duckdb.connect() as connection:
        root = Path(folder)
        path = root / "landing" / "events" / "t.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(
            json.dumps({"transactionId": f"t{index}", "requestTime": moment, "provider": "p", "model": "m",
                        "productName": "P", "subscriber": {"id": "s"}}) + "\n"
            for index, moment in enumerate(moments)
        ), encoding="utf-8")
        report = load_new_files(connection, root, AS_OF)
        assert report.lines_read == len(moments) == report.accepted + report.rejected
        stored = dict(connection.execute("select transaction_id, request_time from raw.events").fetchall())
        reasons = {f"t{line - 1}": reason for line, reason in connection.execute(
            "select line_number, reason from raw.rejected_events").fetchall()}
    return {f"t{index}": (stored.get(f"t{index}"), reasons.get(f"t{index}")) for index in range(len(moments))}


@budget(25)
@given(
    moments=st.lists(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2026, 11, 1)), min_size=1,
                     max_size=20),
    offsets=st.lists(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59), min_size=20, max_size=20),
)
def test_any_offset_is_stored_as_the_same_utc_instant(moments: list[datetime], offsets: list[int]) -> None:
    texts = [
        moment.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=offset))).isoformat(timespec="microseconds")
        for moment, offset in zip(moments, offsets, strict=False)
    ]
    stored = load_times(texts)
    for index, moment in enumerate(moments):
        assert stored[f"t{index}"] == (moment, None), texts[index]


@pytest.mark.parametrize("zone,day", [
    ("Europe/Berlin", datetime(2026, 3, 29)), ("Europe/Berlin", datetime(2026, 10, 25)),
    ("America/New_York", datetime(2026, 3, 8)), ("America/New_York", datetime(2026, 11, 1)),
    ("Australia/Lord_Howe", datetime(2026, 4, 5)),  # a half-hour DST shift
])
def test_local_times_around_a_dst_change_keep_their_order_and_spacing(zone: str, day: datetime) -> None:
    # every 10 minutes across the change, written as the local clock with its offset at that instant
    start = day.replace(tzinfo=UTC) - timedelta(hours=12)
    instants = [start + timedelta(minutes=10 * step) for step in range(6 * 36)]
    texts = [moment.astimezone(ZoneInfo(zone)).isoformat(timespec="microseconds") for moment in instants]
    assert len({text[-6:] for text in texts}) == 2  # the window does cross the change
    stored = load_times(texts)
    values = [stored[f"t{index}"][0] for index in range(len(texts))]
    assert values == [moment.replace(tzinfo=None) for moment in instants]
    assert all(later - earlier == timedelta(minutes=10) for earlier, later in zip(values, values[1:], strict=False))


def test_far_past_far_future_and_the_future_limit() -> None:
    stored = load_times([
        "0001-01-01T00:00:00Z", "1901-12-13T20:45:52Z", "1969-12-31T23:59:59.999999Z",
        "2026-11-03T00:00:00Z", "2026-11-03T00:00:00.000001Z", "9999-12-31T23:59:59.999999Z",
        "2026-10-01T00:00:00", "2026-10-01T00:00:00+24:00", "2026-02-30T00:00:00Z",
    ])
    assert stored["t0"] == (datetime(1, 1, 1), None)
    assert stored["t1"] == (datetime(1901, 12, 13, 20, 45, 52), None)
    assert stored["t2"] == (datetime(1969, 12, 31, 23, 59, 59, 999999), None)
    assert stored["t3"] == (datetime(2026, 11, 3), None)  # exactly as_of + 24 h: still accepted
    for key in ("t4", "t5"):  # later than as_of + 24 h
        assert stored[key][0] is None and "future" in stored[key][1], stored[key]
    for key in ("t6", "t7", "t8"):  # no offset, an offset out of range, a day that does not exist
        assert stored[key][0] is None and stored[key][1], stored[key]


@pytest.mark.slow
def test_events_at_period_boundaries_land_in_the_right_period() -> None:
    """+-1 us around Oct 1 and Nov 1, with and without offsets, across the Berlin DST change."""
    reference = harness.reference()
    with duckdb.connect(str(reference.root / "warehouse.duckdb"), read_only=True) as connection:
        rows = dict(connection.execute(
            "select transaction_id, strftime(period_start, '%Y-%m-%d') from intermediate.int_events_attributed"
            " where transaction_id like 'edge-%'"
        ).fetchall())
        rejected = {json.loads(raw)["transactionId"] for (raw,) in connection.execute(
            "select raw from raw.rejected_events where raw like '%edge-%'").fetchall()}
    assert {key: rows.get(key) for key in harness.EDGE_PERIODS} == harness.EDGE_PERIODS
    assert rejected == harness.EDGE_REJECTED
    assert "edge-far-past" in rows  # accepted, unbilled (no subscription then), never dropped
