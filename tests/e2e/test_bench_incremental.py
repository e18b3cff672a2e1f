"""`meterhouse bench`'s incremental measurement, on the smallest data set: one more day is loaded
and billed into the warehouse a billing run left and into an empty one. Besides the timings
(never asserted), both warehouses must rate that day the same: the warm one re-aggregates only
the November periods the day falls in, on top of a whole October, and gets the very usage the
empty one computes from the day alone."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dagster_project.bench import run as bench

pytestmark = pytest.mark.slow

NOVEMBER_USAGE = (
    "select subscription_id, metric, credential_name, quantity, event_count from marts.usage_by_period"
    " where period_start = timestamp '2026-11-01' order by all"
)


def _query(data_dir: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_one_more_day_is_loaded_and_rated_alike_warm_and_empty(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source, _ = bench.prepare_source(cache, 1000)
    warm = cache / "work-1000"
    bench.run_pipeline(source, warm)
    october = _query(warm, "select count(*) from marts.invoices where status = 'issued'")

    result = bench.run_incremental(source, cache, warm)

    assert {"into empty", "into warm", "rated into empty", "rated into warm"} <= result.keys()
    assert all(result[key] > 0 for key in ("into empty", "into warm", "rated into empty", "rated into warm"))
    empty = cache / "work-empty"
    day_events = _query(empty, "select count(*) from raw.events")[0][0]
    assert day_events > 0
    assert _query(warm, "select count(*) from raw.events where request_time >= timestamp '2026-11-01'") \
        == [(day_events,)]
    november = _query(empty, NOVEMBER_USAGE)
    assert november and sum(row[4] for row in november if row[2] is None) > 0
    assert _query(warm, NOVEMBER_USAGE) == november
    # November is open: the day's bill issued nothing, October's invoices stand
    assert _query(warm, "select count(*) from marts.invoices where status = 'issued'") == october
