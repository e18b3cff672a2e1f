"""dagster_project.catalog.loader: the catalog.* dimension tables (docs/architecture.md)."""

from __future__ import annotations

import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from contracts.catalog import CatalogError
from dagster_project.catalog.loader import load_catalog_into, read_model_prices
from dagster_project.warehouse import ensure_schema

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "data" / "examples" / "tutorial" / "catalog"

HEADER = (
    "provider,model,input_per_million,output_per_million,cache_read_per_million,"
    "cache_creation_per_million,valid_from\n"
)
PRICES = HEADER + (
    "openai,gpt-4o-mini,0.15,0.60,0.075,0,2026-01-01T00:00:00Z\n"
    "openai,o3,2.00,8.00,0.50,0,2026-01-01T00:00:00Z\n"
    "openai,gpt-4o-mini,0.12,0.48,0.06,0,2026-09-01T00:00:00Z\n"
)
AS_OF = datetime(2026, 10, 15)


def make_data_dir(root: Path, prices: str | None = PRICES) -> Path:
    shutil.copytree(TUTORIAL, root / "catalog")
    if prices is not None:
        (root / "landing").mkdir(parents=True)
        (root / "landing" / "model_prices.csv").write_text(prices, encoding="utf-8")
    return root


@pytest.fixture
def warehouse():
    connection = duckdb.connect(":memory:")  # naive UTC timestamps throughout; no ICU needed
    ensure_schema(connection)
    yield connection
    connection.close()


def count(connection, table: str) -> int:
    return connection.execute(f"select count(*) from catalog.{table}").fetchone()[0]


def test_row_counts(tmp_path, warehouse):
    summary = load_catalog_into(warehouse, make_data_dir(tmp_path), AS_OF)
    expected = {
        "products": 2,           # docsum-summaries, docsum-research
        "metrics": 3,            # Summaries; Research reports + Reasoning cost
        "metric_filters": 1,     # Research reports: model in [o3]
        "tiers": 5,              # 2 (Summaries) + 2 (Research reports) + 1 (Reasoning cost)
        "organizations": 4,      # acme, globex, initech, umbrella
        "subscribers": 5,
        "subscriptions": 5,
        "subscription_phases": 5,  # no plan changes: one phase each
        "credentials": 4,        # acme-summaries 2, acme-labs-research 1, globex-summaries 1
        "model_prices": 3,       # the three CSV rows, no organization overrides
        # as_of Oct 15 -> horizon Oct 16; monthly calendar, all in arrears:
        #   acme-summaries (Sep 1): Sep, Oct = 2; acme-labs-research (Sep 1): 2;
        #   globex (Oct 1): 1; initech (Oct 11): 1; umbrella (Aug 1 - Oct 21): Aug, Sep, Oct = 3 -> 9
        "subscription_periods": 9,
    }
    assert {table: count(warehouse, table) for table in expected} == expected
    assert (summary.products, summary.subscriptions, summary.drafts, summary.model_prices) == (2, 5, 9, 3)


def test_products_and_tiers(tmp_path, warehouse):
    load_catalog_into(warehouse, make_data_dir(tmp_path), AS_OF)
    assert warehouse.execute(
        "select currency, minor_units, recurring_charge, period_unit, period_every, billing_anchor, invoice_schedule"
        " from catalog.products where product_id = 'docsum-summaries'"
    ).fetchone() == ("USD", 2, Decimal("199.000000"), "month", 1, "calendar", "in_arrears")
    tiers = warehouse.execute(
        "select tier_position, tier_name, lower_bound, upper_bound, unit_rate, notify_at_percent from catalog.tiers"
        " where product_id = 'docsum-summaries' order by tier_position"
    ).fetchall()
    # lower bounds chain: the first from 0, the next from the previous tier's up_to (1000)
    assert tiers == [
        (1, "First 1,000", Decimal(0), Decimal(1000), Decimal("1.5"), "[80, 100]"),
        (2, "1,000+", Decimal(1000), None, Decimal("1.35"), "[80, 100]"),
    ]
    assert warehouse.execute(
        "select metric_name, field, allowed_value from catalog.metric_filters"
    ).fetchall() == [("Research reports", "model", "o3")]
    # the single unbounded tier of the cost metric starts at 0
    assert warehouse.execute(
        "select lower_bound, upper_bound, unit_rate from catalog.tiers where metric_name like 'Reasoning cost%'"
    ).fetchall() == [(Decimal(0), None, Decimal("1.25"))]


def test_model_price_validity_chain(tmp_path, warehouse):
    load_catalog_into(warehouse, make_data_dir(tmp_path), AS_OF)
    rows = warehouse.execute(
        "select model, input_per_million, valid_from, valid_to from catalog.model_prices"
        " order by model, valid_from"
    ).fetchall()
    # gpt-4o-mini 2026-01-01 is valid until the next gpt-4o-mini valid_from (2026-09-01); the last is open;
    # o3 has a single price, open
    assert rows == [
        ("gpt-4o-mini", Decimal("0.15"), datetime(2026, 1, 1), datetime(2026, 9, 1)),
        ("gpt-4o-mini", Decimal("0.12"), datetime(2026, 9, 1), None),
        ("o3", Decimal("2.00"), datetime(2026, 1, 1), None),
    ]


