"""Reporting: after invoices are released, build the finance marts, publish the snapshot that
lookups read, and write the dashboard.

The finance marts read the invoice ledger, which Python writes after the rating models, so they
are a second dbt invocation (models tagged ``reporting``; the rating invocation excludes them).
Nothing here can fail a billing run that already issued its invoices for want of data: an empty
warehouse gives empty marts, an empty snapshot and a dashboard that says so.
"""

import os
import time

import dagster as dg
from dagster_dbt import dbt_assets

from dagster_project import settings, warehouse
from dagster_project.billing import dbt_inprocess, dbt_selection
from dagster_project.billing.assets import MeterhouseTranslator, dbt_project
from dagster_project.invoicing.assets import INVOICE_LINES, INVOICES
from dagster_project.payments.assets import PAYMENTS
from dagster_project.resources import WarehouseResource

REPORT_INPUTS = [dg.AssetKey(["reporting", name]) for name in ("fx_rates", "run_clock", "subscription_budgets")]
REPORT_MARTS = [
    dg.AssetKey(["marts", name])
    for name in ("margin_by_customer", "margin_by_product", "margin_by_period", "margin_by_model",
                 "late_revenue", "budget_pacing")
]
SNAPSHOT = dg.AssetKey(["reporting", "snapshot"])
DASHBOARD = dg.AssetKey(["reporting", "finance_dashboard"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key, group_name="reporting", kinds={"duckdb", "python"}, deps=[INVOICES],
                     description="Input of the finance marts (dagster_project/reporting/inputs.py).")
        for key in REPORT_INPUTS
    ],
)
def report_inputs(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """FX rates from landing/fx_rates.csv, the run's clock and the catalog's budgets."""
    from contracts.catalog import catalog_dir_of, load_catalog
    from dagster_project.reporting.inputs import FxRatesError, write_report_inputs

    try:
        catalog = load_catalog(catalog_dir_of(warehouse.root))
    except Exception as error:  # the catalog asset already failed the run on a bad catalog
        context.log.warning(f"budgets not loaded: {error}")
        catalog = None
    with warehouse.connect() as connection:
        try:
            summary = write_report_inputs(connection, warehouse.root, warehouse.clock(), catalog)
        except FxRatesError as error:
            # the run's invoices are issued: report with the last good rates rather than fail it
            context.log.error(f"{error}; the finance reports keep the last good FX rates")
            summary = write_report_inputs(connection, warehouse.root, warehouse.clock(), catalog, keep_fx_rates=True)
            summary["fx_rates_error"] = str(error)
    for key in REPORT_INPUTS:
        yield dg.MaterializeResult(asset_key=key, metadata=summary if key.path[-1] == "fx_rates" else {})


class ReportingTranslator(MeterhouseTranslator):
    def get_group_name(self, dbt_resource_props) -> str | None:
        return "reporting"


dbt_selection.use_kept_selections()


@dbt_assets(
    manifest=dbt_selection.manifest_for_definitions(dbt_project.manifest_path),
    project=dbt_project,
    select=dbt_selection.REPORTING.select,
    exclude=dbt_selection.REPORTING.exclude,
    name="meterhouse_dbt_reports",
    dagster_dbt_translator=ReportingTranslator(),
)
def meterhouse_dbt_reports(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """The finance marts, built once the period's invoices are in the ledger. A failure is
    logged, not raised: the invoices of this run are already issued and must be reported so."""
    os.environ[settings.WAREHOUSE_ENV] = str(warehouse_module_path(warehouse))
    target = warehouse.root / ".dbt" / "target"
    try:
        succeeded = yield from dbt_inprocess.stream_build(context, ["build"], target_path=target, raise_on_error=False)
    except Exception as error:  # e.g. a manifest older than the project: report, do not undo the run
        context.log.error(f"finance marts: {type(error).__name__}: {error}; run `dbt parse` (make install)")
        return
    if not succeeded:
        context.log.error("finance marts: dbt build failed; the snapshot keeps the tables that were built "
                          f"(dbt log: {target})")


def warehouse_module_path(resource: WarehouseResource):
    return warehouse.warehouse_path(resource.root)


@dg.asset(
    key=SNAPSHOT,
    deps=[*REPORT_MARTS, INVOICES, INVOICE_LINES, PAYMENTS],
    group_name="reporting",
    kinds={"parquet"},
    description="Parquet snapshot of the marts under <data dir>/snapshots/current: what lookups read.",
)
def marts_snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from dagster_project.reporting.snapshot import publish_snapshot

    with warehouse.connect(read_only=False) as connection:
        published = publish_snapshot(connection, warehouse.root, warehouse.clock())
    context.log.info(f"snapshot {published['path']} in {published['seconds']} s")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(published["path"]),
        "seconds": published["seconds"],
        "tables": dg.MetadataValue.json(published["tables"]),
    })


@dg.asset(
    key=DASHBOARD,
    deps=[SNAPSHOT],
    group_name="reporting",
    kinds={"html", "plotly"},
    description="Finance dashboard: <data dir>/dashboards/finance.html, a self-contained page.",
)
def finance_dashboard(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Never fails the run: a dashboard that cannot be drawn is logged and reported as such."""
    from dagster_project.reporting.dashboard import write_dashboard

    started = time.perf_counter()
    try:
        result = write_dashboard(warehouse.root)
    except Exception as error:  # the invoices are issued; a broken chart must not undo the run's outcome
        context.log.error(f"finance dashboard not written: {type(error).__name__}: {error}")
        return dg.MaterializeResult(metadata={"error": f"{type(error).__name__}: {error}"})
    seconds = round(time.perf_counter() - started, 2)
    context.log.info(f"finance dashboard {result.path} in {seconds} s")
    return dg.MaterializeResult(metadata={**result.metadata(), "seconds": seconds})


defs = dg.Definitions(assets=[report_inputs, meterhouse_dbt_reports, marts_snapshot, finance_dashboard])
