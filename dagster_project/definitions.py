"""All of Meterhouse in one ``Definitions``: each domain module owns its assets."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from dagster_project import settings
from dagster_project.billing import assets as billing
from dagster_project.catalog import assets as catalog
from dagster_project.ingest import assets as ingest
from dagster_project.invoicing import assets as invoicing
from dagster_project.notifications import assets as notifications
from dagster_project.partitions import monthly_billing_periods
from dagster_project.payments import assets as payments
from dagster_project.quality import checks as quality
from dagster_project.reporting import assets as reporting
from dagster_project.resources import WarehouseResource
from dagster_project.schedules import build_schedules

bill_period_job = dg.define_asset_job(
    name="bill_period",
    selection=dg.AssetSelection.all(),
    partitions_def=monthly_billing_periods,
    description="Ingest new files, load the catalog, rate with dbt, issue the period's due invoices, "
    "take payments and send notifications.",
)



def build_defs(data_dir: str | None = None, as_of: str = "") -> dg.Definitions:
    resources = {
        "warehouse": WarehouseResource(data_dir=str(settings.data_dir(data_dir)), as_of=as_of),
        # the dbt beside this interpreter: .venv/bin is not necessarily on PATH
        "dbt": DbtCliResource(project_dir=billing.dbt_project, dbt_executable=str(Path(sys.executable).parent / "dbt")),
        "stripe": payments.stripe_resource_from_env(),
    }
    return dg.Definitions.merge(
        ingest.defs,
        catalog.defs,
        billing.defs,
        invoicing.defs,
        payments.defs,
        notifications.defs,
        quality.defs,
        reporting.defs,
        dg.Definitions(jobs=[bill_period_job], schedules=build_schedules(bill_period_job), resources=resources),
    )


defs = build_defs()
