"""Quota and invoice-preview lookups, for the CLI and for embedding in a product.

They read the published Parquet snapshot (``snapshot.py``), never ``warehouse.duckdb``, so
they answer while a billing run holds the writer lock. The numbers are those of the last
successful run: every answer carries ``data_as_of`` (that run's clock).

    from dagster_project.reporting.lookups import quota, preview
    answer = quota(Path("data"), "acme-docsum")            # the open period at the data's clock
    answer["metrics"][0]["tiers"][0]["remaining"]           # Decimal, or None when unbounded
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from dagster_project.lib.money import round_money
from dagster_project.reporting.snapshot import current_snapshot, manifest, open_snapshot


class NotFound(LookupError):
    """No such subscription, or no period of it holds the instant asked for."""


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> list[dict]:
    result = connection.execute(sql, parameters or [])
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def trimmed(value: Decimal | None) -> Decimal | None:
    """A quantity without the warehouse's trailing zeros (``8.0000000000`` -> ``8``), exactly."""
    if value is None:
        return None
    text = format(value, "f")
    return Decimal(text.rstrip("0").rstrip(".") if "." in text else text)


def tier_consumption(quantity: Decimal, tier_mode: str, tiers: list[dict]) -> list[dict]:
    """Per tier: the quantity it holds, what is left in it, whether the quantity is in it now.

    graduated: tier i holds the part of the quantity in (lower, upper]; volume: the tier the
    whole quantity falls in holds all of it (SPEC §3.4). ``remaining`` is None for the
    unbounded last tier (and, in volume mode, for tiers the quantity is not in).
    """
    out = []
    for tier in tiers:
        lower, upper = tier["lower_bound"], tier["upper_bound"]
        entered = quantity > lower
        current = entered and (upper is None or quantity <= upper)
        if tier_mode == "volume":
            consumed = quantity if current else Decimal(0)
            remaining = (upper - quantity) if current and upper is not None else None
        else:
            top = quantity if upper is None else min(quantity, upper)
            consumed = max(Decimal(0), top - lower) if entered else Decimal(0)
            remaining = None if upper is None else (upper - lower) - consumed
        out.append({
            "tier": tier["tier_name"], "position": tier["tier_position"], "lower_bound": lower, "upper_bound": upper,
            "unit_rate": tier["unit_rate"], "fixed_fee": tier["fixed_fee"], "consumed": consumed,
            "remaining": remaining, "current": current,
        })
    return out


def _draft_at(connection: duckdb.DuckDBPyConnection, subscription_id: str, at: datetime | None, as_of: datetime) -> dict:
    known = connection.execute(
        "select count(*) from catalog.subscriptions where subscription_id = ?", [subscription_id]
    ).fetchone()[0]
    if not known:
        raise NotFound(f"no subscription {subscription_id!r} in the catalog of the last run")
    moment = at or as_of
    found = _rows(
        connection,
        """
        select d.*, coalesce(i.status, case when d.due_at <= ? then 'due' else 'open' end) as ledger_status,
               i.invoice_number
        from marts.invoice_drafts as d
        left join marts.invoices as i on i.draft_key = d.draft_key and i.document_type = 'invoice'
        where d.subscription_id = ? and d.period_start <= ? and d.period_end > ?
        order by d.period_start desc limit 1
        """,
        [as_of, subscription_id, moment, moment],
    )
    if not found:
        raise NotFound(
            f"no period of {subscription_id!r} holds {moment.isoformat()} in the data as of {as_of.isoformat()}"
        )
    return found[0]


def _clock(connection: duckdb.DuckDBPyConnection) -> datetime:
    return connection.execute("select max(as_of) from reporting.run_clock").fetchone()[0]


QUOTA_TABLES = (
    "reporting.run_clock", "catalog.subscriptions", "catalog.metrics", "catalog.tiers", "marts.invoice_drafts",
    "marts.invoices", "marts.usage_by_period", "marts.invoice_line_drafts", "marts.budget_pacing",
)


