"""Dagster asset checks of the release gate (see gate.py for what each check means)."""

# no `from __future__ import annotations`: Dagster inspects the `context` annotation at runtime

import dagster as dg

from dagster_project.invoicing.release import release_due_invoices
from dagster_project.partitions import monthly_billing_periods
from dagster_project.quality.gate import RUN_CHECKS, record, run_checks
from dagster_project.resources import WarehouseResource

INVOICE_DRAFTS = dg.AssetKey(["marts", "invoice_drafts"])


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=INVOICE_DRAFTS, blocking=True, partitions_def=monthly_billing_periods)
        for name in RUN_CHECKS
    ],
    description="Run-wide release gate: a failure holds every due draft and stops invoicing, payments "
    "and notifications.",
)
def release_gate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    as_of = warehouse.clock()
    with warehouse.connect() as connection:
        outcomes = run_checks(connection)
        record(connection, outcomes, as_of)
        failed = [outcome.name for outcome in outcomes if not outcome.passed]
        if failed:
            # blocking stops the steps downstream; the due drafts are stored as held, naming the checks,
            # so finance sees what is waiting and why
            window = context.partition_time_window
            report = release_due_invoices(
                connection, window.start.replace(tzinfo=None), window.end.replace(tzinfo=None), as_of,
                hold_all=failed,
            )
            context.log.warning(f"release gate failed ({', '.join(failed)}): {len(report.held)} draft(s) held")
    for outcome in outcomes:
        yield dg.AssetCheckResult(
            asset_key=INVOICE_DRAFTS,
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=outcome.detail,
            metadata=outcome.metadata,
        )


defs = dg.Definitions(asset_checks=[release_gate])
