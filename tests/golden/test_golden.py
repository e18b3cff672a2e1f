"""The golden table (issue 3): hand-worked invoices for every pricing and subscription rule.

Data, not code: ``catalog/*.yaml``, ``events/*.jsonl`` (written by ``make_events.py``),
``model_prices.csv``; the expected invoice lines in ``expected_lines.csv`` and the expected
unbilled events in ``expected_unbilled.csv``, each worked out by hand in ``SCENARIOS.md``.

The data goes through the real loaders (catalog and events) and ONE in-process ``dbt build``
per module; every scenario is then one test comparing all draft lines of its subscriptions with
the table, exactly (decimals as numbers).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.catalog.loader import load_catalog_into
from dagster_project.ingest.loader import LoadReport, load_new_files
from dagster_project.warehouse import connect, warehouse_path
from tests.dbt.test_models import release_warehouse, run_dbt  # noqa: F401 (release_warehouse: tests/spark)

GOLDEN = Path(__file__).resolve().parent
DBT_DIR = GOLDEN.parents[1] / "dbt"
# one clock for the whole table: every period of every scenario exists by then
AS_OF = datetime(2028, 4, 1, tzinfo=UTC)
LINE_COLUMNS = ("line_number", "kind", "metric", "tier_name", "quantity", "unit_rate", "amount")


def _read_csv(name: str) -> list[dict[str, str]]:
    with (GOLDEN / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


EXPECTED_LINES = _read_csv("expected_lines.csv")
EXPECTED_UNBILLED = _read_csv("expected_unbilled.csv")
SCENARIOS = list(dict.fromkeys(row["scenario"] for row in EXPECTED_LINES))


@dataclass
class Golden:
    data_dir: Path
    load: LoadReport
    dbt_failures: list[str]


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Golden:
    root = tmp_path_factory.mktemp("golden")
    data_dir = root / "data"
    shutil.copytree(GOLDEN / "catalog", data_dir / "catalog")
    shutil.copytree(GOLDEN / "events", data_dir / "landing" / "events")
    shutil.copyfile(GOLDEN / "model_prices.csv", data_dir / "landing" / "model_prices.csv")
    with connect(data_dir) as connection:
        load_catalog_into(connection, data_dir, AS_OF)
        report = load_new_files(connection, data_dir, AS_OF)
    result = run_dbt(["build"], warehouse_path(data_dir), root / "target")
    failures = [f"{r.node.unique_id}: {r.status} {r.message}" for r in (result.result or [])
                if str(r.status) not in ("success", "pass")]
    if result.exception is not None:
        failures.append(f"dbt: {result.exception}")
    return Golden(data_dir, report, failures)


@pytest.fixture(scope="module")
def db(golden: Golden) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(warehouse_path(golden.data_dir)), read_only=True)
    yield connection
    connection.close()


# --------------------------------------------------------------------------------------------
# comparison helpers: text from the CSV, numbers as Decimals, empty cells as null
# --------------------------------------------------------------------------------------------


def _number(text: str) -> Decimal | None:
    return None if text == "" else Decimal(text)


def _text(text: str) -> str | None:
    return None if text == "" else text


def _normal(value: Decimal | None) -> Decimal | None:
    """1.50, 1.5 and 1.500000 compare equal; so do their printed forms in a failure message."""
    return None if value is None else value.normalize() + 0


Line = tuple[str, datetime, datetime, int, str, str | None, str | None, Decimal | None, Decimal | None,
             Decimal | None]


def expected_lines(scenario: str) -> list[Line]:
    lines = []
    for row in EXPECTED_LINES:
        if row["scenario"] != scenario:
            continue
        lines.append((
            row["subscription_id"], datetime.fromisoformat(row["period_start"]),
            datetime.fromisoformat(row["period_end"]), int(row["line_number"]), row["kind"],
            _text(row["metric"]), _text(row["tier_name"]), _normal(_number(row["quantity"])),
            _normal(_number(row["unit_rate"])), _normal(_number(row["amount"])),
        ))
    return sorted(lines)


def actual_lines(db: duckdb.DuckDBPyConnection, subscriptions: list[str]) -> list[Line]:
    """Every line of every draft of the subscriptions; the period is the draft's (the invoice's),
    not the line's service period (an in-advance fee line covers the next period)."""
    rows = db.execute(f"""
        select drafts.subscription_id, drafts.period_start, drafts.period_end,
               {', '.join(f'lines.{column}' for column in LINE_COLUMNS)}
        from marts.invoice_line_drafts as lines
        inner join marts.invoice_drafts as drafts on lines.draft_key = drafts.draft_key
        where drafts.subscription_id in ({', '.join('?' for _ in subscriptions)})
    """, subscriptions).fetchall()
    return sorted(
        (*row[:7], _normal(row[7]), _normal(row[8]), _normal(row[9])) for row in rows
    )