def quota(data_dir: Path, subscription_id: str, at: datetime | None = None) -> dict[str, Any]:
    """Consumed quantity per metric and tier, what is left in each tier, and the amount so far
    of the period holding ``at`` (default: the last run's clock): the open period's dry run."""
    snapshot = current_snapshot(data_dir)
    with open_snapshot(snapshot=snapshot, tables=QUOTA_TABLES) as connection:
        as_of = _clock(connection)
        draft = _draft_at(connection, subscription_id, at, as_of)
        key = draft["draft_key"]
        usage = _rows(
            connection,
            """
            select u.metric, u.aggregation, m.tier_mode, u.quantity, u.event_count, u.trial_quantity,
                   u.trial_event_count
            from marts.usage_by_period as u
            join catalog.metrics as m on m.product_id = u.product_id and m.metric_name = u.metric
            where u.draft_key = ? and u.breakdown = 'total'
            order by u.metric_position, u.metric
            """,
            [key],
        )
        tiers = _rows(
            connection,
            "select * from catalog.tiers where product_id = ? order by metric_name, tier_position",
            [draft["product_id"]],
        )
        lines = _rows(
            connection,
            "select * from marts.invoice_line_drafts where draft_key = ? order by line_number",
            [key],
        )
        pacing = {
            row["metric"]: row
            for row in _rows(connection, "select * from marts.budget_pacing where draft_key = ?", [key])
        } if _has(connection, "marts", "budget_pacing") else {}
    currency = draft["currency"]
    metrics = []
    for row in usage:
        own_tiers = [tier for tier in tiers if tier["metric_name"] == row["metric"]]
        consumption = tier_consumption(row["quantity"], row["tier_mode"], own_tiers)
        metric_lines = [line for line in lines if line["kind"] == "usage" and line["metric"] == row["metric"]]
        for tier in consumption:
            tier["amount"] = round_money(sum(
                (line["amount"] for line in metric_lines
                 if line["tier_name"] in (tier["tier"], f"{tier['tier']} (fixed fee)")),
                start=Decimal(0),
            ), currency)
            for name in ("lower_bound", "upper_bound", "unit_rate", "fixed_fee", "consumed", "remaining"):
                tier[name] = trimmed(tier[name])
        projection = pacing.get(row["metric"])
        metrics.append({
            **row,
            "quantity": trimmed(row["quantity"]),
            "trial_quantity": trimmed(row["trial_quantity"]),
            "amount": round_money(sum((line["amount"] for line in metric_lines), start=Decimal(0)), currency),
            "tiers": consumption,
            "projected_quantity_linear": projection and trimmed(projection["projected_quantity_linear"]),
            "projected_quantity_recent": projection and trimmed(projection["projected_quantity_recent"]),
            "projected_amount_linear": projection and round_money(projection["projected_amount_linear"], currency),
            "projected_amount_recent": projection and round_money(projection["projected_amount_recent"], currency),
        })
    info = manifest(snapshot)
    return {
        "subscription_id": subscription_id,
        "product_id": draft["product_id"],
        "product_name": draft["product_name"],
        "currency": draft["currency"],
        "period_start": draft["period_start"],
        "period_end": draft["period_end"],
        "status": draft["ledger_status"],
        "invoice_number": draft["invoice_number"],
        "at": at or as_of,
        "data_as_of": as_of,
        "published_at": info.get("published_at"),
        "fees": [
            {"kind": line["kind"], "description": line["description"], "amount": round_money(line["amount"], currency)}
            for line in lines if line["kind"] in ("setup", "recurring")
        ],
        "metrics": metrics,
        "amount_so_far": round_money(draft["total"], currency),
    }


def preview(data_dir: Path, subscription_id: str, at: datetime | None = None) -> dict[str, Any]:
    """The would-be invoice of the period holding ``at``: the draft and its lines as rated by
    the last run (nothing is numbered or stored)."""
    snapshot = current_snapshot(data_dir)
    with open_snapshot(snapshot=snapshot, tables=QUOTA_TABLES) as connection:
        as_of = _clock(connection)
        draft = _draft_at(connection, subscription_id, at, as_of)
        lines = _rows(
            connection,
            "select * from marts.invoice_line_drafts where draft_key = ? order by line_number",
            [draft["draft_key"]],
        )
        credentials = _rows(
            connection,
            """
            select metric, credential_name, quantity, event_count,
                   coalesce(trial_quantity, 0) as trial_quantity, coalesce(trial_event_count, 0) as trial_event_count
            from marts.usage_by_period
            where draft_key = ? and breakdown = 'credential'
            order by metric_position, metric, credential_name
            """,
            [draft["draft_key"]],
        )
    return {"draft": draft, "lines": lines, "credentials": credentials, "data_as_of": as_of}


def render_preview_html(data_dir: Path, answer: dict[str, Any]) -> str:
    """The preview through the invoice document's own template, marked as a preview."""
    from dagster_project.invoicing import render

    draft = answer["draft"]
    invoice = {
        **draft,
        "invoice_number": f"PREVIEW {draft['subscription_id']}",
        "issued_at": answer["data_as_of"],
    }
    lines = [{**line, "line_type": line.get("line_type")} for line in answer["lines"]]
    model = {
        "invoice": invoice,
        "sections": render._sections(lines),
        "credentials": answer["credentials"],
        "credentials_have_trial": any(row["trial_event_count"] for row in answer["credentials"]),
    }
    html = render._environment().get_template("invoice.html.j2").render(**model, seller=render.branding(data_dir))
    banner = (
        '<div style="background:#fff3cd;border:1px solid #e0c060;padding:8px 12px;margin:8px;font:14px sans-serif">'
        f"Preview, not an invoice: usage rated up to {answer['data_as_of']:%Y-%m-%d %H:%M} UTC; "
        "the period is still open and nothing was numbered or issued.</div>"
    )
    return html.replace("<body>", "<body>" + banner, 1)


def _has(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchone()[0])
