"""The release gate end to end: a failing blocking check holds the period's invoices, names
the check, and stops every step after it (invoicing, payments, notifications), not only dbt
models; once the data is fixed, a rerun releases them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagster_project.runner import bill_partition
from tests.conftest import DOCSUM_CATALOG as CATALOG
from tests.conftest import event, spread, write_jsonl

pytestmark = pytest.mark.slow

AS_OF = "2026-11-02T00:00:00"


def _good(count: int) -> list[dict]:
    moments = spread(count, datetime(2026, 10, 1), datetime(2026, 11, 1))
    return [event(f"g-{index}", moment, "alice", "DocSum Summaries") for index, moment in enumerate(moments)]


def _steps(root: Path) -> dict[str, str]:
    """Step key -> status of the latest Dagster run in the data dir's instance."""
    with dg.DagsterInstance.from_config(str(root / ".dagster")) as instance:
        run = instance.get_runs(limit=1)[0]
        return {stat.step_key: stat.status.value for stat in instance.get_run_step_stats(run.run_id)}


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("gate")
    (root / "catalog").mkdir()
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    day_file = root / "landing" / "events" / "2026-10.jsonl"
    # 10 good lines and 2 bad ones: 2/12 = 16.7 % rejected, over the 5 % limit
    write_jsonl(day_file, [*_good(10), "not json", '{"requestTime": "2026-10-02T00:00:00Z"}'])
    with pytest.raises(RuntimeError) as blocked:
        bill_partition(root, "2026-10-01", AS_OF)
    state = {"root": root, "error": str(blocked.value), "steps": _steps(root)}
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        state["held"] = connection.execute(
            "select subscription_id, status, invoice_number, held_reasons from marts.invoices"
        ).fetchall()
        state["attempts_table"] = connection.execute(
            "select count(*) from information_schema.tables where table_name in ('payment_attempts', 'notifications')"
        ).fetchone()[0]
    state["outbox"] = sorted((root / "outbox").glob("*")) if (root / "outbox").exists() else []
    state["documents"] = sorted((root / "invoices").glob("*")) if (root / "invoices").exists() else []
    # the fix: the same file, corrected (the two bad lines removed); its new content is loaded again
    write_jsonl(day_file, _good(10))
    state["released"] = bill_partition(root, "2026-10-01", AS_OF)
    return state


def test_the_failing_check_is_named_and_the_invoice_held(gated: dict) -> None:
    assert "rejected_fraction_below_limit" in gated["error"]
    assert gated["held"] == [("sub-alice", "held", None, "rejected_fraction_below_limit")]


def test_steps_after_the_gate_never_ran(gated: dict) -> None:
    steps = gated["steps"]
    assert steps["meterhouse_dbt_models"] == "SUCCESS"
    assert steps["release_gate"] == "FAILURE"
    for downstream in ("invoices", "billing__payment_attempts", "billing__notifications"):
        assert steps.get(downstream, "SKIPPED") == "SKIPPED", downstream
    assert gated["outbox"] == [] and gated["documents"] == []


def test_a_rerun_after_the_fix_releases_the_held_invoice(gated: dict) -> None:
    # 10 summaries: 199.00 + 10 x 1.50 = 214.00, numbered first of the year
    assert gated["released"]["issued"] == ["MH-2026-000001"]
    with duckdb.connect(str(gated["root"] / "warehouse.duckdb"), read_only=True) as connection:
        row = connection.execute(
            "select status, invoice_number, total, held_reasons, payment_status from marts.invoices"
        ).fetchone()
    assert row[:3] == ("issued", "MH-2026-000001", 214)
    assert row[3] is None and row[4] == "pending"
