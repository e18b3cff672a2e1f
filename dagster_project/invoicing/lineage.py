"""Lineage: the metering events behind each usage line of an issued invoice.

"The events that made a line" are the accepted, deduplicated events that dbt attributed to
the invoice's subscription, product and usage period (``intermediate.int_events_attributed``,
billed), that pass the metric's filter (``catalog.metric_filters``), and that were loaded when
the invoice was issued:

* a **tier line** and a tier's **fixed-fee line**: every billable (non-trial) event of the
  metric in the period. Tiers split the period's *quantity*, not its events, so the same events
  feed every tier line of the metric (and the fixed fee of a tier is due because that quantity
  entered the tier);
* a metric's **zero line** ("no billable usage"): the billable events, if any, whose values
  add up to nothing;
* a metric's **free-trial line**: the events inside the free trial;
* setup, recurring and adjustment lines have no events of their own.

The line's ``event_count`` is the number of events it was rated from; ``line_summaries``
compares it with what lineage finds, so a line whose events changed since issue is visible.

Events that land after an invoice was issued re-rate its period (SPEC §3.8) and belong to the
prior-period adjustment on a later invoice, not to the issued lines. ``write_documents`` stamps
each invoice, in the run that issues it, with ``events_loaded_through`` (the newest
``raw.events.loaded_at`` then); lineage lists only events loaded by that instant.

The metric filter SQL mirrors the dbt macros in ``dbt/macros/event_fields.sql``
(``event_field_text``, ``event_element_value``, ``metric_filter_predicate``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

import duckdb

from dagster_project.invoicing.render import line_role

LINEAGE_COLUMNS = {"events_loaded_through": "timestamp"}
EVENT_ROLES = ("tier", "fixed_fee", "no_usage", "trial")

# dbt/macros/event_fields.sql: event_text_columns() and event_numeric_columns()
TEXT_COLUMNS = {
    "eventType": "event_type", "event_type": "event_type",
    "provider": "provider",
    "model": "model",
    "transactionId": "transaction_id", "transaction_id": "transaction_id",
    "productId": "event_product_id",
    "productName": "event_product_name",
    "subscriber.id": "subscriber_id",
    "subscriber.credential.value": "credential_value",
}
NUMERIC_COLUMNS = {
    "total_cost": "provider_cost_usd",
    "input_tokens": "input_tokens", "inputTokenCount": "input_tokens",
    "output_tokens": "output_tokens", "outputTokenCount": "output_tokens",
    "total_tokens": "total_tokens", "totalTokenCount": "total_tokens",
    "reasoning_tokens": "reasoning_tokens", "reasoningTokenCount": "reasoning_tokens",
    "cache_read_tokens": "cache_read_tokens", "cacheReadTokenCount": "cache_read_tokens",
    "cache_creation_tokens": "cache_creation_tokens", "cacheCreationTokenCount": "cache_creation_tokens",
}
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class LineageEvent:
    """One event behind one invoice line."""

    invoice_number: str
    line_number: int
    metric: str
    tier_name: str | None
    role: str  # tier | fixed_fee | no_usage | trial
    transaction_id: str
    request_time: datetime
    credential_name: str | None
    is_trial: bool
    value: Decimal | None  # the event's value of the metric's element (1 for requests)
    source_file: str
    source_line: int

    def as_dict(self) -> dict:
        return asdict(self)


# --- columns ------------------------------------------------------------------------------


def _has_column(connection: duckdb.DuckDBPyConnection, schema: str, table: str, column: str) -> bool:
    return bool(connection.execute(
        "select count(*) from information_schema.columns where table_schema = ? and table_name = ? and column_name = ?",
        [schema, table, column],
    ).fetchone()[0])


def _has_table(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchone()[0])


def ensure_lineage_columns(connection: duckdb.DuckDBPyConnection) -> None:
    for column, column_type in LINEAGE_COLUMNS.items():
        connection.execute(f"alter table marts.invoices add column if not exists {column} {column_type}")


def stamp_events_loaded_through(connection: duckdb.DuckDBPyConnection, numbers: Sequence[str]) -> None:
    """Record, once, the newest event load the invoices ``numbers`` were rated from.

    Called when an invoice's first document is written, in the run that issued it; an
    invoice whose HTML already exists (issued before lineage existed) keeps no stamp, and its
    lineage then includes every event attributed to its period so far.
    """
    ensure_lineage_columns(connection)
    connection.execute(
        """
        update marts.invoices
        set events_loaded_through = (select max(loaded_at) from raw.events)
        where invoice_number in (select unnest(cast(? as varchar[])))
          and events_loaded_through is null and document_sha256 is null
        """,
        [list(numbers)],
    )


# --- metric SQL (mirrors dbt/macros/event_fields.sql) -------------------------------------


def _checked_field(field: str) -> str:
    if not isinstance(field, str) or not FIELD_NAME.fullmatch(field):
        raise ValueError(f"invalid event field name in the catalog: {field!r}")
    return field


def field_text_sql(field: str) -> str:
    """The event field's value as text (``event_field_text``); reads ``a`` (attributed) and ``r`` (raw)."""
    field = _checked_field(field)
    if field == "requests":
        return "'1'"
    if field in TEXT_COLUMNS:
        return f"a.{TEXT_COLUMNS[field]}"
    if field in NUMERIC_COLUMNS:
        return f"cast(a.{NUMERIC_COLUMNS[field]} as varchar)"
    if field.startswith("units."):
        return f"json_extract_string(a.units_json, '$.{field[6:]}')"
    return f"json_extract_string(r.attributes_json, '$.{field}')"


