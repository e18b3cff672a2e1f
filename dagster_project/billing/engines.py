"""Which engine rates usage: DuckDB (the default) or Apache Spark, chosen by configuration.

``METERHOUSE_ENGINE=duckdb|spark`` (read in :mod:`dagster_project.settings`) picks the dbt target;
the models are the same on both (docs/scale-out.md). DuckDB reads the raw and catalog tables
Python wrote into ``warehouse.duckdb``. Spark cannot, so for the Spark path:

1. :func:`land_parquet` exports every ``raw.*`` and ``catalog.*`` table from DuckDB to the lake,
   ``<data dir>/lake/<schema>/<table>/``, raw events partitioned by day
   (``raw/events/event_date=YYYY-MM-DD/*.parquet``);
2. dbt's ``on-run-start`` hook (``dbt/macros/lake_sources.sql``) registers each folder as a view,
   and the models write Parquet tables under ``<lake>/warehouse/<schema>.db/``;
3. :func:`publish_marts` copies the mart tables back into ``warehouse.duckdb`` (schema ``marts``),
   where the invoicing step, the CLI and the dashboards read them: what is published stays on
   DuckDB whichever engine rated it. The event-level intermediate tables stay in the lake, as
   DuckDB views over their Parquet files (the release gate and invoice lineage read them).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dagster_project import settings, warehouse

LAKE_DIR = "lake"
# the raw events' partition column, derived from request_time (UTC)
EVENT_PARTITION = "event_date"
# a day no event can have: the partition an empty event table lands in, so that Spark still
# reads its schema from a (zero-row) file
EMPTY_PARTITION = "1970-01-01"
LANDED_SCHEMAS = ("raw", "catalog")
# the schema of the dbt outputs copied back into DuckDB
PUBLISHED_SCHEMA = "marts"
# the event-level dbt tables DuckDB reads in place, as views over the lake
LAKE_VIEW_SCHEMA = "intermediate"
SPARK_TARGET = "spark"


def lake_path(data_dir: Path) -> Path:
    return data_dir / LAKE_DIR


def spark_warehouse_path(lake: Path) -> Path:
    """Where Spark's managed tables live: ``spark.sql.warehouse.dir`` in dbt/profiles.yml."""
    return lake / "warehouse"


@dataclass(frozen=True)
class EngineRun:
    """One dbt invocation on the chosen engine: its CLI arguments, target path and epilogue."""

    engine: str
    data_dir: Path

    def dbt_args(self) -> list[str]:
        return ["--target", SPARK_TARGET] if self.engine == "spark" else []

    def target_path(self) -> Path:
        """One dbt target directory per data dir and engine: dbt's partial parsing is keyed on the
        profile, so sharing one between engines would re-parse the project on every switch."""
        name = "target" if self.engine == "duckdb" else f"target-{self.engine}"
        return self.data_dir / ".dbt" / name

    def publish(self) -> list[str]:
        """After a successful dbt run: the Spark marts back into DuckDB. Nothing to do on DuckDB."""
        if self.engine != "spark":
            return []
        not_null = not_null_columns(self.target_path() / "manifest.json")
        with warehouse.connect(self.data_dir) as connection:
            return publish_marts(connection, lake_path(self.data_dir), not_null)


def prepare(data_dir: Path, engine: str | None = None) -> EngineRun:
    """Before dbt runs: on Spark, land raw and catalog as Parquet and point dbt's profile at them."""
    chosen = settings.engine(engine)
    if chosen == "spark":
        lake = lake_path(data_dir)
        # dbt runs as a subprocess and finds the lake through its profile's env_var
        os.environ[settings.LAKE_ENV] = str(lake)
        with warehouse.connect(data_dir) as connection:
            land_parquet(connection, lake)
    return EngineRun(chosen, data_dir)


# --------------------------------------------------------------------------------------------
# DuckDB -> lake
# --------------------------------------------------------------------------------------------


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def land_parquet(connection: duckdb.DuckDBPyConnection, lake: Path) -> dict[str, int]:
    """Export every raw and catalog table to ``<lake>/<schema>/<table>/``; returns rows per table.

    Each folder is written beside the old one and swapped in, so a reader never sees half a table.
    The whole table is exported on every run (the models re-rate every period anyway); a landing
    that appends only the new day partitions is the next step at scale (docs/scale-out.md).
    """
    tables = connection.execute(
        """
        select table_schema, table_name from information_schema.tables
        where table_catalog = current_database() and table_type = 'BASE TABLE'
          and table_schema in ({})
        order by table_schema, table_name
        """.format(", ".join(_literal(schema) for schema in LANDED_SCHEMAS))
    ).fetchall()
    counts: dict[str, int] = {}
    for schema, table in tables:
        final = lake / schema / table
        staging = lake / schema / f".{table}.{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        relation = f"{_quote(schema)}.{_quote(table)}"
        rows = connection.execute(f"select count(*) from {relation}").fetchone()[0]
        if (schema, table) == ("raw", "events"):
            _land_events(connection, relation, staging, rows)
        else:
            connection.execute(
                f"copy (select * from {relation}) to {_literal(str(staging / 'data_0.parquet'))} (format parquet)"
            )
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        counts[f"{schema}.{table}"] = rows
    return counts


