"""Published Parquet snapshots of the marts: what lookups and dashboards read.

DuckDB lets one process write a database file, and a billing run holds it for minutes, so
readers never open ``warehouse.duckdb``. After each successful run the reporting asset copies
the marts readers need to ``<data dir>/snapshots/<stamp>/<schema>.<table>.parquet`` and then
points ``snapshots/current`` (a symlink) at it. Both steps are atomic renames: a reader that
resolved ``current`` keeps a complete, consistent set of files even while the next snapshot is
written, and the last few snapshots are kept so that reader is never pulled from under.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

# what lookups (quota, preview), the dashboard and the simulation read
SNAPSHOT_TABLES = (
    "marts.invoices", "marts.invoice_lines", "marts.invoice_drafts", "marts.invoice_line_drafts",
    "marts.usage_by_period", "marts.unbilled_usage",
    "marts.margin_by_customer", "marts.margin_by_product", "marts.margin_by_period", "marts.margin_by_model",
    "marts.late_revenue", "marts.budget_pacing",
    "catalog.products", "catalog.metrics", "catalog.tiers", "catalog.subscriptions", "catalog.subscribers",
    "catalog.organizations", "catalog.subscription_periods",
    "reporting.run_clock", "reporting.fx_rates",
)
KEEP = 3
MANIFEST = "manifest.json"


class NoSnapshot(FileNotFoundError):
    """Nothing was published yet: no billing run finished in this data dir."""


def snapshots_dir(data_dir: Path) -> Path:
    return data_dir / "snapshots"


def publish_snapshot(connection: duckdb.DuckDBPyConnection, data_dir: Path, as_of: datetime) -> dict:
    """Export ``SNAPSHOT_TABLES`` (those that exist) and make them the current snapshot."""
    root = snapshots_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"
    scratch = root / f".tmp-{stamp}"
    scratch.mkdir()
    existing = {
        f"{schema}.{name}"
        for schema, name in connection.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
    }
    tables: dict[str, int] = {}
    started = time.perf_counter()
    try:
        for table in SNAPSHOT_TABLES:
            if table not in existing:
                continue
            target = scratch / f"{table}.parquet"
            connection.execute(f"copy (select * from {table}) to {sql_path(target)} (format parquet, compression zstd)")
            tables[table] = connection.execute(f"select count(*) from {table}").fetchone()[0]
        manifest = {
            "as_of": as_of.isoformat(),
            "published_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
            "tables": tables,
        }
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        final = root / stamp
        os.rename(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    current = root / "current"
    if current.is_dir() and not current.is_symlink():
        # a data dir copied without its symbolic links (cp -r, shutil.copytree): `current` is a
        # plain copy of a snapshot, which a symlink cannot replace in one rename
        shutil.rmtree(current)
    link = root / f".current-{stamp}"
    os.symlink(stamp, link)
    os.replace(link, current)
    _prune(root, keep=stamp)
    return {**manifest, "path": str(final), "seconds": round(time.perf_counter() - started, 3)}


def sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _prune(root: Path, keep: str) -> None:
    versions = sorted(path for path in root.iterdir()
                      if path.is_dir() and not path.is_symlink() and not path.name.startswith("."))
    for old in versions[:-KEEP]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        # a crashed publisher leaves its scratch dir; anything older than an hour is garbage
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)


def current_snapshot(data_dir: Path) -> Path:
    """The directory of the current snapshot, resolved once (later swaps do not affect it)."""
    link = snapshots_dir(data_dir) / "current"
    if not link.exists():
        raise NoSnapshot(f"{snapshots_dir(data_dir)}: nothing published yet; run `meterhouse bill --period ...` first")
    return link.resolve()


def manifest(snapshot: Path) -> dict:
    return json.loads((snapshot / MANIFEST).read_text(encoding="utf-8"))


@contextmanager
def open_snapshot(
    data_dir: Path | None = None, snapshot: Path | None = None, tables: tuple[str, ...] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with one view per published table (or only ``tables``), under its
    warehouse name (``marts.invoices``, ...), so readers write the same SQL as against the warehouse."""
    folder = snapshot or current_snapshot(data_dir)
    connection = duckdb.connect(":memory:", config={"TimeZone": "UTC", "autoinstall_known_extensions": False})
    try:
        for schema in ("marts", "catalog", "reporting"):
            connection.execute(f"create schema if not exists {schema}")
        for path in sorted(folder.glob("*.parquet")):
            table = path.name.removesuffix(".parquet")
            if tables is not None and table not in tables:
                continue
            connection.execute(f"create view {table} as select * from read_parquet({sql_path(path)})")
        yield connection
    finally:
        connection.close()