def element_value_sql(element: str) -> str:
    """The metered element as decimal(38, 10) (``event_element_value``)."""
    element = _checked_field(element)
    if element == "requests":
        return "cast(1 as decimal(38, 10))"
    if element in NUMERIC_COLUMNS:
        return f"cast(a.{NUMERIC_COLUMNS[element]} as decimal(38, 10))"
    return f"cast(round_even(try_cast({field_text_sql(element)} as decimal(38, 18)), 10) as decimal(38, 10))"


def comparable_value(value: str) -> str:
    """Catalog values compare as text; YAML booleans as 'true'/'false' (``comparable_value``)."""
    return value.lower() if value.lower() in ("true", "false") else value


def filter_sql(filters: dict[str, list[str]]) -> tuple[str, list[str]]:
    """For every filtered field, the event's value is one of the allowed values."""
    if not filters:
        return "1 = 1", []
    clauses, parameters = [], []
    for field in sorted(filters):
        values = [comparable_value(value) for value in filters[field]]
        clauses.append(f"{field_text_sql(field)} in ({', '.join('?' for _ in values)})")
        parameters.extend(values)
    return " and ".join(clauses), parameters


# --- lineage ------------------------------------------------------------------------------


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list) -> list[dict]:
    result = connection.execute(sql, parameters)
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _invoice(connection: duckdb.DuckDBPyConnection, number: str) -> dict:
    through = (
        "events_loaded_through" if _has_column(connection, "marts", "invoices", "events_loaded_through")
        else "cast(null as timestamp) as events_loaded_through"
    )
    found = _rows(
        connection,
        f"select invoice_number, subscription_id, product_id, status, {through} from marts.invoices"
        " where invoice_number = ?",
        [number],
    )
    if not found:
        raise LookupError(f"no invoice {number!r}")
    return found[0]


def _metric(connection: duckdb.DuckDBPyConnection, product_id: str, metric: str) -> tuple[str, dict[str, list[str]]]:
    found = connection.execute(
        "select element from catalog.metrics where product_id = ? and metric_name = ?", [product_id, metric]
    ).fetchall()
    if not found:
        raise LookupError(f"metric {metric!r} of product {product_id!r} is no longer in the catalog")
    filters: dict[str, list[str]] = {}
    for field, value in connection.execute(
        "select field, allowed_value from catalog.metric_filters where product_id = ? and metric_name = ?"
        " order by field, allowed_value",
        [product_id, metric],
    ).fetchall():
        filters.setdefault(field, []).append(value)
    return found[0][0], filters


