"""The finance dashboard: one static, self-contained HTML page per data dir.

Read from the published snapshot (never the warehouse), drawn with Plotly, plotly.js inlined
once, so the page opens from disk with no server and no network. Money stays ``Decimal`` until
the chart boundary, where Plotly needs floats; tables print the exact amounts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import duckdb
import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, select_autoescape
from plotly.offline import get_plotlyjs

from dagster_project import settings
from dagster_project.reporting.lookups import tier_consumption
from dagster_project.reporting.snapshot import current_snapshot, manifest, open_snapshot

TEMPLATES = settings.PROJECT_ROOT / "dashboards" / "templates"
PALETTE = {"revenue": "#2563eb", "cost": "#f97316", "margin": "#16a34a", "pending": "#93c5fd",
           "unbilled": "#dc2626", "trial": "#a855f7", "grid": "#e5e7eb", "ink": "#111827"}
TIER_COLOURS = ["#1d4ed8", "#3b82f6", "#60a5fa", "#93c5fd", "#bfdbfe", "#dbeafe"]
ZERO = Decimal(0)


def dashboards_dir(data_dir: Path) -> Path:
    return data_dir / "dashboards"


@dataclass
class DashboardResult:
    path: Path
    headline: dict[str, Any]
    customers: list[dict] = field(default_factory=list)

    def metadata(self) -> dict:
        import dagster as dg

        preview = [
            {"organization": row["organization"], "currency": row["currency"], "revenue": money(row["revenue"]),
             "cost_usd": money(row["provider_cost_usd"]), "margin_usd": money(row["margin"]),
             "margin_pct": percent(row["margin_pct"])}
            for row in self.customers[:10]
        ]
        table = "| Organization | Currency | Revenue | Cost (USD) | Margin (USD) | Margin % |\n|---|---|---:|---:|---:|---:|\n"
        table += "".join(
            f"| {r['organization']} | {r['currency']} | {r['revenue']} | {r['cost_usd']} | {r['margin_usd']} |"
            f" {r['margin_pct']} |\n" for r in preview
        )
        numbers = {key: (float(value) if isinstance(value, Decimal) else value) for key, value in self.headline.items()}
        return {
            "path": dg.MetadataValue.path(str(self.path)),
            "url": dg.MetadataValue.url(self.path.resolve().as_uri()),
            **{f"headline/{key}": value for key, value in numbers.items() if value is not None},
            "margin_by_customer": dg.MetadataValue.md(table if preview else "_no invoiced revenue yet_"),
        }


# --- formatting ---------------------------------------------------------------------------


def money(value: Decimal | None, places: int = 2) -> str:
    if value is None:
        return "–"
    quantum = Decimal(1).scaleb(-places)
    return f"{Decimal(value).quantize(quantum, rounding=ROUND_HALF_EVEN):,.{places}f}"


def percent(value: Decimal | None) -> str:
    return "–" if value is None else f"{(Decimal(value) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)} %"


def quantity(value: Decimal | None) -> str:
    if value is None:
        return "–"
    text = f"{Decimal(value).normalize():,f}"
    return text


def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    environment.filters.update(money=money, percent=percent, quantity=quantity)
    return environment


def _figure_html(figure: go.Figure, div_id: str) -> str:
    figure.update_layout(
        template="plotly_white", font={"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "size": 13},
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        hoverlabel={"namelength": -1},
    )
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                          config={"displaylogo": False, "responsive": True})


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> list[dict]:
    result = connection.execute(sql, parameters or [])
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _tables(connection: duckdb.DuckDBPyConnection) -> set[str]:
    return {f"{schema}.{name}" for schema, name in connection.execute(
        "select table_schema, table_name from information_schema.tables").fetchall()}


def _ratio(numerator: Decimal | None, denominator: Decimal | None) -> Decimal | None:
    if numerator is None or not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("1E-10"), rounding=ROUND_HALF_EVEN)


# --- data ---------------------------------------------------------------------------------


def collect(connection: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Everything the page shows, from the snapshot's tables (absent tables read as empty)."""
    tables = _tables(connection)

    def rows(table: str, sql: str, parameters: list | None = None) -> list[dict]:
        return _rows(connection, sql, parameters) if table in tables else []

    months = rows("marts.margin_by_period", "select * from marts.margin_by_period order by reporting_month")
    customers = rows("marts.margin_by_customer", """
        select coalesce(organization_name, organization_id, '(no organization)') as organization,
               organization_id, currency,
               sum(case when status <> 'open' then revenue else 0 end) as revenue,
               sum(case when status <> 'open' then revenue_usd else 0 end) as revenue_usd,
               sum(case when status <> 'open' then provider_cost_usd else 0 end) as provider_cost_usd,
               sum(case when status <> 'open' then trial_cost_usd else 0 end) as trial_cost_usd,
               sum(late_revenue) as late_revenue,
               sum(pending_revenue) as pending_revenue,
               sum(case when status <> 'open' then 1 else 0 end) as closed_periods,
               bool_or(drafts_without_fx_rate > 0) as missing_fx
        from marts.margin_by_customer
        group by all order by organization, currency
    """)
    for row in customers:
        row["margin"] = None if row["missing_fx"] else row["revenue_usd"] - row["provider_cost_usd"]
        row["margin_pct"] = _ratio(row["margin"], row["revenue_usd"])
    customers.sort(key=lambda row: (row["margin"] is None, -(row["margin"] or ZERO)))
    models = rows("marts.margin_by_model", """
        select provider, model, sum(provider_cost_usd) as provider_cost_usd,
               sum(unbilled_cost_usd) as unbilled_cost_usd, sum(trial_cost_usd) as trial_cost_usd,
               sum(allocated_revenue_usd) as allocated_revenue_usd,
               sum(billable_event_count + trial_event_count + unbilled_event_count) as events
        from marts.margin_by_model where model <> '(no usage)'
        group by all order by sum(provider_cost_usd + unbilled_cost_usd) desc, provider, model limit 12
    """)
    held = rows("marts.invoices", """
        select subscription_id, coalesce(organization_name, organization_id) as organization, product_name,
               currency, period_start, period_end, total, held_reasons
        from marts.invoices where status = 'held' order by period_end, subscription_id
    """)
    unbilled = rows("marts.unbilled_usage", """
        select reason, coalesce(product_name, product_id, '(none)') as product, coalesce(subscriber_id, '') as subscriber,
               count(*) as events, coalesce(sum(provider_cost_usd), 0) as provider_cost_usd,
               min(request_time) as first_seen, max(request_time) as last_seen
        from marts.unbilled_usage group by all order by provider_cost_usd desc, events desc limit 15
    """)
    unbilled_reasons = rows("marts.unbilled_usage", """
        select reason, count(*) as events, coalesce(sum(provider_cost_usd), 0) as provider_cost_usd
        from marts.unbilled_usage group by reason order by events desc
    """)
    pacing = rows("marts.budget_pacing", "select * from marts.budget_pacing order by subscription_id, metric")
    tiers = rows("catalog.tiers", "select * from catalog.tiers order by product_id, metric_name, tier_position")
    late = rows("marts.late_revenue", "select * from marts.late_revenue order by period_start, original_invoice_number")
    invoices = rows("marts.invoices", """
        select count(*) filter (where status = 'issued' and document_type = 'invoice') as issued,
               count(*) filter (where status = 'held') as held,
               count(*) filter (where document_type = 'credit_note') as credit_notes
        from marts.invoices
    """)
    as_of = rows("reporting.run_clock", "select max(as_of) as as_of from reporting.run_clock")

    closed = [month for month in months if month["invoiced_draft_count"]]
    headline = {
        "revenue_usd": sum((m["revenue_usd"] for m in months), start=ZERO),
        "provider_cost_usd": sum((m["provider_cost_usd"] for m in closed), start=ZERO),
        "pending_revenue_usd": sum((m["pending_revenue_usd"] for m in months), start=ZERO),
        "unbilled_cost_usd": sum((m["unbilled_cost_usd"] for m in months), start=ZERO),
        "trial_cost_usd": sum((m["trial_cost_usd"] for m in months), start=ZERO),
        "late_revenue_usd": sum((row["late_revenue_usd"] or ZERO for row in late), start=ZERO),
        "invoices_issued": invoices[0]["issued"] if invoices else 0,
        "invoices_held": invoices[0]["held"] if invoices else 0,
        "subscriptions_crossing_tier": len({row["subscription_id"] for row in pacing if row["crosses_tier"]}),
        "subscriptions_over_budget": len({row["subscription_id"] for row in pacing if row["exceeds_budget"]}),
    }
    headline["margin_usd"] = headline["revenue_usd"] - headline["provider_cost_usd"]
    headline["margin_pct"] = _ratio(headline["margin_usd"], headline["revenue_usd"])
    return {
        "as_of": as_of[0]["as_of"] if as_of else None, "months": months, "customers": customers,
        "models": models, "held": held, "unbilled": unbilled, "unbilled_reasons": unbilled_reasons,
        "pacing": pacing, "tiers": tiers, "late": late, "headline": headline,
    }


