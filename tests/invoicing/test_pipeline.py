"""Documents and lineage on a real billing run (Dagster + dbt), one run for the module.

Catalog and events, worked out by hand (October 2026, USD):

  Pro Plan: recurring 100.00, setup fee 20.00, free trial 2 days (until 2026-10-03 00:00)
    Summaries = requests of model gpt-4o-mini in environment production (environment is read from
                the event's JSON), graduated "First 10" at 1.00, "10+" at 0.50 with a fixed fee of 5.00
    Tokens    = total_tokens (1,000 in + 200 out = 1,200 per event), "All tokens" at 0.001
    Pages     = units.pages, "All pages" at 0.10

  sub-pro (alice, starts 10-01, credential prod-key):
    t0..t2  10-01/10-02  gpt-4o-mini production, 1 page each      -> in the free trial
    s0..s11 10-05..      gpt-4o-mini production, 2 pages each     -> 12 Summaries
    o0..o3  10-10..      o3 production                            -> not a Summary
    g0..g1  10-20..      gpt-4o-mini staging                      -> not a Summary

    setup 20.00; recurring 100.00 x 29/31 days after the trial = 93.548... -> 93.55
    Summaries: First 10 = 10 x 1.00 = 10.00; 10+ = 2 x 0.50 = 1.00; fixed fee 5.00; trial 3 events
    Tokens: 18 billable events x 1,200 = 21,600 x 0.001 = 21.60; trial 3 events (3,600 tokens)
    Pages: 12 x 2 = 24 x 0.10 = 2.40 from 18 billable events; trial 3 events (3 pages)
    total 20.00 + 93.55 + 10.00 + 1.00 + 5.00 + 21.60 + 2.40 = 153.55
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.invoicing import lineage
from dagster_project.runner import bill_partition
from tests.conftest import REPO_ROOT, event, write_jsonl

pytestmark = pytest.mark.slow

AS_OF = "2026-11-02T00:00:00"
CATALOG = """
products:
  - id: pro-plan
    name: Pro Plan
    currency: USD
    recurring_charge: "100.00"
    setup_fee: "20.00"
    free_trial_days: 2
    metrics:
      - name: Summaries
        element: requests
        filter: {model: [gpt-4o-mini], environment: [production]}
        tiers:
          - {name: "First 10", up_to: 10, unit_rate: "1.00"}
          - {name: "10+", up_to: null, unit_rate: "0.50", fixed_fee: "5.00"}
      - name: Tokens
        element: total_tokens
        tiers:
          - {name: "All tokens", up_to: null, unit_rate: "0.001"}
      - name: Pages
        element: units.pages
        tiers:
          - {name: "All pages", up_to: null, unit_rate: "0.10"}
organizations:
  - {id: acme, name: Acme Corp}
subscribers:
  - {id: alice, email: alice@acme.example, organization: acme}
subscriptions:
  - id: sub-pro
    name: Acme summaries
    subscriber: alice
    product: pro-plan
    start: 2026-10-01T00:00:00Z
    credentials: [{name: prod-key, value: sk-acme-1}]
