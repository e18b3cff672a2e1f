"""The whole pipeline, through Dagster and dbt, on a data directory built by hand.

One billing run serves most assertions (a dbt invocation costs seconds); every expected
amount is worked out in the comments from the catalog below.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.quality.gate import MAX_REJECTED_FRACTION_ENV
from dagster_project.runner import bill_partition
from tests.conftest import event, spread, write_jsonl

pytestmark = pytest.mark.slow

OCTOBER = (datetime(2026, 10, 1), datetime(2026, 11, 1))
AS_OF = "2026-11-02T00:00:00"

CATALOG = """
products:
  - id: docsum-summaries
    name: DocSum Summaries
    currency: USD
    recurring_charge: "199.00"
    metrics:
      - name: Summaries
        element: requests
        tiers:
          - {name: "First 1,000", up_to: 1000, unit_rate: "1.50"}
          - {name: "1,000+", up_to: null, unit_rate: "1.35"}
  - id: volume-plan
    name: Volume Plan
    currency: USD
    recurring_charge: "0"
    metrics:
      - name: Calls
        element: requests
        tier_mode: volume
        tiers:
          - {name: "Up to 100", up_to: 100, unit_rate: "2.00", fixed_fee: "10"}
          - {name: "101 to 500", up_to: 500, unit_rate: "1.50", fixed_fee: "25"}
          - {name: "500+", up_to: null, unit_rate: "1.00", fixed_fee: "50"}
  - id: graduated-plan
    name: Graduated Plan
    currency: USD
    recurring_charge: "0"
    metrics:
      - name: Calls
        element: requests
        tier_mode: graduated
        tiers:
          - {name: "Up to 100", up_to: 100, unit_rate: "2.00", fixed_fee: "10"}
          - {name: "101 to 500", up_to: 500, unit_rate: "1.50", fixed_fee: "25"}
          - {name: "500+", up_to: null, unit_rate: "1.00", fixed_fee: "50"}
organizations:
  - {id: acme, name: Acme Corp}
  - {id: globex, name: Globex}
subscribers:
  - {id: alice, email: alice@acme.example, organization: acme}
  - {id: bob, email: bob@globex.example, organization: globex}
  - {id: carol, email: carol@acme.example, organization: acme}
  - {id: dave, email: dave@globex.example, organization: globex}
subscriptions:
  - {id: sub-1500, subscriber: alice, product: docsum-summaries, start: 2026-10-01T00:00:00Z}
  - {id: sub-1000, subscriber: bob, product: docsum-summaries, start: 2026-10-01T00:00:00Z}
  - {id: sub-volume, subscriber: carol, product: volume-plan, start: 2026-10-01T00:00:00Z}
  - {id: sub-graduated, subscriber: carol, product: graduated-plan, start: 2026-10-01T00:00:00Z}
  - {id: sub-single, subscriber: dave, product: docsum-summaries, start: 2026-10-01T00:00:00Z}