# --- charts -------------------------------------------------------------------------------


def _over_time(months: list[dict]) -> go.Figure:
    labels = [f"{month['reporting_month']:%b %Y}" for month in months]
    figure = go.Figure()
    figure.add_bar(name="Revenue (issued)", x=labels, y=[float(m["revenue_usd"]) for m in months],
                   marker_color=PALETTE["revenue"])
    figure.add_bar(name="Revenue (pending)", x=labels, y=[float(m["pending_revenue_usd"]) for m in months],
                   marker_color=PALETTE["pending"])
    figure.add_bar(name="Provider cost", x=labels, y=[float(m["provider_cost_usd"]) for m in months],
                   marker_color=PALETTE["cost"])
    figure.add_bar(name="Unbilled cost", x=labels, y=[float(m["unbilled_cost_usd"]) for m in months],
                   marker_color=PALETTE["unbilled"])
    # margin of invoiced months only: an open month has its cost so far and no revenue yet
    figure.add_scatter(name="Margin (invoiced)", x=labels, mode="lines+markers+text",
                       y=[float(m["margin"]) if m["invoiced_draft_count"] else None for m in months],
                       text=[percent(m["margin_pct"]) if m["invoiced_draft_count"] else "" for m in months],
                       textposition="top center", line={"color": PALETTE["margin"], "width": 3})
    figure.update_layout(barmode="group", yaxis_title="USD", height=380)
    return figure