def test_subscription_periods_fees(tmp_path, warehouse):
    load_catalog_into(warehouse, make_data_dir(tmp_path), AS_OF)
    rows = warehouse.execute(
        "select period_start, period_end, recurring_amount from catalog.subscription_periods"
        " where subscription_id = ? order by period_start",
        ["umbrella-summaries"],
    ).fetchall()
    # Aug and Sep whole (199.00); Oct 1 -> Oct 21 = 20 of 31 days: 199 * 20/31 = 128.387... -> 128.39
    assert rows == [
        (datetime(2026, 8, 1), datetime(2026, 9, 1), Decimal("199.000")),
        (datetime(2026, 9, 1), datetime(2026, 10, 1), Decimal("199.000")),
        (datetime(2026, 10, 1), datetime(2026, 10, 21), Decimal("128.390")),
    ]
    # initech starts Oct 11: 199 * 21/31 = 4179/31 = 134.806... -> 134.81
    assert warehouse.execute(
        "select recurring_amount from catalog.subscription_periods where subscription_id = 'initech-research'"
    ).fetchall() == [(Decimal("134.810"),)]


def test_reload_replaces_tables_whole(tmp_path, warehouse):
    data_dir = make_data_dir(tmp_path)
    load_catalog_into(warehouse, data_dir, AS_OF)
    load_catalog_into(warehouse, data_dir, AS_OF)
    assert count(warehouse, "products") == 2
    assert count(warehouse, "subscription_periods") == 9
    assert count(warehouse, "model_prices") == 3


def test_without_model_prices_file(tmp_path, warehouse):
    summary = load_catalog_into(warehouse, make_data_dir(tmp_path, prices=None), AS_OF)
    assert summary.model_prices == 0
    assert count(warehouse, "model_prices") == 0


def test_failed_load_leaves_previous_tables(tmp_path, warehouse):
    data_dir = make_data_dir(tmp_path)
    load_catalog_into(warehouse, data_dir, AS_OF)
    (data_dir / "landing" / "model_prices.csv").write_text(PRICES + "openai,o3,abc,8,0,0,2026-02-01\n")
    with pytest.raises(CatalogError):
        load_catalog_into(warehouse, data_dir, AS_OF)
    assert count(warehouse, "products") == 2
    assert count(warehouse, "model_prices") == 3


def test_bad_csv_line_names_file_and_line(tmp_path):
    path = tmp_path / "model_prices.csv"
    # line 1 is the header, line 2 good, line 3 has a negative price
    path.write_text(HEADER + "openai,o3,2.00,8.00,0.50,0,2026-01-01\nopenai,o4,-1,8.00,0,0,2026-01-01\n")
    with pytest.raises(CatalogError) as caught:
        read_model_prices(path)
    assert caught.value.problems == [
        "model_prices.csv: line 3: input_per_million: '-1' must be >= 0 and < 100000 with at most 12 decimals"
    ]


def test_bad_timestamp_names_file_and_line(tmp_path):
    path = tmp_path / "model_prices.csv"
    path.write_text(HEADER + "openai,o3,2.00,8.00,0.50,0,2026-01-01\nopenai,o3,2.00,8.00,0.50,0,yesterday\n")
    with pytest.raises(CatalogError) as caught:
        read_model_prices(path)
    (problem,) = caught.value.problems
    assert problem.startswith("model_prices.csv: line 3:")


def test_non_numeric_price_names_file_line_and_column(tmp_path):
    # read_model_prices promises errors "name the file, line and column"
    path = tmp_path / "model_prices.csv"
    path.write_text(HEADER + "openai,o3,2.00,8.00,0.50,0,2026-01-01\nopenai,o3,abc,8.00,0.50,0,2026-02-01\n")
    with pytest.raises(CatalogError) as caught:
        read_model_prices(path)
    (problem,) = caught.value.problems
    assert problem.startswith("model_prices.csv: line 3:")
    assert "input_per_million" in problem, problem


def test_missing_column_is_reported(tmp_path):
    path = tmp_path / "model_prices.csv"
    path.write_text("provider,model,input_per_million,valid_from\nopenai,o3,2,2026-01-01\n")
    with pytest.raises(CatalogError) as caught:
        read_model_prices(path)
    (problem,) = caught.value.problems
    assert problem.startswith("model_prices.csv: line 1:")
    assert "output_per_million" in problem and "cache_read_per_million" in problem