def _land_events(connection: duckdb.DuckDBPyConnection, relation: str, folder: Path, rows: int) -> None:
    if rows == 0:
        empty = folder / f"{EVENT_PARTITION}={EMPTY_PARTITION}"
        empty.mkdir()
        connection.execute(
            f"copy (select * from {relation} limit 0) to {_literal(str(empty / 'data_0.parquet'))} (format parquet)"
        )
        return
    # one folder per UTC day of requestTime: Spark prunes partitions on event_date
    connection.execute(
        f"""
        copy (select *, cast(request_time as date) as {EVENT_PARTITION} from {relation})
        to {_literal(str(folder))} (format parquet, partition_by ({EVENT_PARTITION}))
        """
    )


# --------------------------------------------------------------------------------------------
# lake -> DuckDB
# --------------------------------------------------------------------------------------------


def spark_table_folders(lake: Path, schema: str = PUBLISHED_SCHEMA) -> dict[str, Path]:
    """The managed tables Spark wrote for one schema: table name -> folder of Parquet files."""
    root = spark_warehouse_path(lake) / f"{schema}.db"
    if not root.is_dir():
        return {}
    return {
        folder.name: folder
        for folder in sorted(root.iterdir())
        if folder.is_dir() and any(folder.rglob("*.parquet"))
    }


def parquet_select(connection: duckdb.DuckDBPyConnection, folder: Path) -> str:
    """``select`` over a Spark table's Parquet files with DuckDB's types: Spark writes timestamps
    as instants (``timestamp with time zone`` here), the warehouse keeps naive UTC timestamps."""
    source = f"read_parquet({_literal(str(folder / '**' / '*.parquet'))})"
    columns = connection.execute(f"describe select * from {source}").fetchall()
    selected = []
    for name, column_type, *_ in columns:
        quoted = _quote(name)
        if column_type.upper() == "TIMESTAMP WITH TIME ZONE":
            # the connection's TimeZone is UTC (warehouse.connect), so this is the UTC wall clock
            selected.append(f"cast({quoted} as timestamp) as {quoted}")
        else:
            selected.append(quoted)
    return f"select {', '.join(selected)} from {source}"


def _drop_other_kind(connection: duckdb.DuckDBPyConnection, schema: str, name: str, keep: str) -> None:
    """Drop ``schema.name`` if it exists as the other kind (a table where a view goes, or back):
    a data dir rated by one engine and then the other has the other engine's relations."""
    existing = connection.execute(
        "select table_type from information_schema.tables where table_catalog = current_database()"
        " and table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchone()
    if existing is None:
        return
    kind = "VIEW" if existing[0] == "VIEW" else "TABLE"
    if kind != keep:
        connection.execute(f"drop {kind.lower()} {_quote(schema)}.{_quote(name)}")


def not_null_columns(manifest: Path) -> dict[str, list[str]]:
    """Each mart's columns with a ``not_null`` constraint in dbt's manifest, by table name.

    On DuckDB the contract creates the marts with NOT NULL columns; Spark's Parquet tables cannot
    carry the constraint (and ANSI mode is off, so an overflow is a null), so publishing checks it.
    """
    nodes = json.loads(manifest.read_text(encoding="utf-8"))["nodes"].values()
    return {
        node["alias"]: sorted(
            name for name, column in node["columns"].items()
            if any(constraint["type"] == "not_null" for constraint in column.get("constraints", []))
        )
        for node in nodes
        if node["resource_type"] == "model" and node["config"].get("schema") == PUBLISHED_SCHEMA
    }


def _check_not_null(connection: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> None:
    if not columns:
        return
    counts = ", ".join(f"count(*) filter (where {_quote(column)} is null)" for column in columns)
    found = connection.execute(f"select {counts} from {_quote(PUBLISHED_SCHEMA)}.{_quote(table)}").fetchone()
    nulls = [f"{column} ({count} rows)" for column, count in zip(columns, found, strict=True) if count]
    if nulls:
        raise ValueError(f"{PUBLISHED_SCHEMA}.{table} from Spark has nulls in NOT NULL columns: {', '.join(nulls)}")


def publish_marts(connection: duckdb.DuckDBPyConnection, lake: Path,
                  not_null: dict[str, list[str]] | None = None) -> list[str]:
    """Bring Spark's results to DuckDB, in one transaction; returns ``schema.table`` names.

    - ``marts``: each mart table is copied into ``warehouse.duckdb`` (one row per draft, line,
      metric: small at any scale), where the invoicing step, the CLI and the reports read it. The
      invoice ledger (``marts.invoices``, ``marts.invoice_lines``) has no dbt model, so it is never
      among them.
    - ``intermediate``: the event-level tables (``int_events_attributed``, ...), read by the release
      gate's checks and by invoice lineage, become DuckDB views over the lake's Parquet files:
      queried in place, never copied.

    A mart with a null in a ``not_null`` column (``not_null_columns``) fails the whole publication.
    """
    published = []
    connection.execute("begin")
    try:
        for schema, copy in ((PUBLISHED_SCHEMA, True), (LAKE_VIEW_SCHEMA, False)):
            folders = spark_table_folders(lake, schema)
            if folders:
                connection.execute(f"create schema if not exists {_quote(schema)}")
            for table, folder in folders.items():
                relation = f"{_quote(schema)}.{_quote(table)}"
                _drop_other_kind(connection, schema, table, "TABLE" if copy else "VIEW")
                kind = "table" if copy else "view"
                connection.execute(f"create or replace {kind} {relation} as {parquet_select(connection, folder)}")
                if copy:
                    _check_not_null(connection, table, (not_null or {}).get(table, []))
                published.append(f"{schema}.{table}")
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    return published