def _tier_figure(pacing: list[dict], tiers: list[dict]) -> go.Figure | None:
    """One horizontal bar per open subscription period and metric, split by tier."""
    if not pacing:
        return None
    by_metric: dict[tuple[str, str], list[dict]] = {}
    for tier in tiers:
        by_metric.setdefault((tier["product_id"], tier["metric_name"]), []).append(tier)
    bars: list[tuple[str, list[dict], dict]] = []
    for row in pacing:
        consumption = tier_consumption(row["quantity"], row["tier_mode"], by_metric.get((row["product_id"], row["metric"]), []))
        bars.append((f"{row['subscription_id']} · {row['metric']}", consumption, row))
    labels = [label for label, _, _ in bars]
    figure = go.Figure()
    depth = max((len(consumption) for _, consumption, _ in bars), default=0)
    for position in range(depth):
        values, texts = [], []
        for _, consumption, _ in bars:
            tier = consumption[position] if position < len(consumption) else None
            values.append(float(tier["consumed"]) if tier else 0.0)
            texts.append(tier["tier"] if tier else "")
        figure.add_bar(name=f"Tier {position + 1}", y=labels, x=values, orientation="h", text=texts,
                       insidetextanchor="middle",
                       marker_color=TIER_COLOURS[position % len(TIER_COLOURS)], textposition="inside",
                       hovertemplate="%{y}<br>%{text}: %{x:,}<extra></extra>")
    figure.add_scatter(name="Projected at period end", y=labels,
                       x=[float(row["projected_quantity_linear"]) for _, _, row in bars], mode="markers",
                       marker={"symbol": "diamond", "size": 12, "color": PALETTE["ink"]})
    figure.update_layout(barmode="stack", height=max(260, 60 + 36 * len(bars)), xaxis_title="quantity this period",
                         yaxis={"autorange": "reversed"})
    return figure