def test_price_with_13_decimals_rejected(tmp_path):
    path = tmp_path / "model_prices.csv"
    path.write_text(HEADER + "openai,o3,0.0000000000001,8,0,0,2026-01-01\n")
    with pytest.raises(CatalogError) as caught:
        read_model_prices(path)
    assert caught.value.problems[0].startswith("model_prices.csv: line 2: input_per_million")


def test_overlapping_subscriptions_rejected_by_loader(tmp_path, warehouse):
    data_dir = make_data_dir(tmp_path)
    (data_dir / "catalog" / "extra.yaml").write_text(
        "subscriptions:\n"
        "  - {id: acme-summaries-2, subscriber: acme-ap, product: docsum-summaries, start: 2026-10-01T00:00:00Z}\n"
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog_into(warehouse, data_dir, AS_OF)
    assert "'acme-summaries'" in str(caught.value) and "'acme-summaries-2'" in str(caught.value)


def test_price_too_large_for_the_column_is_a_line_error(tmp_path, warehouse):
    # catalog.model_prices.input_per_million is decimal(17,12): at most 5 integer digits.
    # 100000 (6 digits) must be reported against its file and line, not fail inside the load.
    data_dir = make_data_dir(tmp_path, prices=HEADER + "openai,o3,100000,8,0,0,2026-01-01\n")
    with pytest.raises(CatalogError) as caught:
        load_catalog_into(warehouse, data_dir, AS_OF)
    assert str(caught.value.problems[0]).startswith("model_prices.csv: line 2: input_per_million"), caught.value


# Each row breaks one rule that the staging views' dbt tests no longer check (the tables hold it):
# (table, SQL that writes the breaking row, what DuckDB names in its error)
BROKEN_ROWS = [
    ("products", "insert into catalog.products select * replace ('KWD-4' as product_id, 4 as minor_units)"
                 " from catalog.products limit 1", "CHECK"),
    ("products", "update catalog.products set invoice_schedule = 'monthly'", "CHECK"),
    ("products", "insert into catalog.products select * from catalog.products limit 1", "PRIMARY KEY"),
    ("products", "update catalog.products set product_name = null", "NOT NULL"),
    ("metrics", "insert into catalog.metrics select * replace (99 as metric_position)"
                " from catalog.metrics limit 1", "PRIMARY KEY"),
    ("metrics", "update catalog.metrics set aggregation = 'median'", "CHECK"),
    ("metrics", "update catalog.metrics set tier_mode = 'stepwise'", "CHECK"),
    ("tiers", "insert into catalog.tiers select * from catalog.tiers limit 1", "PRIMARY KEY"),
    ("tiers", "update catalog.tiers set unit_rate = null", "NOT NULL"),
    ("organizations", "insert into catalog.organizations values ('acme', 'Acme again')", "PRIMARY KEY"),
    ("subscribers", "insert into catalog.subscribers select * from catalog.subscribers limit 1", "PRIMARY KEY"),
    ("subscriptions", "insert into catalog.subscriptions select * from catalog.subscriptions limit 1", "PRIMARY KEY"),
    ("credentials", "insert into catalog.credentials select * replace ('another' as credential_name)"
                    " from catalog.credentials limit 1", "UNIQUE"),
    ("subscription_periods", "update catalog.subscription_periods set minor_units = 1", "CHECK"),
]


@pytest.mark.parametrize(("table", "statement", "rule"), BROKEN_ROWS, ids=[f"{t}-{r}" for t, _, r in BROKEN_ROWS])
def test_catalog_tables_refuse_rows_the_contract_would_refuse(tmp_path, warehouse, table, statement, rule):
    load_catalog_into(warehouse, make_data_dir(tmp_path), AS_OF)
    assert count(warehouse, table) > 0  # the statement has a row to copy or change
    with pytest.raises(duckdb.ConstraintException) as caught:
        warehouse.execute(statement)
    assert rule in str(caught.value).upper()


def test_a_warehouse_made_before_the_keys_gets_them_with_the_next_catalog(tmp_path):
    connection = duckdb.connect(":memory:")
    ensure_schema(connection)
    # as the tables were created before 2026-11-28: no key on metrics, no check on tier_mode
    connection.execute("drop table catalog.metrics")
    connection.execute("""create table catalog.metrics (product_id varchar not null, metric_name varchar not null,
        metric_position integer not null, element varchar not null, aggregation varchar not null,
        aggregation_field varchar, match_value varchar, tier_mode varchar not null)""")
    connection.execute("insert into catalog.metrics values ('old', 'm', 1, 'requests', 'sum', null, null, 'stepwise')")
    load_catalog_into(connection, make_data_dir(tmp_path), AS_OF)
    assert count(connection, "metrics") == 3
    with pytest.raises(duckdb.ConstraintException):
        connection.execute("update catalog.metrics set tier_mode = 'stepwise'")
    keys = connection.execute("select constraint_type from duckdb_constraints()"
                              " where schema_name = 'catalog' and table_name = 'metrics'").fetchall()
    assert ("PRIMARY KEY",) in keys and ("CHECK",) in keys
