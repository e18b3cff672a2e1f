"""Which notifications are due: derived on every run from the ledger, the catalog and usage.

Each event has a stable ``key``; ``billing.notifications`` remembers the keys already
handled, so deriving the same events again on a rerun sends nothing new.

| type | event | key |
| --- | --- | --- |
| new_invoice | an issued invoice | ``new_invoice:<invoice>`` |
| successful_payment | payment_status paid / external_paid | ``successful_payment:<invoice>`` |
| payment_failed | payment_status failed, once per failed attempt | ``payment_failed:<invoice>:<n>`` |
| subscription_created | ``start <= as_of`` | ``subscription_created:<subscription>`` |
| free_trial | the trial starts (``start <= as_of``, product has ``free_trial_days``) | ``free_trial:<subscription>`` |
| subscription_canceled | ``end <= as_of`` | ``subscription_canceled:<subscription>`` |
| subscription_expiration | ``end <= as_of`` and metadata ``end_reason: expired`` | ``subscription_expiration:<subscription>`` |
| quota_warning | open period usage >= p% (p < 100) of a bounded tier's ``up_to`` | ``quota:<sub>:<period start>:<metric>:<tier>:<p>`` |
| quota_tier_warning | the same at p = 100: the tier is used up, the next rate applies | as above |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from contracts.catalog import Catalog, catalog_dir_of, load_catalog
from dagster_project.lib.money import format_money, minor_units
from dagster_project.lib.safe_paths import UnsafePathError, child
from dagster_project.notifications.config import NotificationType


@dataclass
class Notification:
    key: str
    type: NotificationType
    event_at: datetime | None
    recipient: str | None
    context: dict[str, Any]
    subscription_id: str | None = None
    invoice_number: str | None = None
    period_start: datetime | None = None
    cc: list[str] = field(default_factory=list)
    attachments: list[Path] = field(default_factory=list)
    superseded: bool = False   # a higher quota threshold was crossed at the same time: record, don't send


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> list[dict]:
    result = connection.execute(sql, parameters or [])
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _table_exists(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchone()[0])


def _columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    return {row[0] for row in connection.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()}


def load_catalog_if_any(data_dir: Path) -> Catalog | None:
    """The catalog YAML (per-product ``notification_cc``, subscription metadata); None when the
    data dir has none. An invalid catalog raises: the catalog asset has failed the run already."""
    folder = catalog_dir_of(data_dir)
    if not folder.is_dir() or not any(folder.glob("*.y*ml")):
        return None
    return load_catalog(folder)


class _CatalogFacts:
    def __init__(self, catalog: Catalog | None):
        self.cc = {product.id: list(product.notification_cc) for product in (catalog.products if catalog else [])}
        self.metadata = {s.id: dict(s.metadata) for s in (catalog.subscriptions if catalog else [])}

    def cc_for(self, product_id: str | None) -> list[str]:
        return list(self.cc.get(product_id or "", []))

    def end_reason(self, subscription_id: str) -> str:
        reason = str(self.metadata.get(subscription_id, {}).get("end_reason", "canceled")).lower()
        return "expired" if reason in ("expired", "expiration", "expiry") else "canceled"


def _person(row: dict) -> dict:
    name = row.get("subscriber_name")
    email = row.get("email") or row.get("subscriber_email")
    return {"id": row.get("subscriber_id"), "name": name, "email": email, "greeting": name or email or "there"}


def _invoice_context(row: dict) -> dict:
    currency = row["currency"]
    return {
        "number": row["invoice_number"],
        "currency": currency,
        "total": format_money(Decimal(row["total"]), currency),
        "subtotal": format_money(Decimal(row["subtotal"]), currency),
        "period_start": row["period_start"],
        "period_end": row["period_end"],
        "issued_at": row["issued_at"],
        "payment_status": row["payment_status"],
        "payment_reference": row.get("payment_reference"),
        "failure_code": row.get("payment_failure_code"),
        "failure_message": row.get("payment_failure_message"),
        "paid_at": row.get("paid_at"),
        "payment": row.get("payment"),
    }


def invoice_notifications(
    connection: duckdb.DuckDBPyConnection, data_dir: Path, facts: _CatalogFacts, window_end: datetime | None
) -> list[Notification]:
    extra = _columns(connection, "marts", "invoices")
    optional = ", ".join(
        f"i.{name}" if name in extra else f"null as {name}"
        for name in ("payment_failure_code", "payment_failure_message", "paid_at")
    )
    attempts = _table_exists(connection, "billing", "payment_attempts")
    external = _table_exists(connection, "billing", "external_payments")
    failures = " + ".join([
        "(select count(*) from billing.payment_attempts as a where a.invoice_number = i.invoice_number"
        " and a.state in ('failed', 'requires_action'))" if attempts else "0",
        "(select count(*) from billing.external_payments as e where e.invoice_number = i.invoice_number"
        " and e.status = 'failed')" if external else "0",
    ])
    rows = _rows(
        connection,
        f"""
        select i.invoice_number, i.subscription_id, i.subscription_name, i.subscriber_id, i.subscriber_email,
               i.product_id, i.product_name, i.currency, i.subtotal, i.total, i.period_start, i.period_end,
               i.issued_at, i.payment_status, i.payment_reference, {optional},
               s.subscriber_name, s.email, p.payment, {failures} as failures
        from marts.invoices as i
        left join catalog.subscribers as s on s.subscriber_id = i.subscriber_id
        left join catalog.products as p on p.product_id = i.product_id
        where i.status = 'issued' and (cast(? as timestamp) is null or i.period_end <= ?)
        order by i.invoice_number
        """,
        [window_end, window_end],
    )
    found = []
    for row in rows:
        number = row["invoice_number"]
        person = _person(row)
        try:
            document = child(data_dir / "invoices", number, ".html")
        except UnsafePathError:
            document = None  # a number that could name a file elsewhere: no attachment, never a read
        common = {
            "subscriber": person,
            "subscription": {"id": row["subscription_id"], "name": row["subscription_name"] or row["subscription_id"]},
            "product": {"id": row["product_id"], "name": row["product_name"] or row["product_id"]},
            "invoice": _invoice_context(row),
        }
        base = {
            "subscription_id": row["subscription_id"], "invoice_number": number,
            "period_start": row["period_start"], "recipient": person["email"], "cc": facts.cc_for(row["product_id"]),
        }
        found.append(Notification(
            key=f"new_invoice:{number}", type=NotificationType.new_invoice, event_at=row["issued_at"],
            context=common, attachments=[document] if document and document.exists() else [], **base,
        ))
        if row["payment_status"] in ("paid", "external_paid"):
            found.append(Notification(
                key=f"successful_payment:{number}", type=NotificationType.successful_payment,
                event_at=row["paid_at"] or row["issued_at"], context=common, **base,
            ))
        elif row["payment_status"] == "failed":
            count = max(int(row["failures"] or 0), 1)
            found.append(Notification(
                key=f"payment_failed:{number}:{count}", type=NotificationType.payment_failed,
                event_at=row["issued_at"], context={**common, "failure_count": count}, **base,
            ))
    return found


def subscription_notifications(
    connection: duckdb.DuckDBPyConnection, facts: _CatalogFacts, as_of: datetime
) -> list[Notification]:
    rows = _rows(
        connection,
        """
        select sub.subscription_id, sub.subscription_name, sub.subscriber_id, sub.start_at, sub.end_at,
               s.subscriber_name, s.email,
               first_phase.product_id as first_product_id, fp.product_name as first_product_name,
               fp.free_trial_days,
               last_phase.product_id as last_product_id, lp.product_name as last_product_name
        from catalog.subscriptions as sub
        left join catalog.subscribers as s on s.subscriber_id = sub.subscriber_id
        left join catalog.subscription_phases as first_phase
            on first_phase.subscription_id = sub.subscription_id and first_phase.phase_number = 1
        left join catalog.products as fp on fp.product_id = first_phase.product_id
        left join catalog.subscription_phases as last_phase
            on last_phase.subscription_id = sub.subscription_id
            and last_phase.phase_number = (
                select max(phase_number) from catalog.subscription_phases as x
                where x.subscription_id = sub.subscription_id
            )
        left join catalog.products as lp on lp.product_id = last_phase.product_id
        where sub.start_at <= ?
        order by sub.subscription_id
        """,
        [as_of],
    )
    found = []
    for row in rows:
        subscription_id = row["subscription_id"]
        person = _person(row)
        subscription = {"id": subscription_id, "name": row["subscription_name"] or subscription_id,
                        "start_at": row["start_at"],
                        "end_at": row["end_at"]}
        first_product = {"id": row["first_product_id"], "name": row["first_product_name"] or row["first_product_id"]}
        base = {"subscription_id": subscription_id, "recipient": person["email"]}
        context = {"subscriber": person, "subscription": subscription, "product": first_product}
        found.append(Notification(
            key=f"subscription_created:{subscription_id}", type=NotificationType.subscription_created,
            event_at=row["start_at"], context=context, cc=facts.cc_for(row["first_product_id"]), **base,
        ))
        trial_days = int(row["free_trial_days"] or 0)
        if trial_days > 0:
            trial_end = row["start_at"] + timedelta(days=trial_days)
            found.append(Notification(
                key=f"free_trial:{subscription_id}", type=NotificationType.free_trial, event_at=row["start_at"],
                context={**context, "trial": {"days": trial_days, "start_at": row["start_at"], "end_at": trial_end}},
                cc=facts.cc_for(row["first_product_id"]), **base,
            ))
        if row["end_at"] is not None and row["end_at"] <= as_of:
            kind = (NotificationType.subscription_expiration if facts.end_reason(subscription_id) == "expired"
                    else NotificationType.subscription_canceled)
            last_product = {"id": row["last_product_id"], "name": row["last_product_name"] or row["last_product_id"]}
            found.append(Notification(
                key=f"{kind.value}:{subscription_id}", type=kind, event_at=row["end_at"],
                context={**context, "product": last_product}, cc=facts.cc_for(row["last_product_id"]), **base,
            ))
    return found


def quota_notifications(
    connection: duckdb.DuckDBPyConnection, facts: _CatalogFacts, as_of: datetime
) -> list[Notification]:
    """Thresholds crossed in the period open at ``as_of`` (``marts.usage_by_period``, breakdown
    'total'): for every bounded tier with ``notify_at_percent``, quantity >= up_to * p / 100.
    Per subscription, period and metric only the highest threshold crossed is sent; lower
    ones crossed in the same run are recorded as superseded so they never arrive late."""
    if not _table_exists(connection, "marts", "usage_by_period"):
        return []
    rows = _rows(
        connection,
        """
        select u.subscription_id, u.product_id, u.period_start, u.period_end, u.metric, u.quantity,
               t.tier_position, t.tier_name, t.upper_bound, t.unit_rate, t.notify_at_percent,
               nt.tier_name as next_tier_name, nt.unit_rate as next_unit_rate,
               p.product_name, p.currency, sub.subscription_name, sub.subscriber_id, s.subscriber_name, s.email
        from marts.usage_by_period as u
        join catalog.tiers as t
            on t.product_id = u.product_id and t.metric_name = u.metric
            and t.upper_bound is not null and t.notify_at_percent is not null
        left join catalog.tiers as nt
            on nt.product_id = t.product_id and nt.metric_name = t.metric_name
            and nt.tier_position = t.tier_position + 1
        left join catalog.products as p on p.product_id = u.product_id
        left join catalog.subscriptions as sub on sub.subscription_id = u.subscription_id
        left join catalog.subscribers as s on s.subscriber_id = sub.subscriber_id
        where u.breakdown = 'total' and u.period_start <= ? and ? < u.period_end
        order by u.subscription_id, u.period_start, u.metric, t.tier_position
        """,
        [as_of, as_of],
    )
    crossed: dict[tuple, list[Notification]] = {}
    for row in rows:
        quantity = Decimal(row["quantity"] or 0)
        upper = Decimal(row["upper_bound"])
        for percent in sorted(json.loads(row["notify_at_percent"])):
            threshold = upper * Decimal(percent) / 100
            if quantity < threshold:
                continue
            kind = NotificationType.quota_tier_warning if percent >= 100 else NotificationType.quota_warning
            start = row["period_start"]
            person = _person(row)
            currency = row["currency"] or "USD"
            context = {
                "subscriber": person,
                "subscription": {"id": row["subscription_id"],
                                 "name": row["subscription_name"] or row["subscription_id"]},
                "product": {"id": row["product_id"], "name": row["product_name"] or row["product_id"]},
                "quota": {
                    "metric": row["metric"], "tier_name": row["tier_name"], "percent": percent,
                    "quantity": _plain(quantity), "threshold": _plain(threshold), "up_to": _plain(upper),
                    "used_percent": int(quantity * 100 / upper) if upper else 0,
                    "unit_rate": _rate(Decimal(row["unit_rate"]), currency), "currency": currency,
                    "next_tier_name": row["next_tier_name"],
                    "next_unit_rate": _rate(Decimal(row["next_unit_rate"]), currency)
                    if row["next_unit_rate"] is not None else None,
                    "period_start": start, "period_end": row["period_end"],
                },
            }
            notification = Notification(
                key=f"quota:{row['subscription_id']}:{start.isoformat()}:{row['metric']}:{row['tier_position']}:{percent}",
                type=kind, event_at=as_of, recipient=person["email"], context=context,
                subscription_id=row["subscription_id"], period_start=start, cc=facts.cc_for(row["product_id"]),
            )
            crossed.setdefault((row["subscription_id"], start, row["metric"]), []).append(notification)
    found = []
    for notifications in crossed.values():
        # rows come in tier order and percents ascending: the last one is the highest threshold
        for notification in notifications[:-1]:
            notification.superseded = True
        found.extend(notifications)
    return found


def _plain(value: Decimal) -> str:
    """A quantity as people write it: 800, 1,000.5 (no exponent, no trailing zeros)."""
    normalized = value.normalize()
    if normalized == normalized.to_integral():
        return f"{normalized.to_integral():,f}"
    return f"{normalized:,f}"


def _rate(value: Decimal, currency: str) -> str:
    """A unit rate with at least the currency's minor units: 1.4 -> 1.40, 0.0015 -> 0.0015."""
    whole, _, fraction = format(value.normalize(), "f").partition(".")
    fraction = fraction.ljust(minor_units(currency), "0")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "")


def due_notifications(
    connection: duckdb.DuckDBPyConnection,
    data_dir: Path,
    as_of: datetime,
    *,
    window_end: datetime | None = None,
    catalog: Catalog | None = None,
) -> list[Notification]:
    facts = _CatalogFacts(catalog if catalog is not None else load_catalog_if_any(data_dir))
    return [
        *invoice_notifications(connection, data_dir, facts, window_end),
        *subscription_notifications(connection, facts, as_of),
        *quota_notifications(connection, facts, as_of),
    ]