def _models_figure(models: list[dict]) -> go.Figure | None:
    if not models:
        return None
    labels = [f"{row['provider']} / {row['model']}" for row in models]
    figure = go.Figure()
    figure.add_bar(name="Billed cost", y=labels, x=[float(r["provider_cost_usd"]) for r in models], orientation="h",
                   marker_color=PALETTE["cost"])
    figure.add_bar(name="Unbilled cost", y=labels, x=[float(r["unbilled_cost_usd"]) for r in models],
                   orientation="h", marker_color=PALETTE["unbilled"])
    figure.update_layout(barmode="stack", height=max(260, 60 + 34 * len(models)), xaxis_title="USD",
                         yaxis={"autorange": "reversed"})
    return figure


# --- page ---------------------------------------------------------------------------------


def render(data: dict[str, Any], generated: str) -> str:
    charts = {"over_time": _figure_html(_over_time(data["months"]), "chart-over-time") if data["months"] else None}
    tiers = _tier_figure(data["pacing"], data["tiers"])
    charts["tiers"] = _figure_html(tiers, "chart-tiers") if tiers else None
    models = _models_figure(data["models"])
    charts["models"] = _figure_html(models, "chart-models") if models else None
    return _environment().get_template("finance.html.j2").render(
        **data, charts=charts, plotly_js=get_plotlyjs(), generated=generated,
    )


def write_dashboard(data_dir: Path, snapshot: Path | None = None) -> DashboardResult:
    """Write ``<data dir>/dashboards/finance.html`` from the current snapshot (atomically)."""
    folder = snapshot or current_snapshot(data_dir)
    with open_snapshot(snapshot=folder) as connection:
        data = collect(connection)
    info = manifest(folder)
    html = render(data, generated=f"data as of {info.get('as_of', '?')} UTC · published {info.get('published_at', '?')} UTC")
    target = dashboards_dir(data_dir) / "finance.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".html.tmp")
    scratch.write_text(html, encoding="utf-8")
    scratch.replace(target)
    return DashboardResult(path=target, headline=data["headline"], customers=data["customers"])


def to_json(value: Any) -> str:
    return json.dumps(value, default=lambda v: str(v) if isinstance(v, Decimal | datetime) else v)


def write_simulation_page(data_dir: Path, simulation: Any, catalog_dir: Path, from_period: str, to_period: str) -> Path:
    """``<data dir>/dashboards/simulation-<from>-<to>.html``: old vs new revenue and margin."""
    rows = simulation.rows
    by_customer: dict[str, dict] = {}
    for row in rows:
        entry = by_customer.setdefault(row["organization_name"] or row["organization_id"] or "(none)",
                                       {"old": ZERO, "new": ZERO})
        entry["old"] += row["old_revenue_usd"] or ZERO
        entry["new"] += row["new_revenue_usd"] or ZERO
    figure = None
    if by_customer:
        names = list(by_customer)
        figure = go.Figure()
        figure.add_bar(name="Current catalog", x=names, y=[float(by_customer[n]["old"]) for n in names],
                       marker_color=PALETTE["pending"])
        figure.add_bar(name="New catalog", x=names, y=[float(by_customer[n]["new"]) for n in names],
                       marker_color=PALETTE["revenue"])
        figure.update_layout(barmode="group", yaxis_title="revenue, USD", height=380)
    totals = simulation.as_dict()["totals"]
    html = _environment().get_template("simulation.html.j2").render(
        rows=rows, totals=totals, chart=_figure_html(figure, "chart-simulation") if figure else None,
        plotly_js=get_plotlyjs(), catalog_dir=str(catalog_dir), from_period=from_period, to_period=to_period,
        generated=f"re-rated with the clock of the last run, {simulation.as_of:%Y-%m-%d %H:%M} UTC",
    )
    target = dashboards_dir(data_dir) / f"simulation-{from_period}-{to_period}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".html.tmp")
    scratch.write_text(html, encoding="utf-8")
    scratch.replace(target)
    return target
