"""Incremental rating: the event-level table is extended, not rebuilt, while its inputs stand.

``intermediate.int_events_attributed`` is the one model that joins every event (dbt/DECISIONS.md);
everything after it aggregates it. Rebuilding it in every run rescanned the whole history: 142 s
of a 160 s rating at 20 M events, however few events had arrived. On DuckDB it is now an
incremental model that attributes only the loads (``load_id``) it does not hold yet.

That is right only while everything else the model reads is unchanged: an event's row depends on
the event, on the ``catalog`` tables (subscriptions, credentials, periods, prices, metrics; see
``dbt ls --select +int_events_attributed``) and on the project's SQL. So each rating computes a
fingerprint of those two, and when it differs from the one stored after the last successful
rating (or none is stored: a new warehouse, or one from before), the table is dropped before
dbt runs and dbt builds it whole again. A failed rating stores nothing, so the next one decides
again; a crash between dbt and storing the fingerprint only costs one full rebuild.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from dagster_project import settings

ATTRIBUTED_EVENTS = "intermediate.int_events_attributed"
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
    """Before dbt: drop the event-level table unless it was built from these very inputs (or it
    is the view over Spark's files a Spark rating leaves, billing/engines.py). Returns the
    fingerprint to ``record`` once the rating has succeeded."""
    fingerprint = inputs_fingerprint(connection)
    stored = connection.execute("select inputs_fingerprint from billing.rating_state").fetchall()
    schema, name = ATTRIBUTED_EVENTS.split(".")
    existing = connection.execute(
        "select table_type from information_schema.tables where table_catalog = current_database()"
        " and table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchone()
    if existing is not None and (existing[0] == "VIEW" or stored != [(fingerprint,)]):
        connection.execute(f"drop {'view' if existing[0] == 'VIEW' else 'table'} {ATTRIBUTED_EVENTS}")
    return fingerprint


def record(connection: duckdb.DuckDBPyConnection, fingerprint: str) -> None:
    """After a successful rating: the event-level table now holds every load, from these inputs."""
    connection.execute("begin")
    try:
        connection.execute("delete from billing.rating_state")
        connection.execute(
            "insert into billing.rating_state values (?, cast(current_timestamp as timestamp))", [fingerprint]
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
