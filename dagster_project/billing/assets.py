"""Billing: the dbt project rates usage into drafts; invoked once per run through dagster-dbt."""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from dagster_project import settings, warehouse
from dagster_project.billing import dbt_inprocess, dbt_selection, engines, rating_state
from dagster_project.lib.faults import fault_point
from dagster_project.partitions import monthly_billing_periods
from dagster_project.resources import WarehouseResource


def manifest_outdated(project: DbtProject) -> bool:
    """Whether a SQL or yml file of the dbt project is newer than its manifest: the rule by which
    `make install` parses it again (Makefile)."""
    try:
        parsed_at = project.manifest_path.stat().st_mtime
    except FileNotFoundError:
        return True
    return any(
        path.stat().st_mtime > parsed_at
        for pattern in ("*.sql", "*.yml")
        for path in project.project_dir.rglob(pattern)
        if path.relative_to(project.project_dir).parts[0] not in {"target", "logs"}
    )


dbt_project = DbtProject(project_dir=settings.DBT_PROJECT_DIR, profiles_dir=settings.DBT_PROJECT_DIR)
# `dagster dev` (`meterhouse ui`) parses the project on load, only when a file is newer than the manifest:
# a parse renews the manifest's id, and so every kept selection (billing/dbt_selection.py), while other
# processes may be reading the manifest. Everywhere else `make` runs `dbt parse` at build time.
if os.getenv("DAGSTER_IS_DEV_CLI") and manifest_outdated(dbt_project):
    dbt_project.prepare_if_dev()


class MeterhouseTranslator(DagsterDbtTranslator):
    """Asset keys are the relations' own names (``marts/usage_by_period``, ``raw/events``),
    so the Python assets that write sources and the dbt sources meet in one graph."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        relation = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        return dg.AssetKey([dbt_resource_props["schema"], relation])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "billing"


dbt_selection.use_kept_selections()  # no dbt import needed for them (billing/dbt_selection.py)


@dbt_assets(
    manifest=dbt_selection.manifest_for_definitions(dbt_project.manifest_path),
    project=dbt_project,
    partitions_def=monthly_billing_periods,
    dagster_dbt_translator=MeterhouseTranslator(),
    # the finance marts read the invoice ledger: built after invoicing (dagster_project/reporting)
    select=dbt_selection.RATING.select,
    exclude=dbt_selection.RATING.exclude,
)
def meterhouse_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    """One `dbt build` for the whole selection: models and their tests in a single invocation."""
    # dbt finds the warehouse through its profile's env_var
    os.environ[settings.WAREHOUSE_ENV] = str(warehouse_path_of(warehouse))
    # Every run re-rates every period (late events re-rate whole periods), so the partition needs no
    # --vars; the event-level table only adds the loads it lacks (billing/rating_state.py).
    # dbt's artifacts and log go to the data dir, not the shared project folder.
    target = warehouse.root / ".dbt" / "target"
    fault_point("rating.before_dbt")
    # dbt unit tests check the SQL, not the data: they run in `make test` (tests/dbt), not on every bill
    build = ["build", "--exclude-resource-type", "unit_test"]
    # engine (issue 9, billing/engines.py): METERHOUSE_ENGINE=spark lands raw + catalog as Parquet,
    # rates on dbt's `spark` target and publishes the marts back into DuckDB; duckdb changes nothing
    engine = engines.prepare(warehouse.root)
    if engine.engine == "duckdb":
        with warehouse.connect() as connection:
            fingerprint = rating_state.prepare(connection)
        # in process: no dbt start-up or parse per run (billing/dbt_inprocess.py)
        yield from dbt_inprocess.stream_build(context, build, target_path=target)
        with warehouse.connect() as connection:
            rating_state.record(connection, fingerprint, whole_rating=not context.is_subset)
    else:
        yield from dbt.cli([*build, *engine.dbt_args()], context=context, target_path=engine.target_path()).stream()
    engine.publish()
    fault_point("rating.after_dbt")


def warehouse_path_of(resource: WarehouseResource):
    return warehouse.warehouse_path(resource.root)


defs = dg.Definitions(assets=[meterhouse_dbt_models])
