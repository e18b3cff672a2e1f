"""Invoicing: release due drafts into the immutable ledger and write their documents."""

import dagster as dg

from dagster_project.invoicing.release import release_due_invoices
from dagster_project.invoicing.render import write_documents
from dagster_project.partitions import monthly_billing_periods
from dagster_project.quality.gate import DRAFT_CHECKS, draft_checks, holds_by_draft, record
from dagster_project.resources import WarehouseResource

INVOICES = dg.AssetKey(["marts", "invoices"])
INVOICE_LINES = dg.AssetKey(["marts", "invoice_lines"])
DRAFT_INPUTS = [
    dg.AssetKey(["marts", "invoice_drafts"]),
    dg.AssetKey(["marts", "invoice_line_drafts"]),
    dg.AssetKey(["marts", "usage_by_period"]),
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(INVOICES, deps=DRAFT_INPUTS, group_name="invoicing", kinds={"duckdb", "python"},
                     description="Invoice ledger (SPEC §4): issued invoices never change."),
        dg.AssetSpec(INVOICE_LINES, deps=DRAFT_INPUTS, group_name="invoicing", kinds={"duckdb"}),
    ],
    check_specs=[
        # not blocking: a failure holds only the drafts it names, the others are released
        dg.AssetCheckSpec(name, asset=INVOICES, description="release gate, per draft (Great Expectations)")
        for name in DRAFT_CHECKS
    ],
    partitions_def=monthly_billing_periods,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def invoices(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Gate, number and freeze every invoice whose period closed in this billing period, then
    render the documents of issued invoices that have none yet."""
    window = context.partition_time_window
    start, end = window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
    as_of = warehouse.clock()
    with warehouse.connect() as connection:
        outcomes = draft_checks(connection, warehouse.root, start, end, as_of)
        record(connection, outcomes, as_of)
        report = release_due_invoices(connection, start, end, as_of, failing_checks=holds_by_draft(outcomes))
        documents = write_documents(connection, warehouse.root)
        issued_in_window = connection.execute(
            "select count(*), coalesce(sum(total), 0) from marts.invoices where status = 'issued'"
            " and issued_at > ? and issued_at <= ?",
            [window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)],
        ).fetchone()
    context.log.info(
        f"{len(report.issued)} invoice(s) issued, {len(report.held)} held, {report.already_issued} already issued, "
        f"{report.adjustments_detected} late-event adjustment(s), {len(report.adjustment_documents)} credit/adjustment "
        "document(s); "
        f"{len(documents)} document(s) written"
    )
    metadata = {
        "issued_this_run": len(report.issued),
        "held": len(report.held),
        "already_issued": report.already_issued,
        "adjustments_detected": report.adjustments_detected,
        "adjustment_documents": dg.MetadataValue.json(report.adjustment_documents),
        "invoices_in_period": issued_in_window[0],
        "numbers": dg.MetadataValue.json(report.issued + report.adjustment_documents),
    }
    yield dg.MaterializeResult(asset_key=INVOICES, metadata=metadata)
    yield dg.MaterializeResult(asset_key=INVOICE_LINES, metadata={"documents_written": len(documents)})
    for outcome in outcomes:
        yield dg.AssetCheckResult(
            asset_key=INVOICES,
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=outcome.detail,
            metadata={"held_drafts": dg.MetadataValue.json(outcome.failing_drafts)},
        )


defs = dg.Definitions(assets=[invoices])
