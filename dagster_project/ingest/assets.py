"""Ingest: raw metering files -> raw.events, with quarantine and duplicates kept apart."""

import dagster as dg

from dagster_project.ingest.loader import load_new_files
from dagster_project.resources import WarehouseResource

RAW_EVENTS = dg.AssetKey(["raw", "events"])
RAW_REJECTED = dg.AssetKey(["raw", "rejected_events"])
RAW_DUPLICATES = dg.AssetKey(["raw", "duplicate_events"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(RAW_EVENTS, description="Accepted, deduplicated metering events (SPEC §1).",
                     group_name="ingest", kinds={"duckdb", "python"}),
        dg.AssetSpec(RAW_REJECTED, description="Quarantined lines: file, line, raw text and reason (SPEC §1.1).",
                     group_name="ingest", kinds={"duckdb"}),
        dg.AssetSpec(RAW_DUPLICATES, description="Repeats of an accepted transactionId (SPEC §1.2).",
                     group_name="ingest", kinds={"duckdb"}),
    ],
)
def raw_events(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Load every landing file not loaded before, whatever event dates it holds."""
    with warehouse.connect() as connection:
        report = load_new_files(connection, warehouse.root, warehouse.clock())
        totals = connection.execute(
            "select (select count(*) from raw.events), (select count(*) from raw.rejected_events),"
            " (select count(*) from raw.duplicate_events)"
        ).fetchone()
    context.log.info(
        f"{report.files_loaded} file(s) loaded, {report.files_skipped} already loaded; "
        f"{report.lines_read} lines: {report.accepted} accepted, {report.duplicates} duplicates, "
        f"{report.rejected} rejected"
    )
    yield dg.MaterializeResult(asset_key=RAW_EVENTS, metadata={
        "files_loaded": report.files_loaded, "files_skipped": report.files_skipped,
        "lines_read": report.lines_read, "accepted": report.accepted, "total_events": totals[0],
    })
    yield dg.MaterializeResult(asset_key=RAW_REJECTED, metadata={
        "rejected_this_run": report.rejected, "total_rejected": totals[1],
        "by_reason": dg.MetadataValue.json(dict(report.rejected_by_reason)),
    })
    yield dg.MaterializeResult(asset_key=RAW_DUPLICATES, metadata={
        "duplicates_this_run": report.duplicates, "total_duplicates": totals[2],
    })


defs = dg.Definitions(assets=[raw_events])
