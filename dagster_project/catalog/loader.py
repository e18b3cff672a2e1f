"""Load the validated catalog and model prices into the ``catalog.*`` dimension tables.

The tables are replaced whole in one transaction: a catalog is a document, and a partial
update would rate some subscriptions on old prices and some on new ones.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb

from contracts.catalog import Catalog, CatalogError, catalog_dir_of, load_catalog, overlapping_subscriptions
from dagster_project import warehouse
from dagster_project.lib import arrow_arrays
from dagster_project.lib.faults import fault_point
from dagster_project.lib.invoice_schedule import phases_of, subscription_period_rows
from dagster_project.lib.periods import as_utc_naive

MODEL_PRICE_COLUMNS = (
    "provider", "model", "input_per_million", "output_per_million",
    "cache_read_per_million", "cache_creation_per_million", "valid_from",
)


@dataclass(frozen=True)
class CatalogSummary:
    products: int
    subscriptions: int
    drafts: int
    model_prices: int


def read_model_prices(path: Path) -> list[dict]:
    """``landing/model_prices.csv`` (SPEC §1.3); errors name the file, line and column."""
    if not path.exists():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in MODEL_PRICE_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError([f"{path.name}: line 1: missing column(s) {', '.join(missing)}"])
        problems = []
        for line_number, record in enumerate(reader, start=2):
            try:
                row = {"organization_id": None, "provider": record["provider"].strip(), "model": record["model"].strip()}
                for column in MODEL_PRICE_COLUMNS[2:6]:
                    row[column] = _price(column, record[column])
                row["valid_from"] = as_utc_naive(datetime.fromisoformat(record["valid_from"].strip().replace("Z", "+00:00")))
            except (InvalidOperation, ValueError, AttributeError) as exc:
                problems.append(f"{path.name}: line {line_number}: {exc}")
                continue
            rows.append(row)
        if problems:
            raise CatalogError(problems)
    return rows


def _price(column: str, text: str | None) -> Decimal:
    """A per-million price that fits ``decimal(17,12)``: >= 0, < 100,000, at most 12 decimals."""
    try:
        value = Decimal((text or "0").strip())
    except InvalidOperation:
        raise ValueError(f"{column}: {text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0 or value >= 100_000 or value.as_tuple().exponent < -12:
        raise ValueError(f"{column}: {text!r} must be >= 0 and < 100000 with at most 12 decimals")
    return value


def _with_validity(prices: list[dict]) -> list[dict]:
    """A price is valid until the next valid_from of the same (organization, provider, model)."""
    ordered = sorted(prices, key=lambda p: (p["organization_id"] or "", p["provider"], p["model"], p["valid_from"]))
    for current, following in zip(ordered, [*ordered[1:], None], strict=False):
        same = following is not None and all(
            current[key] == following[key] for key in ("organization_id", "provider", "model")
        )
        current["valid_to"] = following["valid_from"] if same else None
    return ordered


def _catalog_rows(catalog: Catalog, as_of: datetime, list_prices: list[dict]) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {name: [] for name in (
        "products", "metrics", "metric_filters", "tiers", "organizations", "subscribers",
        "subscriptions", "subscription_phases", "credentials", "model_prices", "subscription_periods",
    )}
    for product in catalog.products:
        tables["products"].append({
            "product_id": product.id, "product_name": product.name, "currency": product.currency,
            "minor_units": product.minor_units, "recurring_charge": product.recurring_charge,
            "period_unit": product.invoicing_period.unit.value, "period_every": product.invoicing_period.every,
            "billing_anchor": product.billing_anchor, "invoice_schedule": product.invoice_schedule,
            "payment": product.payment, "setup_fee": product.setup_fee,
            "free_trial_days": product.free_trial_days, "grace_period_hours": product.grace_period_hours,
        })
        for position, metric in enumerate(product.metrics, start=1):
            tables["metrics"].append({
                "product_id": product.id, "metric_name": metric.name, "metric_position": position,
                "element": metric.element, "aggregation": metric.aggregation,
                "aggregation_field": metric.aggregation_field,
                "match_value": None if metric.match_value is None else _text(metric.match_value),
                "tier_mode": metric.tier_mode,
            })
            for field, allowed in (metric.filter or {}).items():
                for value in allowed:
                    tables["metric_filters"].append({
                        "product_id": product.id, "metric_name": metric.name, "field": field,
                        "allowed_value": _text(value),
                    })
            lower = Decimal(0)
            for position_in_tiers, tier in enumerate(metric.tiers, start=1):
                tables["tiers"].append({
                    "product_id": product.id, "metric_name": metric.name, "tier_position": position_in_tiers,
                    "tier_name": tier.name, "lower_bound": lower, "upper_bound": tier.up_to,
                    "unit_rate": tier.unit_rate, "fixed_fee": tier.fixed_fee,
                    "notify_at_percent": json.dumps(metric.notify_at_percent) if metric.notify_at_percent else None,
                })
                lower = tier.up_to if tier.up_to is not None else lower
    for organization in catalog.organizations:
        tables["organizations"].append({"organization_id": organization.id, "organization_name": organization.name})
        for override in organization.model_price_overrides:
            tables["model_prices"].append({
                "organization_id": organization.id, "provider": override.provider, "model": override.model,
                "input_per_million": override.input_per_million, "output_per_million": override.output_per_million,
                "cache_read_per_million": override.cache_read_per_million,
                "cache_creation_per_million": override.cache_creation_per_million,
                "valid_from": as_utc_naive(override.valid_from) if override.valid_from else datetime(1970, 1, 1),
            })
    tables["model_prices"] = _with_validity(tables["model_prices"] + list_prices)
    for subscriber in catalog.subscribers:
        tables["subscribers"].append({
            "subscriber_id": subscriber.id, "subscriber_name": subscriber.name, "email": subscriber.email,
            "organization_id": subscriber.organization, "stripe_customer_id": subscriber.stripe_customer_id,
        })
    for subscription in catalog.subscriptions:
        tables["subscriptions"].append({
            "subscription_id": subscription.id, "subscription_name": subscription.name or subscription.id,
            "subscriber_id": subscription.subscriber, "start_at": as_utc_naive(subscription.start),
            "end_at": as_utc_naive(subscription.end) if subscription.end else None,
        })
        for phase in phases_of(subscription, catalog):
            tables["subscription_phases"].append({
                "subscription_id": subscription.id, "phase_number": phase.number, "product_id": phase.product.id,
                "phase_start_at": phase.start, "phase_end_at": phase.end,
            })
        for credential in subscription.credentials:
            tables["credentials"].append({
                "subscription_id": subscription.id, "credential_name": credential.name,
                "credential_value": credential.value,
            })
    tables["subscription_periods"] = subscription_period_rows(catalog, as_of)
    return tables


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _replace_table(connection: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    # the definition too: a warehouse made before a key or check was added gets it with the next catalog
    connection.execute(f"drop table if exists catalog.{table}")
    connection.execute(warehouse.catalog_table_ddl(table))
    columns = [row[1] for row in connection.execute(f"pragma table_info('catalog.{table}')").fetchall()]
    if rows:
        # through Arrow: executemany is row-at-a-time and subscription_periods can be large. As
        # texts, each cast to its column's type on insert (lib/arrow_arrays.py: no pandas import)
        batch = arrow_arrays.text_table(rows, columns)
        # columns are in the table's own order; no registered view to clean up if the insert fails
        connection.from_arrow(batch).insert_into(f"catalog.{table}")


def load_catalog_into(connection: duckdb.DuckDBPyConnection, data_dir: Path, as_of: datetime) -> CatalogSummary:
    catalog = load_catalog(catalog_dir_of(data_dir))
    overlaps = overlapping_subscriptions(catalog)
    if overlaps:
        raise CatalogError([f"catalog: subscriptions: {problem}" for problem in overlaps])
    list_prices = read_model_prices(data_dir / "landing" / "model_prices.csv")
    tables = _catalog_rows(catalog, as_of, list_prices)
    connection.execute("begin transaction")
    try:
        for table, rows in tables.items():
            _replace_table(connection, table, rows)
        fault_point("catalog.before_commit")
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    return CatalogSummary(
        products=len(catalog.products), subscriptions=len(catalog.subscriptions),
        drafts=len(tables["subscription_periods"]), model_prices=len(tables["model_prices"]),
    )