def _table(lines: list[Line]) -> str:
    return "\n".join(
        f"  {sub} [{start:%Y-%m-%d %H:%M:%S}, {end:%Y-%m-%d %H:%M:%S}) #{number} {kind:<9} "
        f"{metric or '-'} / {tier or '-'}: {quantity} x {rate} = {amount}"
        for sub, start, end, number, kind, metric, tier, quantity, rate, amount in lines
    )


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_committed_events_are_what_make_events_writes() -> None:
    spec = importlib.util.spec_from_file_location("golden_make_events", GOLDEN / "make_events.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = {f"{name}.jsonl": "".join(json.dumps(line) + "\n" for line in lines)
               for name, lines in module.SCENARIOS.items() if lines}
    committed = {path.name: path.read_text(encoding="utf-8") for path in (GOLDEN / "events").glob("*.jsonl")}
    assert committed == written


def test_dbt_build_passes_every_model_and_data_test(golden: Golden) -> None:
    assert golden.dbt_failures == []


def test_every_golden_event_is_accepted_and_the_repeats_are_caught(golden: Golden) -> None:
    # 40-duplicates-b.jsonl: a byte-identical repeat of e40-1 (a duplicate) and e40-2 with another
    # requestTime (a conflict, quarantined); every other line is a valid event
    assert (golden.load.duplicates, golden.load.rejected) == (1, 1)
    assert golden.load.rejected_by_reason == {"duplicate_conflict": 1}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str, db: duckdb.DuckDBPyConnection) -> None:
    expected = expected_lines(scenario)
    subscriptions = sorted({line[0] for line in expected})
    actual = actual_lines(db, subscriptions)
    assert actual == expected, f"\nexpected:\n{_table(expected)}\nactual:\n{_table(actual)}"


def test_draft_totals_are_the_sum_of_the_expected_lines(db: duckdb.DuckDBPyConnection) -> None:
    expected: dict[tuple, Decimal] = {}
    for row in EXPECTED_LINES:
        key = (row["subscription_id"], datetime.fromisoformat(row["period_start"]),
               datetime.fromisoformat(row["period_end"]))
        expected[key] = expected.get(key, Decimal(0)) + Decimal(row["amount"])
    subscriptions = sorted({key[0] for key in expected})
    actual = {
        (sub, start, end): total
        for sub, start, end, total in db.execute(f"""
            select subscription_id, period_start, period_end, total from marts.invoice_drafts
            where subscription_id in ({', '.join('?' for _ in subscriptions)})
        """, subscriptions).fetchall()
    }
    assert actual == expected


def test_unbilled_usage_with_its_reason(db: duckdb.DuckDBPyConnection) -> None:
    expected = sorted((row["transaction_id"], row["reason"]) for row in EXPECTED_UNBILLED)
    actual = sorted(db.execute("select transaction_id, reason from marts.unbilled_usage").fetchall())
    assert actual == expected


def test_products_events_name_but_the_catalog_lacks_are_discovered(db: duckdb.DuckDBPyConnection) -> None:
    # scenario 13: "Mystery Bot" on an event attributed by subscriptionId (billed anyway);
    # scenario 15: "Ghost Product" on an event nobody can bill (unknown_product)
    rows = db.execute("""
        select product_id, product_name, event_count, unbilled_event_count
        from marts.discovered_products order by product_name
    """).fetchall()
    assert rows == [(None, "Ghost Product", 1, 1), (None, "Mystery Bot", 1, 0)]


def test_new_credentials_are_auto_created(db: duckdb.DuckDBPyConnection) -> None:
    # scenario 13: sk-13-ci named "ci" on an event attributed by subscriptionId;
    # scenario 15: sk-15-laptop without a name on an event attributed by subscriber + product,
    # masked to its last 4 characters. sk-14 on an s13 event is a catalog credential: not new.
    rows = db.execute("""
        select subscription_id, credential_name, credential_value
        from marts.auto_created_credentials order by subscription_id
    """).fetchall()
    assert rows == [("s13", "ci", "sk-13-ci"), ("s15", "…ptop", "sk-15-laptop")]


def test_usage_is_broken_out_by_credential(db: duckdb.DuckDBPyConnection) -> None:
    # scenario 13: one call with the new key "ci", one with s14's catalog key "main"
    rows = db.execute("""
        select credential_name, quantity from marts.usage_by_period
        where subscription_id = 's13' and breakdown = 'credential' order by credential_name
    """).fetchall()
    assert rows == [("ci", Decimal(1)), ("main", Decimal(1))]


def test_an_organization_with_two_subscribers_gets_one_invoice_each(db: duckdb.DuckDBPyConnection) -> None:
    # scenario 39: tiers apply per subscription, not to the organization's pooled usage
    rows = db.execute("""
        select subscription_id, organization_id, subscriber_email, total from marts.invoice_drafts
        where organization_id = 'initech' order by subscription_id
    """).fetchall()
    assert rows == [
        ("s39a", "initech", "ap@initech.example", Decimal("203.50")),
        ("s39b", "initech", "ops@initech.example", Decimal("215.35")),
    ]
