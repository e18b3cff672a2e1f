"""Run the Dagster job for one billing partition, in process, on a persistent instance."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
import sqlalchemy.exc


def bill_partition(
    root: Path,
    partition_key: str,
    as_of: str,
    log_level: str = "WARNING",
    last_partition_key: str | None = None,
    wait_seconds: float = 0.0,
) -> dict:
    """Bill under the data dir's writer lock (see lib/locking.py)."""
    from dagster_project.lib.locking import exclusive_writer

    with exclusive_writer(root, wait_seconds=wait_seconds):
        return _bill(root, partition_key, as_of, log_level, last_partition_key)


def _bill(root: Path, partition_key: str, as_of: str, log_level: str, last_partition_key: str | None) -> dict:
    """Materialize ingest, catalog, dbt and invoicing for ``partition_key`` through Dagster.

    With ``last_partition_key``, one run covers the whole range of partitions (a single-run
    backfill: every partitioned asset here takes a partition range). Returns the invoice
    numbers issued and the number of held drafts. Raises with the failing step's or check's
    message when the run fails.
    """
    from dagster_project.definitions import build_defs
    from dagster_project.invoicing.assets import INVOICES
    from dagster_project.lib.event_log import write_instance_config
    from dagster_project.lib.gc_tuning import freeze_long_lived
    from dagster_project.quality.warm_suite import warm_suite

    home = root / ".dagster"
    # Dagster's SQLite storage, with an event log that keeps its connections (lib/event_log.py)
    write_instance_config(home)
    # the unpartitioned ingest and catalog assets have no backfill policy beside the partitioned
    # assets' single-run one; Dagster's notice about choosing between them is noise here
    warnings.filterwarnings("ignore", message="Asset job bill_period materializes assets with varying")
    defs = build_defs(data_dir=str(root), as_of=as_of)
    job = defs.resolve_job_def("bill_period")
    freeze_long_lived()  # the imports and definitions (lib/gc_tuning.py)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        if last_partition_key and last_partition_key != partition_key:
            partition = {"tags": {
                "dagster/asset_partition_range_start": partition_key,
                "dagster/asset_partition_range_end": last_partition_key,
            }}
        else:
            partition = {"partition_key": partition_key}
        try:
            with warm_suite():
                result = job.execute_in_process(
                    **partition,
                    instance=instance,
                    raise_on_error=False,
                    # the run's full event log stays in the instance (`meterhouse ui`); the terminal gets warnings only
                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                )
        except sqlalchemy.exc.OperationalError as error:
            # the run history (SQLite) failed, e.g. a full disk: name the place, not only SQLite's words
            reason = str(error.orig)
            if "disk is full" in reason:
                reason = f"No space left on device ({reason})"
            raise RuntimeError(f"{home}: the run's history could not be written: {reason}") from error
        if not result.success:
            raise RuntimeError(_failure_reason(result))
        issued: list[str] = []
        held = 0
        for event in result.get_asset_materialization_events():
            materialization = event.materialization
            if materialization and materialization.asset_key == INVOICES:
                issued = list(materialization.metadata["numbers"].value)
                held = int(materialization.metadata["held"].value)
        return {"issued": issued, "held": held, "run_id": result.run_id}


def _failure_reason(result: dg.ExecuteInProcessResult) -> str:
    failed_checks = [
        f"{event.asset_check_evaluation_data.check_name} ({event.asset_check_evaluation_data.description})"
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and not event.asset_check_evaluation_data.passed
        and event.asset_check_evaluation_data.severity == dg.AssetCheckSeverity.ERROR
    ]
    if failed_checks:
        return "release gate failed, due invoices held: " + "; ".join(failed_checks)
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            message = error.message.strip().splitlines()[0] if error.message else error.cls_name
            # dg.Failure keeps its description in the error's message; keep the catalog's problem list
            if error.cause and error.cls_name != "Failure":
                message = error.cause.message.strip().splitlines()[0]
            return f"step {event.step_key} failed: {message}"
    return "billing run failed"
