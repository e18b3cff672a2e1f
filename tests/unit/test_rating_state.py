"""When the event-level rating table may be extended and when it must be rebuilt
(dagster_project/billing/rating_state.py); the billing runs themselves are in
tests/e2e/test_incremental_rating.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from dagster_project import settings
from dagster_project.billing import rating_state
from dagster_project.warehouse import ensure_schema


def _warehouse(path: Path, organizations: list[tuple[str, str]]) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(path))
    ensure_schema(connection)
    for row in organizations:
        connection.execute("insert into catalog.organizations values (?, ?)", list(row))
    return connection


def _attributed_table_exists(connection: duckdb.DuckDBPyConnection) -> bool:
    return connection.execute(
        "select count(*) from information_schema.tables"
        " where table_schema = 'intermediate' and table_name = 'int_events_attributed'"
    ).fetchone()[0] == 1


def _with_attributed_table(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("create schema if not exists intermediate")
    connection.execute(
        "create table if not exists intermediate.int_events_attributed (transaction_id varchar, load_id varchar)"
    )
    connection.execute("insert into intermediate.int_events_attributed values ('e1', 'load-1'), ('e2', 'load-1'),"
                       " ('e3', 'load-2')")


def _rated_loads(connection: duckdb.DuckDBPyConnection) -> list[tuple]:
    return connection.execute("select load_id, event_count from billing.rated_loads order by load_id").fetchall()


def test_the_fingerprint_is_the_catalog_content_not_its_row_order(tmp_path: Path) -> None:
    acme, globex = ("acme", "Acme Corp"), ("globex", "Globex")
    one = _warehouse(tmp_path / "one.duckdb", [acme, globex])
    other = _warehouse(tmp_path / "other.duckdb", [globex, acme])
    assert rating_state.inputs_fingerprint(one) == rating_state.inputs_fingerprint(other)
    before = rating_state.inputs_fingerprint(one)
    one.execute("update catalog.organizations set organization_name = 'Acme Corporation' where organization_id = 'acme'")
    assert rating_state.inputs_fingerprint(one) != before
    # a NULL is not the text 'NULL'
    one.execute("insert into catalog.subscribers (subscriber_id, email) values ('x', null)")
    other.execute("insert into catalog.subscribers (subscriber_id, email) values ('x', 'NULL')")
    other.execute("update catalog.organizations set organization_name = 'Acme Corporation' where organization_id = 'acme'")
    assert rating_state.inputs_fingerprint(one) != rating_state.inputs_fingerprint(other)


def test_the_table_is_kept_only_when_built_from_the_same_inputs(tmp_path: Path) -> None:
    connection = _warehouse(tmp_path / "w.duckdb", [("acme", "Acme Corp")])
    _with_attributed_table(connection)
    # nothing recorded yet (a new warehouse, or one rated before fingerprints): rebuilt
    fingerprint = rating_state.prepare(connection)
    assert not _attributed_table_exists(connection)
    _with_attributed_table(connection)  # dbt built it
    rating_state.record(connection, fingerprint)
    # what the table held when the rating succeeded: two loads, with their event counts
    assert _rated_loads(connection) == [("load-1", 2), ("load-2", 1)]
    assert rating_state.prepare(connection) == fingerprint and _attributed_table_exists(connection)
    assert _rated_loads(connection) == [("load-1", 2), ("load-2", 1)]
    # a catalog change: rebuilt, no load counts as rated any more, and the new fingerprint is
    # what the next success records
    connection.execute("insert into catalog.organizations values ('globex', 'Globex')")
    changed = rating_state.prepare(connection)
    assert changed != fingerprint and not _attributed_table_exists(connection)
    assert _rated_loads(connection) == []
    assert connection.execute("select inputs_fingerprint from billing.rating_state").fetchall() == [(fingerprint,)]


def test_the_aggregates_are_dropped_with_the_event_table(tmp_path: Path) -> None:
    connection = _warehouse(tmp_path / "w.duckdb", [("acme", "Acme Corp")])
    fingerprint = rating_state.prepare(connection)
    _with_attributed_table(connection)  # dbt built them
    for table in rating_state.INCREMENTAL_TABLES[1:]:
        connection.execute(f"create table {table} (subscription_id varchar)")
    rating_state.record(connection, fingerprint)
    assert rating_state.prepare(connection) == fingerprint
    kept = connection.execute("select count(*) from information_schema.tables where table_schema = 'intermediate'")
    assert kept.fetchone()[0] == len(rating_state.INCREMENTAL_TABLES)
    connection.execute("insert into catalog.organizations values ('globex', 'Globex')")
    rating_state.prepare(connection)
    left = connection.execute("select count(*) from information_schema.tables where table_schema = 'intermediate'")
    assert left.fetchone()[0] == 0


def test_a_change_to_the_projects_sql_changes_the_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "dbt"
    shutil.copytree(settings.DBT_PROJECT_DIR / "models", project / "models")
    shutil.copytree(settings.DBT_PROJECT_DIR / "macros", project / "macros")
    shutil.copy(settings.DBT_PROJECT_DIR / "dbt_project.yml", project / "dbt_project.yml")
    (project / "target").mkdir()
    monkeypatch.setattr(settings, "DBT_PROJECT_DIR", project)
    connection = _warehouse(tmp_path / "w.duckdb", [])
    before = rating_state.inputs_fingerprint(connection)
    (project / "target" / "run_results.json").write_text("{}")  # build output is not an input
    assert rating_state.inputs_fingerprint(connection) == before
    macro = project / "macros" / "token_cost.sql"
    macro.write_text(macro.read_text() + "\n-- changed\n")
    assert rating_state.inputs_fingerprint(connection) != before


def test_the_view_a_spark_rating_leaves_is_replaced_even_with_the_same_inputs(tmp_path: Path) -> None:
    # a Spark rating publishes the event table as a view over its Parquet files (billing/engines.py);
    # back on DuckDB, the incremental table must be built whole, not appended to a view
    connection = _warehouse(tmp_path / "w.duckdb", [("acme", "Acme Corp")])
    connection.execute("create schema intermediate")
    connection.execute("create view intermediate.int_events_attributed as select 'e1' as transaction_id, 'load-1' as load_id")
    fingerprint = rating_state.inputs_fingerprint(connection)
    rating_state.record(connection, fingerprint)
    assert rating_state.prepare(connection) == fingerprint
    assert not _attributed_table_exists(connection)
