"""Backfills are idempotent whatever their shape, and late events re-rate their period.

Two data directories get the same inputs: A bills August-September as one single-run
backfill, B partition by partition. Their ledgers must be identical. Then a late August
event lands in B, and October's invoice carries the difference as a prior-period adjustment.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.runner import bill_partition
from tests.conftest import event, spread, write_jsonl

pytestmark = pytest.mark.slow

CATALOG = """
products:
  - id: docsum-summaries
    name: DocSum Summaries
    recurring_charge: "199.00"
    metrics:
      - name: Summaries
        element: requests
        tiers:
          - {name: "First 1,000", up_to: 1000, unit_rate: "1.50"}
          - {name: "1,000+", up_to: null, unit_rate: "1.35"}
subscribers:
  - {id: alice, email: alice@acme.example}
  - {id: bob, email: bob@globex.example}
subscriptions:
  - {id: sub-alice, subscriber: alice, product: docsum-summaries, start: 2026-08-01T00:00:00Z}
  - {id: sub-bob, subscriber: bob, product: docsum-summaries, start: 2026-08-15T00:00:00Z}
"""
LEDGER = (
    "select invoice_number, draft_key, subscription_id, period_start, period_end, issued_at, status, subtotal,"
    " total, payment_status, document_sha256 from marts.invoices order by draft_key"
)
LINES = "select * exclude (description) from marts.invoice_lines order by draft_key, line_number"


def _month(prefix: str, subscriber: str, count: int, start: datetime, end: datetime) -> list[dict]:
    return [event(f"{prefix}-{i}", moment, subscriber, "DocSum Summaries")
            for i, moment in enumerate(spread(count, start, end))]


def _inputs(root: Path) -> None:
    (root / "catalog").mkdir(parents=True)
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    write_jsonl(root / "landing" / "events" / "aug.jsonl",
                _month("a-aug", "alice", 1200, datetime(2026, 8, 1), datetime(2026, 9, 1))
                + _month("b-aug", "bob", 10, datetime(2026, 8, 15), datetime(2026, 9, 1)))
    write_jsonl(root / "landing" / "events" / "sep.jsonl",
                _month("a-sep", "alice", 20, datetime(2026, 9, 1), datetime(2026, 10, 1)))


def _read(root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    single, stepwise = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("stepwise")
    _inputs(single)
    _inputs(stepwise)
    as_of = "2026-10-02T00:00:00"
    state = {"single": single, "stepwise": stepwise}
    state["single_run"] = bill_partition(single, "2026-08-01", as_of, last_partition_key="2026-09-01")
    state["august"] = bill_partition(stepwise, "2026-08-01", as_of)
    state["september"] = bill_partition(stepwise, "2026-09-01", as_of)
    state["ledgers"] = {name: (_read(root, LEDGER), _read(root, LINES)) for name, root in
                        (("single", single), ("stepwise", stepwise))}
    # two periods later, a late August event for alice arrives in a new file
    write_jsonl(stepwise / "landing" / "events" / "late.jsonl",
                [event("a-aug-late", "2026-08-31T23:59:59.999999Z", "alice", "DocSum Summaries")])
    state["october"] = bill_partition(stepwise, "2026-10-01", "2026-11-02T00:00:00")
    return state


def test_single_run_and_stepwise_backfills_issue_the_same_ledger(runs: dict) -> None:
    # August: alice 199 + 1,000 x 1.50 + 200 x 1.35 = 1,969.00; bob from Aug 15 (17 of 31 days:
    # 199 x 17/31 = 109.129 -> 109.13) + 10 x 1.50 = 124.13. September: alice 199 + 20 x 1.50 = 229.00,
    # bob 199.00. Numbered by invoice date, then subscription: alice before bob each month.
    assert runs["single_run"]["issued"] == [f"MH-2026-00000{n}" for n in range(1, 5)]
    assert runs["august"]["issued"] + runs["september"]["issued"] == runs["single_run"]["issued"]
    ledger, lines = runs["ledgers"]["single"]
    assert (ledger, lines) == runs["ledgers"]["stepwise"]
    assert [(row[0], row[2], row[8]) for row in sorted(ledger)] == [
        ("MH-2026-000001", "sub-alice", Decimal("1969.00")),
        ("MH-2026-000002", "sub-bob", Decimal("124.13")),
        ("MH-2026-000003", "sub-alice", Decimal("229.00")),
        ("MH-2026-000004", "sub-bob", Decimal("199.00")),
    ]


def test_documents_are_byte_identical_across_the_two_backfills(runs: dict) -> None:
    for number in ("MH-2026-000001", "MH-2026-000004"):
        single = (runs["single"] / "invoices" / f"{number}.html").read_bytes()
        assert single == (runs["stepwise"] / "invoices" / f"{number}.html").read_bytes()


def test_a_late_event_two_periods_back_is_adjusted_on_the_next_invoice(runs: dict) -> None:
    root = runs["stepwise"]
    # alice's August becomes 1,201 summaries: the 1,201st is in "1,000+" at 1.35, so +1.35
    lines = _read(root, """
        select l.kind, l.amount, l.period_start from marts.invoice_lines as l
        join marts.invoices as i using (invoice_number)
        where i.subscription_id = 'sub-alice' and i.period_start = '2026-10-01' order by l.line_number""")
    assert lines[-1] == ("adjustment", Decimal("1.35"), datetime(2026, 8, 1))
    (total,) = _read(root, "select total from marts.invoices where subscription_id = 'sub-alice'"
                           " and period_start = '2026-10-01'")[0]
    # October: 199.00 fee + 0 usage + 1.35 adjustment
    assert total == Decimal("200.35")
    # August's invoice and its document are untouched
    assert _read(root, "select total from marts.invoices where invoice_number = 'MH-2026-000001'") == [
        (Decimal("1969.00"),)]


def test_analysts_can_rebuild_usage_without_touching_issued_invoices(runs: dict, tmp_path: Path) -> None:
    # rating is a pure function of raw + catalog: the usage marts of the single-run directory equal
    # the stepwise one's before the late event (same inputs), whatever order periods were billed in
    copy = tmp_path / "copy"
    shutil.copytree(runs["single"], copy)
    assert _read(copy, LEDGER) == runs["ledgers"]["single"][0]
