"""Invoicing: release due drafts into the immutable ledger and write their documents."""

import dagster as dg

from dagster_project.invoicing.release import release_due_invoices
from dagster_project.invoicing.render import write_documents
from dagster_project.partitions import monthly_billing_periods
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
    partitions_def=monthly_billing_periods,
)
def invoices(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Number and freeze every invoice whose period closed in this billing period, then
    render the HTML documents of issued invoices that have none yet."""
    window = context.partition_time_window
    as_of = warehouse.clock()
    with warehouse.connect() as connection:
        report = release_due_invoices(
            connection, window.start.replace(tzinfo=None), window.end.replace(tzinfo=None), as_of
        )
        documents = write_documents(connection, warehouse.root)
        issued_in_window = connection.execute(
            "select count(*), coalesce(sum(total), 0) from marts.invoices where status = 'issued'"
            " and issued_at > ? and issued_at <= ?",
            [window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)],
        ).fetchone()
    context.log.info(
        f"{len(report.issued)} invoice(s) issued, {len(report.held)} held, {report.already_issued} already issued; "
        f"{len(documents)} document(s) written"
    )
    metadata = {
        "issued_this_run": len(report.issued),
        "held": len(report.held),
        "already_issued": report.already_issued,
        "invoices_in_period": issued_in_window[0],
        "numbers": dg.MetadataValue.json(report.issued),
    }
    yield dg.MaterializeResult(asset_key=INVOICES, metadata=metadata)
    yield dg.MaterializeResult(asset_key=INVOICE_LINES, metadata={"documents_written": len(documents)})


defs = dg.Definitions(assets=[invoices])