"""


def _event(transaction: str, moment: datetime, model: str, environment: str, pages: int | None) -> dict:
    fields: dict = {"model": model, "environment": environment}
    if pages is not None:
        fields["units"] = {"pages": pages}
    body = event(transaction, moment, "alice", "Pro Plan", **fields)
    body["subscriber"]["credential"] = {"name": "prod-key", "value": "sk-acme-1"}
    return body


def _events() -> list[dict]:
    day = timedelta(days=1)
    events = [_event(f"t{i}", datetime(2026, 10, 1, 6) + i * timedelta(hours=12), "gpt-4o-mini", "production", 1)
              for i in range(3)]
    events += [_event(f"s{i}", datetime(2026, 10, 5) + i * day, "gpt-4o-mini", "production", 2) for i in range(12)]
    events += [_event(f"o{i}", datetime(2026, 10, 10) + i * day, "o3", "production", None) for i in range(4)]
    events += [_event(f"g{i}", datetime(2026, 10, 20) + i * day, "gpt-4o-mini", "staging", None) for i in range(2)]
    return events


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("billed")
    (root / "catalog").mkdir()
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    write_jsonl(root / "landing" / "events" / "2026-10" / "events.jsonl", _events())
    summary = bill_partition(root, "2026-10-01", AS_OF)
    assert summary["issued"] == ["MH-2026-000001"], summary
    return root


def _query(root: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def test_the_run_issues_the_hand_worked_invoice(billed: Path) -> None:
    lines = _query(billed, "select line_number, kind, metric, tier_name, amount, event_count from marts.invoice_lines"
                           " where invoice_number = 'MH-2026-000001' order by line_number")
    assert [(kind, metric, tier, amount) for _, kind, metric, tier, amount, _ in lines] == [
        ("setup", None, None, Decimal("20.00")),
        ("recurring", None, None, Decimal("93.55")),
        ("usage", "Summaries", "First 10", Decimal("10.00")),
        ("usage", "Summaries", "10+", Decimal("1.00")),
        ("usage", "Summaries", "10+ (fixed fee)", Decimal("5.00")),
        ("usage", "Summaries", "Free trial", Decimal("0.00")),
        ("usage", "Tokens", "All tokens", Decimal("21.60")),
        ("usage", "Tokens", "Free trial", Decimal("0.00")),
        ("usage", "Pages", "All pages", Decimal("2.40")),
        ("usage", "Pages", "Free trial", Decimal("0.00")),
    ]
    assert _query(billed, "select total from marts.invoices")[0][0] == Decimal("153.55")


def test_html_and_pdf_are_written_with_their_hashes(billed: Path) -> None:
    html_digest, pdf_digest, loaded_through = _query(
        billed, "select document_sha256, pdf_sha256, events_loaded_through from marts.invoices"
    )[0]
    html = (billed / "invoices" / "MH-2026-000001.html").read_bytes()
    pdf = (billed / "invoices" / "MH-2026-000001.pdf").read_bytes()
    assert hashlib.sha256(html).hexdigest() == html_digest
    assert hashlib.sha256(pdf).hexdigest() == pdf_digest and pdf.startswith(b"%PDF-")
    assert loaded_through == _query(billed, "select max(loaded_at) from raw.events")[0][0]
    assert "Fixed fee · 10+" in html.decode() and "3 events during the free trial, not charged" in html.decode()


def test_lineage_agrees_with_what_dbt_rated(billed: Path) -> None:
    # the Python filter SQL mirrors dbt's macros: every line finds exactly the events it counts
    with duckdb.connect(str(billed / "warehouse.duckdb"), read_only=True) as connection:
        summaries, found = lineage.invoice_lineage(connection, "MH-2026-000001")
    assert [(line["line_number"], line["event_count"], line["events_found"]) for line in summaries] == [
        (3, 12, 12), (4, 12, 12), (5, None, 12), (6, 3, 3), (7, 18, 18), (8, 3, 3), (9, 18, 18), (10, 3, 3),
    ]
    by_line: dict[int, list[str]] = {}
    for item in found:
        by_line.setdefault(item.line_number, []).append(item.transaction_id)
    assert by_line[3] == [f"s{i}" for i in range(12)]  # not o3, not staging, not the trial
    assert by_line[6] == ["t0", "t1", "t2"]
    assert sorted(by_line[7]) == sorted([f"s{i}" for i in range(12)] + [f"o{i}" for i in range(4)] + ["g0", "g1"])
    pages = [item for item in found if item.line_number == 9]
    assert sum(item.value or 0 for item in pages) == 24  # the line's quantity
    assert {item.credential_name for item in found} == {"prod-key"}


RENDER_AGAIN = """
import sys
from pathlib import Path
import duckdb
from dagster_project.invoicing.render import write_documents
root = Path(sys.argv[1])
with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
    connection.execute("update marts.invoices set document_sha256 = null, pdf_sha256 = null")
    write_documents(connection, root)
"""


def test_another_data_dir_renders_the_same_bytes_in_another_process(billed: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(billed / "warehouse.duckdb", other / "warehouse.duckdb")
    result = subprocess.run(
        [sys.executable, "-c", RENDER_AGAIN, str(other)], cwd=REPO_ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONHASHSEED": "4242", "TZ": "America/Los_Angeles"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for suffix in ("html", "pdf"):
        assert (other / "invoices" / f"MH-2026-000001.{suffix}").read_bytes() == (
            billed / "invoices" / f"MH-2026-000001.{suffix}"
        ).read_bytes()