def _metric_events(
    connection: duckdb.DuckDBPyConnection, invoice: dict, metric: str, period_start: datetime, period_end: datetime
) -> list[dict]:
    element, filters = _metric(connection, invoice["product_id"], metric)
    predicate, filter_parameters = filter_sql(filters)
    loaded = "and r.loaded_at <= ?" if invoice["events_loaded_through"] is not None else ""
    parameters = [invoice["subscription_id"], invoice["product_id"], period_start, period_end, *filter_parameters]
    if loaded:
        parameters.append(invoice["events_loaded_through"])
    return _rows(
        connection,
        f"""
        select a.transaction_id, a.request_time, a.credential_name, a.is_trial,
               {element_value_sql(element)} as value, a.source_file, a.line_number as source_line
        from intermediate.int_events_attributed as a
        inner join raw.events as r on r.transaction_id = a.transaction_id
        where a.billing_status = 'billed'
          and a.subscription_id = ? and a.product_id = ? and a.period_start = ? and a.period_end = ?
          and ({predicate})
          {loaded}
        order by a.request_time, a.transaction_id
        """,
        parameters,
    )


def _usage_lines(connection: duckdb.DuckDBPyConnection, number: str) -> list[dict]:
    lines = _rows(
        connection,
        "select line_number, kind, metric, tier_name, quantity, unit_rate, amount, event_count, period_start,"
        " period_end from marts.invoice_lines where invoice_number = ? order by line_number",
        [number],
    )
    return [{**line, "role": line_role(line, lines)} for line in lines if line["kind"] == "usage"]


def _lineage(
    connection: duckdb.DuckDBPyConnection, number: str, line_number: int | None = None
) -> tuple[list[dict], list[LineageEvent]]:
    if not _has_table(connection, "intermediate", "int_events_attributed"):
        raise LookupError("no rated events yet (intermediate.int_events_attributed); run `meterhouse bill` first")
    invoice = _invoice(connection, number)
    lines = _usage_lines(connection, number)
    groups: dict[tuple, list[dict]] = {}
    for line in lines:
        if line["metric"] is not None:
            groups.setdefault((line["metric"], line["period_start"], line["period_end"]), []).append(line)
    found: list[LineageEvent] = []
    for (metric, period_start, period_end), group in groups.items():
        if line_number is not None and line_number not in {line["line_number"] for line in group}:
            continue
        events = _metric_events(connection, invoice, metric, period_start, period_end)
        has_trial_events = any(event["is_trial"] for event in events)
        for line in group:
            if line["role"] == "trial" and not has_trial_events:
                line["role"] = "tier"  # a catalog tier that happens to be named like the trial line
            trial = line["role"] == "trial"
            line["events"] = [event for event in events if bool(event["is_trial"]) == trial]
            if line_number is not None and line["line_number"] != line_number:
                continue
            found.extend(
                LineageEvent(
                    invoice_number=number, line_number=line["line_number"], metric=metric,
                    tier_name=line["tier_name"], role=line["role"], **event,
                )
                for event in line["events"]
            )
    found.sort(key=lambda event: (event.line_number, event.request_time, event.transaction_id))
    return lines, found


def events_for_invoice(
    connection: duckdb.DuckDBPyConnection, number: str, line_number: int | None = None
) -> list[LineageEvent]:
    """The events behind each usage line of invoice ``number`` (or of one line), ordered by
    line number, request time and transaction id. A billable event appears once per tier line
    (and fixed-fee line) of its metric; setup, recurring and adjustment lines have none."""
    return _lineage(connection, number, line_number)[1]


def line_summaries(connection: duckdb.DuckDBPyConnection, number: str) -> list[dict]:
    """Per usage line: the events it was rated from (``event_count``, stored on the line) and
    the events lineage finds now; ``matches`` is False when they differ (None for a fixed-fee
    line, which stores no count)."""
    return invoice_lineage(connection, number)[0]


def invoice_lineage(connection: duckdb.DuckDBPyConnection, number: str) -> tuple[list[dict], list[LineageEvent]]:
    """``line_summaries`` and ``events_for_invoice`` of one invoice, computed once."""
    lines, found = _lineage(connection, number)
    summaries = []
    for line in lines:
        events_found = len(line.get("events", []))
        expected = line["event_count"]
        summaries.append({
            "line_number": line["line_number"], "metric": line["metric"], "tier_name": line["tier_name"],
            "role": line["role"], "event_count": expected, "events_found": events_found,
            "matches": None if expected is None else expected == events_found,
        })
    return summaries, found
