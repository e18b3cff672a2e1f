"""Incremental rating: the event-level table is extended, not rebuilt, while its inputs stand.

``intermediate.int_events_attributed`` is the one model that joins every event (dbt/DECISIONS.md);
everything after it aggregates it. Rebuilding it in every run rescanned the whole history: 142 s
of a 160 s rating at 20 M events, however few events had arrived. On DuckDB it is now an
incremental model that attributes only the loads (``load_id``) it does not hold yet.

That is right only while everything else the model reads is unchanged: an event's row depends on
the event, on the ``catalog`` tables (subscriptions, credentials, periods, prices, metrics; see
``dbt ls --select +int_events_attributed``) and on the project's SQL. So each rating computes a
fingerprint of those two, and when it differs from the one stored after the last successful
rating (or none is stored: a new warehouse, or one from before), the incremental tables are
dropped before dbt runs and dbt builds them whole again. A failed rating stores nothing, so the
next one decides again; a crash between dbt and storing the fingerprint only costs one full
rebuild.

The aggregates after it are incremental too: ``billing.rated_loads`` lists the loads the last
successful rating took in whole, with their event counts. The aggregates re-aggregate only the
usage periods that events of other loads fall in, and the uniqueness tests check only those
loads' ids (dbt/macros/rated_loads.sql). The list is replaced after every successful rating of
the whole selection and emptied with the tables, so a failed or interrupted rating, or a subset
of it, leaves those loads to the next one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from dagster_project import settings

ATTRIBUTED_EVENTS = "intermediate.int_events_attributed"
# the models built incrementally on DuckDB: kept or dropped together
INCREMENTAL_TABLES = (
    ATTRIBUTED_EVENTS,
    "intermediate.int_period_events_aggregated",
    "intermediate.int_usage_aggregated",
)
# the dbt project files a model's SQL comes from (tests and docs do not change what it builds)
PROJECT_INPUTS = ("dbt_project.yml", "models", "macros")


def inputs_fingerprint(connection: duckdb.DuckDBPyConnection) -> str:
    """SHA-256 over every ``catalog`` table's rows (in a canonical order) and the project's SQL."""
    digest = hashlib.sha256()
    tables = connection.execute(
        "select table_name from information_schema.tables"
        " where table_schema = 'catalog' and table_type = 'BASE TABLE' order by table_name"
    ).fetchall()
    for (table,) in tables:
        count, content = connection.execute(
            f"""
            select count(*), md5(coalesce(string_agg(row_json, chr(10) order by row_json), ''))
            from (select cast(to_json(t) as varchar) as row_json from catalog."{table}" as t)
            """
        ).fetchone()
        digest.update(f"catalog.{table}\t{count}\t{content}\n".encode())
    for path in _project_files():
        digest.update(f"{path.relative_to(settings.DBT_PROJECT_DIR).as_posix()}\t".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _project_files() -> list[Path]:
    root = settings.DBT_PROJECT_DIR
    files = []
    for name in PROJECT_INPUTS:
        path = root / name
        files.extend([path] if path.is_file() else (item for item in path.rglob("*") if item.is_file()))
    return sorted(files)


def prepare(connection: duckdb.DuckDBPyConnection) -> str:
    """Before dbt: drop the incremental tables unless they were built from these very inputs (or
    one is the view over Spark's files a Spark rating leaves, billing/engines.py), and with them
    the list of rated loads. Returns the fingerprint to ``record`` once the rating has succeeded."""
    fingerprint = inputs_fingerprint(connection)
    stored = connection.execute("select inputs_fingerprint from billing.rating_state").fetchall()
    existing = dict(connection.execute(
        "select table_schema || '.' || table_name, table_type from information_schema.tables"
        " where table_catalog = current_database() and table_schema || '.' || table_name in ?",
        [list(INCREMENTAL_TABLES)],
    ).fetchall())
    if stored != [(fingerprint,)] or "VIEW" in existing.values():
        connection.execute("begin")
        try:
            for table, table_type in existing.items():
                connection.execute(f"drop {'view' if table_type == 'VIEW' else 'table'} {table}")
            connection.execute("delete from billing.rated_loads")
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
    return fingerprint


def record(connection: duckdb.DuckDBPyConnection, fingerprint: str, *, whole_rating: bool = True) -> None:
    """After a successful rating: the incremental tables were built from these inputs, and, when
    the run built all of them with their tests (``whole_rating``; not a subset picked in the UI),
    every load they hold is rated. A subset leaves the list as it was: its loads stay for the
    next whole rating to aggregate and test (again, which changes nothing)."""
    connection.execute("begin")
    try:
        connection.execute("delete from billing.rating_state")
        connection.execute(
            "insert into billing.rating_state values (?, cast(current_timestamp as timestamp))", [fingerprint]
        )
        if whole_rating:
            connection.execute("delete from billing.rated_loads")
            connection.execute(
                f"insert into billing.rated_loads select load_id, count(*) from {ATTRIBUTED_EVENTS} group by load_id"
            )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
