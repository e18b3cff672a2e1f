"""Schedules: one per invoicing cadence the catalog uses.

Every run bills the *monthly* partition holding the tick and issues whatever is due by then,
so a 5-minute product is closed, invoiced and its counters reset every five minutes (the
tutorial's test periods) without a partition per 5-minute period (docs/DECISIONS.md).
Schedules for cadences the catalog does not use skip with a reason.
"""

from __future__ import annotations

import dagster as dg

from contracts.catalog import CatalogError, catalog_dir_of, load_catalog
from dagster_project import settings
from dagster_project.partitions import monthly_billing_periods

# cadence -> (cron, the product period units it serves)
CADENCES = {
    "five_minute_billing": ("*/5 * * * *", {"minute"}),
    "daily_billing": ("15 0 * * *", {"day"}),
}


def catalog_units() -> set[str]:
    """Period units of the catalog's products; empty when the catalog is missing or invalid
    (the billing run itself reports catalog errors)."""
    try:
        catalog = load_catalog(catalog_dir_of(settings.data_dir()))
    except (CatalogError, OSError):
        return set()
    return {product.invoicing_period.unit.value for product in catalog.products}


def cadence_schedule(name: str, cron: str, units: set[str], job: dg.UnresolvedAssetJobDefinition):
    @dg.schedule(name=name, cron_schedule=cron, job=job, execution_timezone="UTC")
    def _schedule(context: dg.ScheduleEvaluationContext):
        if not units & catalog_units():
            return dg.SkipReason(f"no product in the catalog is invoiced per {'/'.join(sorted(units))}")
        moment = context.scheduled_execution_time
        partition_key = monthly_billing_periods.get_partition_key_for_timestamp(moment.timestamp())
        return dg.RunRequest(run_key=f"{name}-{moment:%Y%m%dT%H%M}", partition_key=partition_key)

    return _schedule


def build_schedules(job: dg.UnresolvedAssetJobDefinition) -> list:
    # On the 1st of each month at 01:00 UTC, bill the month that just ended (monthly and yearly products).
    monthly = dg.build_schedule_from_partitioned_job(job, hour_of_day=1)
    return [monthly, *(cadence_schedule(name, cron, units, job) for name, (cron, units) in CADENCES.items())]
