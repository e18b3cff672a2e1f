"""Cadence schedules run only when the catalog has a product on that cadence."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

MINUTE_CATALOG = """
products:
  - id: sandbox
    name: Sandbox (5-minute test periods)
    invoicing_period: {every: 5, unit: minute}
    metrics: [{name: Calls, element: requests, tiers: [{name: All, unit_rate: "0.01"}]}]
"""


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("METERHOUSE_DATA_DIR", str(tmp_path))
    (tmp_path / "catalog").mkdir()
    return tmp_path


def evaluate(name: str, moment: datetime):
    from dagster_project.definitions import defs

    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(
        scheduled_execution_time=moment, repository_def=defs.get_repository_def()
    ) as context:
        return schedule.evaluate_tick(context)


def test_five_minute_schedule_bills_the_month_of_the_tick_when_a_test_product_exists(data_dir: Path) -> None:
    (data_dir / "catalog" / "c.yaml").write_text(MINUTE_CATALOG, encoding="utf-8")
    result = evaluate("five_minute_billing", datetime(2026, 10, 1, 10, 5, tzinfo=UTC))
    assert [request.partition_key for request in result.run_requests] == ["2026-10-01"]
    assert result.run_requests[0].run_key == "five_minute_billing-20261001T1005"


def test_five_minute_schedule_skips_without_a_minute_product(data_dir: Path) -> None:
    (data_dir / "catalog" / "c.yaml").write_text(MINUTE_CATALOG.replace("unit: minute", "unit: month")
                                                  .replace("every: 5", "every: 1"), encoding="utf-8")
    result = evaluate("five_minute_billing", datetime(2026, 10, 1, 10, 5, tzinfo=UTC))
    assert not result.run_requests
    assert "minute" in result.skip_message