"""

BAD_LINES = [
    "this is not json",  # invalid JSON
    '{"transactionId": "bad-2", "requestTime": "2026-10-05T00:00:00Z", "productName": "DocSum Summaries"}',  # no subscriber
    '{"transactionId": "bad-3", "requestTime": "2026-10-05T00:00:00Z", "subscriber": {"id": "alice"},'
    ' "productName": "DocSum Summaries", "provider": "openai", "model": "gpt-4o-mini", "inputTokenCount": -5}',
    '{"transactionId": "bad-4", "requestTime": "yesterday", "subscriber": {"id": "alice"},'
    ' "productName": "DocSum Summaries", "provider": "openai", "model": "gpt-4o-mini"}',
    '{"transactionId": "bad-5", "requestTime": "2026-10-05T00:00:00Z", "subscriber": {"id": "alice"},'
    ' "productName": "DocSum Summaries", "provider": "openai", "model": "gpt-4o-mini", "outputTokenCount": "many"}',
]


def _events(prefix: str, count: int, subscriber: str, product: str) -> list[dict]:
    return [event(f"{prefix}-{index}", moment, subscriber, product)
            for index, moment in enumerate(spread(count, *OCTOBER))]


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pipeline")
    (root / "catalog").mkdir()
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    events = root / "landing" / "events"
    write_jsonl(events / "2026-10" / "summaries.jsonl",
                _events("a", 1500, "alice", "DocSum Summaries") + _events("b", 1000, "bob", "docsum-summaries"))
    write_jsonl(events / "2026-10" / "plans.jsonl",
                _events("v", 250, "carol", "Volume Plan") + _events("g", 250, "carol", "graduated-plan"))
    # the bad file: five kinds of bad line around three good ones, and one event nobody subscribes to
    write_jsonl(events / "2026-10" / "mixed.jsonl", [
        event("ok-1", "2026-10-03T00:00:00Z", "dave", "DocSum Summaries"),
        *BAD_LINES,
        event("stranger-1", "2026-10-03T00:00:00Z", "mallory", "DocSum Summaries"),
    ])
    # the same file dropped again under another name: every line is a duplicate or a rejection
    shutil.copyfile(events / "2026-10" / "plans.jsonl", events / "2026-10" / "plans-copy.jsonl")
    # the bad file is mostly bad on purpose; the gate that holds such a run is tested in test_release_gate
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MAX_REJECTED_FRACTION_ENV, "1")
        first = bill_partition(root, "2026-10-01", AS_OF)
        second = bill_partition(root, "2026-10-01", AS_OF)
    return {"root": root, "first": first, "second": second}


def _query(root: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def _invoice(root: Path, subscription: str) -> tuple[str, Decimal, list[tuple]]:
    number, total = _query(
        root, "select invoice_number, total from marts.invoices where subscription_id = ? and status = 'issued'",
        [subscription],
    )[0]
    lines = _query(
        root,
        "select kind, tier_name, quantity, unit_rate, amount from marts.invoice_lines"
        " where invoice_number = ? order by line_number",
        [number],
    )
    return number, total, lines


def test_tutorial_customer_with_1500_summaries_pays_2374(billed: dict) -> None:
    # 199.00 + 1,000 x 1.50 + 500 x 1.35 = 199.00 + 1,500.00 + 675.00 = 2,374.00
    _, total, lines = _invoice(billed["root"], "sub-1500")
    amounts = [(kind, tier, amount) for kind, tier, _, _, amount in lines]
    assert amounts == [
        ("recurring", None, Decimal("199.00")),
        ("usage", "First 1,000", Decimal("1500.00")),
        ("usage", "1,000+", Decimal("675.00")),
    ]
    assert total == Decimal("2374.00")


def test_exactly_1000_summaries_stays_in_the_first_tier(billed: dict) -> None:
    # 199.00 + 1,000 x 1.50 = 1,699.00; quantity 1,000 does not enter "1,000+" (it starts above 1,000)
    _, total, lines = _invoice(billed["root"], "sub-1000")
    assert total == Decimal("1699.00")
    assert [tier for _, tier, *_ in lines] == [None, "First 1,000"]
    assert lines[1][2] == Decimal(1000)


def test_volume_tiers_charge_the_whole_quantity_at_one_rate(billed: dict) -> None:
    # 250 calls fall in "101 to 500": 250 x 1.50 = 375.00, plus that tier's fixed fee 25.00 only = 400.00
    _, total, lines = _invoice(billed["root"], "sub-volume")
    assert total == Decimal("400.00")
    assert sum(line[4] for line in lines) == Decimal("400.00")
    assert {line[1] for line in lines if line[0] == "usage"} <= {"101 to 500", "101 to 500 (fixed fee)"}


def test_graduated_tiers_charge_each_part_and_each_entered_fixed_fee(billed: dict) -> None:
    # 100 x 2.00 = 200.00, 150 x 1.50 = 225.00, fixed fees of both entered tiers 10 + 25 = 35 -> 460.00
    _, total, lines = _invoice(billed["root"], "sub-graduated")
    assert total == Decimal("460.00")
    usage = {line[1]: line[4] for line in lines if line[0] == "usage"}
    assert usage["Up to 100"] == Decimal("200.00")
    assert usage["101 to 500"] == Decimal("225.00")
    assert "500+" not in usage


def test_each_kind_of_bad_line_is_quarantined_with_its_reason(billed: dict) -> None:
    rejected = _query(
        billed["root"],
        "select line_number, reason from marts.rejected_events where source_file like '%mixed.jsonl' order by 1",
    )
    # line 1 is good; lines 2-6 are the five bad lines; line 7 is a good but unattributable event
    assert [line for line, _ in rejected] == [2, 3, 4, 5, 6]
    reasons = [reason for _, reason in rejected]
    assert reasons[0].startswith("invalid_json")
    assert reasons[1].startswith("missing_field") and "subscriber" in reasons[1]
    assert reasons[2].startswith("negative_value") and "inputTokenCount" in reasons[2]
    assert reasons[3].startswith("invalid_timestamp") and "requestTime" in reasons[3]
    assert reasons[4].startswith("wrong_type") and "outputTokenCount" in reasons[4]


def test_an_event_nobody_subscribes_to_is_unbilled_with_a_reason(billed: dict) -> None:
    rows = _query(billed["root"], "select transaction_id, reason from marts.unbilled_usage")
    assert rows == [("stranger-1", "no_matching_subscription")]


def test_a_file_dropped_twice_changes_nothing(billed: dict) -> None:
    # plans-copy.jsonl and plans.jsonl hold the same 500 events; files load in path order, so the
    # copy ("plans-copy" sorts before "plans.") is accepted and every line of plans.jsonl is a duplicate
    duplicates = _query(
        billed["root"], "select source_file, count(*) from raw.duplicate_events group by 1 order by 1"
    )
    assert duplicates == [("landing/events/2026-10/plans.jsonl", 500)]
    (accepted,) = _query(billed["root"], "select count(*) from raw.events")[0]
    assert accepted == 1500 + 1000 + 250 + 250 + 2  # + ok-1 and stranger-1


def test_a_single_event_from_the_bad_file_still_bills(billed: dict) -> None:
    # ok-1 sits among the bad lines: 199.00 + 1 x 1.50 = 200.50
    _, total, _ = _invoice(billed["root"], "sub-single")
    assert total == Decimal("200.50")


def test_five_invoices_numbered_gaplessly_and_a_rerun_issues_nothing(billed: dict) -> None:
    assert sorted(billed["first"]["issued"]) == [f"MH-2026-{n:06d}" for n in range(1, 6)]
    assert billed["second"]["issued"] == []
    (count,) = _query(billed["root"], "select count(*) from marts.invoices")[0]
    assert count == 5


def test_invoice_documents_are_written_and_match_their_stored_hash(billed: dict) -> None:
    import hashlib

    for number, digest in _query(billed["root"], "select invoice_number, document_sha256 from marts.invoices"):
        document = billed["root"] / "invoices" / f"{number}.html"
        assert hashlib.sha256(document.read_bytes()).hexdigest() == digest
    html = (billed["root"] / "invoices" / "MH-2026-000001.html").read_text(encoding="utf-8")
    assert "MH-2026-000001" in html and "USD" in html
