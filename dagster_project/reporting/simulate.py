"""Price simulation: re-rate history under another catalog, and compare with the current one.

Nothing of the data dir changes: the raw events are copied (under the writer lock, briefly, so
the copy is consistent) into a scratch DuckDB in a temporary directory, the new catalog is
loaded there with the last run's clock, and the rating models (``dbt run``, without the finance
marts) rate it. "Old" is the last run's rating of the same periods (``marts.invoice_drafts`` in
the published snapshot), so both sides re-rate every period the same way: for periods without
late events "old" is what was invoiced. Periods are chosen as billing partitions choose them:
a draft belongs to the month its usage period ends in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb

from dagster_project import settings, warehouse
from dagster_project.lib.locking import exclusive_writer
from dagster_project.lib.periods import add_units
from dagster_project.reporting.snapshot import current_snapshot, open_snapshot, sql_path

RAW_TABLES = ("raw.events", "raw.rejected_events", "raw.loaded_files", "raw.duplicate_events")
COMPARISON_SQL = """
with old as (
    select organization_id, coalesce(organization_name, organization_id) as organization_name, product_id,
           currency, period_end, total, provider_cost_usd
    from old_drafts
    where case when period_start = period_end then period_start >= $start and period_start < $end
               else period_end > $start and period_end <= $end end
), new as (
    select organization_id, coalesce(organization_name, organization_id) as organization_name, product_id,
           currency, period_end, total, provider_cost_usd
    from new_drafts
    where case when period_start = period_end then period_start >= $start and period_start < $end
               else period_end > $start and period_end <= $end end
), both_sides as (
    select 'old' as side, * from old union all select 'new' as side, * from new
), converted as (
    select b.*, case when b.currency = 'USD' then 1 else r.usd_per_unit end as usd_per_unit
    from both_sides as b
    left join fx_rates as r
      on r.currency = b.currency and b.period_end >= r.valid_from and (r.valid_to is null or b.period_end < r.valid_to)
)
select coalesce(organization_id, '') as organization_id, max(organization_name) as organization_name, product_id, currency,
       coalesce(sum(total) filter (where side = 'old'), 0) as old_revenue,
       coalesce(sum(total) filter (where side = 'new'), 0) as new_revenue,
       sum(round_even(total * usd_per_unit, 10)) filter (where side = 'old') as old_revenue_usd,
       sum(round_even(total * usd_per_unit, 10)) filter (where side = 'new') as new_revenue_usd,
       coalesce(sum(provider_cost_usd) filter (where side = 'old'), 0) as old_cost_usd,
       coalesce(sum(provider_cost_usd) filter (where side = 'new'), 0) as new_cost_usd,
       count(*) filter (where usd_per_unit is null) as rows_without_fx_rate
