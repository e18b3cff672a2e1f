"""Catalog: validated YAML pricing and customers -> catalog.* dimension tables."""

import dagster as dg

from contracts.catalog import CatalogError
from dagster_project.catalog.loader import load_catalog_into
from dagster_project.resources import WarehouseResource

CATALOG_TABLES = (
    "products", "metrics", "metric_filters", "tiers", "organizations", "subscribers",
    "subscriptions", "subscription_phases", "credentials", "model_prices", "subscription_periods",
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(dg.AssetKey(["catalog", table]), group_name="catalog", kinds={"duckdb", "python"})
        for table in CATALOG_TABLES
    ],
)
def catalog_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Validate every catalog file and replace the dimension tables in one transaction.

    An invalid catalog fails the run here, before anything is rated or issued.
    """
    try:
        with warehouse.connect() as connection:
            summary = load_catalog_into(connection, warehouse.root, warehouse.clock())
    except CatalogError as error:
        # one line: the CLI prints the first line of a failure, and it must name file and field
        raise dg.Failure(description="invalid catalog: " + "; ".join(error.problems),
                         metadata={"problems": dg.MetadataValue.json(error.problems)}) from error
    context.log.info(f"catalog: {summary.products} products, {summary.subscriptions} subscriptions")
    for table in CATALOG_TABLES:
        metadata = {"products": summary.products, "subscriptions": summary.subscriptions} if table == "products" else {}
        if table == "subscription_periods":
            metadata = {"drafts": summary.drafts}
        yield dg.MaterializeResult(asset_key=dg.AssetKey(["catalog", table]), metadata=metadata)


defs = dg.Definitions(assets=[catalog_tables])