from converted
group by all
order by organization_id, product_id, currency
"""


@dataclass
class Simulation:
    start: datetime
    end: datetime
    as_of: datetime
    rows: list[dict]
    seconds: float
    dashboard: Path | None = None

    def as_dict(self) -> dict:
        totals: dict[str, Decimal] = {}
        for key in ("old_revenue_usd", "new_revenue_usd", "old_margin_usd", "new_margin_usd"):
            totals[key] = sum((row[key] or Decimal(0) for row in self.rows), start=Decimal(0))
        totals["revenue_difference_usd"] = totals["new_revenue_usd"] - totals["old_revenue_usd"]
        return {
            "from": self.start, "to": self.end, "as_of": self.as_of, "rows": self.rows, "totals": totals,
            "dashboard": str(self.dashboard) if self.dashboard else None, "seconds": round(self.seconds, 1),
        }


def _month(text: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%Y-%m")
    except ValueError:
        raise ValueError(f"period {text!r}: expected YYYY-MM (e.g. 2026-10)") from None


def _ratio(numerator: Decimal | None, denominator: Decimal | None) -> Decimal | None:
    if numerator is None or not denominator:
        return None
    return (numerator / denominator).quantize(Decimal("1E-10"), rounding=ROUND_HALF_EVEN)


def copy_raw_tables(source_root: Path, scratch: duckdb.DuckDBPyConnection, wait_seconds: float) -> None:
    """The accepted events and their bookkeeping, copied under the writer lock (readers of the
    warehouse file must not overlap a writer: DuckDB allows one process to hold it)."""
    path = warehouse.warehouse_path(source_root)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet; run `meterhouse bill --period ...` first")
    literal = "'" + str(path).replace("'", "''") + "'"
    with exclusive_writer(source_root, wait_seconds=wait_seconds):
        scratch.execute(f"attach {literal} as source_warehouse (read_only)")
        try:
            for table in RAW_TABLES:
                scratch.execute(f"insert into {table} select * from source_warehouse.{table}")
        finally:
            scratch.execute("detach source_warehouse")


def _rate(scratch_root: Path, target: Path) -> None:
    """The rating models only (the finance marts need a ledger the scratch has not got)."""
    dbt = Path(sys.executable).parent / "dbt"
    environment = {**os.environ, settings.WAREHOUSE_ENV: str(warehouse.warehouse_path(scratch_root))}
    command = [
        str(dbt), "run", "--exclude", "tag:reporting", "--project-dir", str(settings.DBT_PROJECT_DIR),
        "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--target-path", str(target),
        "--log-path", str(target / "logs"), "--quiet", "--threads", "2",
    ]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-5:]
        raise RuntimeError("re-rating under the new catalog failed: " + " | ".join(tail))


def simulate(
    data_dir: Path,
    catalog_dir: Path,
    from_period: str,
    to_period: str,
    wait_seconds: float = 30.0,
    write_page: bool = True,
) -> Simulation:
    """Re-rate the billing months ``from_period``..``to_period`` under ``catalog_dir``."""
    from dagster_project.catalog.loader import load_catalog_into

    started = time.perf_counter()
    start, last = _month(from_period), _month(to_period)
    if last < start:
        raise ValueError("--to must not be before --from")
    end = add_units(last, "month", 1)
    if not catalog_dir.is_dir() or not any(catalog_dir.glob("*.yaml")):
        raise FileNotFoundError(f"{catalog_dir}: no catalog *.yaml files there")
    snapshot = current_snapshot(data_dir)
    with open_snapshot(snapshot=snapshot) as old:
        as_of = old.execute("select max(as_of) from reporting.run_clock").fetchone()[0]
    with tempfile.TemporaryDirectory(prefix="meterhouse-simulate-") as folder:
        scratch_root = Path(folder)
        shutil.copytree(catalog_dir, scratch_root / "catalog")
        for name in ("model_prices.csv", "fx_rates.csv"):
            if (data_dir / "landing" / name).exists():
                (scratch_root / "landing").mkdir(exist_ok=True)
                shutil.copyfile(data_dir / "landing" / name, scratch_root / "landing" / name)
        with warehouse.connect(scratch_root) as scratch:
            copy_raw_tables(data_dir, scratch, wait_seconds)
            load_catalog_into(scratch, scratch_root, as_of)
        _rate(scratch_root, scratch_root / ".dbt")
        with warehouse.connect(scratch_root, read_only=True) as scratch:
            old_drafts = sql_path(snapshot / "marts.invoice_drafts.parquet")
            scratch.execute(f"create temp view old_drafts as select * from read_parquet({old_drafts})")
            scratch.execute("create temp view new_drafts as select * from marts.invoice_drafts")
            fx = snapshot / "reporting.fx_rates.parquet"
            scratch.execute(
                f"create temp view fx_rates as select * from read_parquet({sql_path(fx)})" if fx.exists()
                else "create temp view fx_rates as select * from reporting.fx_rates"
            )
            result = scratch.execute(COMPARISON_SQL, {"start": start, "end": end})
            names = [column[0] for column in result.description]
            rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    for row in rows:
        row["revenue_difference"] = row["new_revenue"] - row["old_revenue"]
        row["revenue_difference_pct"] = _ratio(row["revenue_difference"], row["old_revenue"])
        row["old_margin_usd"] = None if row["old_revenue_usd"] is None else row["old_revenue_usd"] - row["old_cost_usd"]
        row["new_margin_usd"] = None if row["new_revenue_usd"] is None else row["new_revenue_usd"] - row["new_cost_usd"]
        row["old_margin_pct"] = _ratio(row["old_margin_usd"], row["old_revenue_usd"])
        row["new_margin_pct"] = _ratio(row["new_margin_usd"], row["new_revenue_usd"])
    simulation = Simulation(start=start, end=end, as_of=as_of, rows=rows, seconds=0.0)
    if write_page:
        from dagster_project.reporting.dashboard import write_simulation_page

        simulation.dashboard = write_simulation_page(data_dir, simulation, catalog_dir, from_period, to_period)
    simulation.seconds = time.perf_counter() - started
    return simulation
