"""A warehouse built by hand: an issued invoice with every kind of line, the dbt tables the
documents and lineage read, and the events behind it. No pipeline run (that costs ~40 s).

The invoice, worked out by hand (product ``pro-plan``, USD, October 2026, free trial until
2026-10-03 00:00):

  Summaries = requests of model gpt-4o-mini in environment production, graduated
              "First 3" at 1.50, "3+" at 1.00 with a fixed fee of 5.00
  Tokens    = total_tokens, one tier "All tokens" at 0.001
  Images    = units.images, one tier "All images" at 0.10 (nothing metered)

  event  time        model        environment  credential   tokens  trial
  e1     10-02 12:00 gpt-4o-mini  production   prod-key     100     yes
  e2     10-05       gpt-4o-mini  production   prod-key     200
  e3     10-06       gpt-4o-mini  production   prod-key     300
  e4     10-07       o3           production   staging-key  400            (not a Summary: model)
  e5     10-08       gpt-4o-mini  production   staging-key  500
  e6     10-09       gpt-4o-mini  staging      prod-key     600            (not a Summary: environment)
  e8     10-10       gpt-4o-mini  production   staging-key  700
  plus: x1 another subscription, n1 the same subscription in November, u1 unbilled,
        late1 (LATE_EVENT) loaded after the invoice was issued (October, gpt-4o-mini, production).

  Summaries billable e2 e3 e5 e8 = 4: First 3 = 3 x 1.50 = 4.50; 3+ = 1 x 1.00 = 1.00; fixed fee 5.00
  Summaries trial    e1 = 1
  Tokens billable    e2 e3 e4 e5 e6 e8 = 200+300+400+500+600+700 = 2,700 x 0.001 = 2.70
  Tokens trial       e1 = 100 tokens
  Images             no event has units.images: quantity 0, amount 0; as dbt counts them, the
                     metric's events are still e2 e3 e4 e5 e6 e8 (no filter) and e1 in the trial

  lines: 1 setup 50.00, 2 recurring 199.00, 3 First 3 4.50, 4 3+ 1.00, 5 3+ (fixed fee) 5.00,
         6 Summaries free trial 0, 7 All tokens 2.70, 8 Tokens free trial 0, 9 Images 0,
         10 Images free trial 0
  total  50.00 + 199.00 + 4.50 + 1.00 + 5.00 + 2.70 = 262.20
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from dagster_project import warehouse

NUMBER = "MH-2026-000001"
SECOND_NUMBER = "MH-2026-000002"
OCTOBER = (datetime(2026, 10, 1), datetime(2026, 11, 1))
NOVEMBER = (datetime(2026, 11, 1), datetime(2026, 12, 1))
ISSUED_AT = datetime(2026, 11, 1)
LOADED_AT = datetime(2026, 11, 1, 0, 30)  # the load the invoice was rated from
LATE_LOADED_AT = datetime(2026, 11, 5)  # a later load: re-rates October, not on this invoice
TRIAL_END = datetime(2026, 10, 3)

# transaction id, request time, model, environment, credential, total tokens, subscription, period
EVENTS = [
    ("e1", datetime(2026, 10, 2, 12), "gpt-4o-mini", "production", "prod-key", 100, "sub-pro", OCTOBER),
    ("e2", datetime(2026, 10, 5), "gpt-4o-mini", "production", "prod-key", 200, "sub-pro", OCTOBER),
    ("e3", datetime(2026, 10, 6), "gpt-4o-mini", "production", "prod-key", 300, "sub-pro", OCTOBER),
    ("e4", datetime(2026, 10, 7), "o3", "production", "staging-key", 400, "sub-pro", OCTOBER),
    ("e5", datetime(2026, 10, 8), "gpt-4o-mini", "production", "staging-key", 500, "sub-pro", OCTOBER),
    ("e6", datetime(2026, 10, 9), "gpt-4o-mini", "staging", "prod-key", 600, "sub-pro", OCTOBER),
    ("e8", datetime(2026, 10, 10), "gpt-4o-mini", "production", "staging-key", 700, "sub-pro", OCTOBER),
    ("x1", datetime(2026, 10, 11), "gpt-4o-mini", "production", "other-key", 800, "sub-other", OCTOBER),
    ("n1", datetime(2026, 11, 2), "gpt-4o-mini", "production", "prod-key", 900, "sub-pro", NOVEMBER),
    ("u1", datetime(2026, 10, 12), "gpt-4o-mini", "production", "(none)", 1000, None, None),
]
# loaded after the invoice was issued: it re-rates October (a later adjustment), not this invoice
LATE_EVENT = ("late1", datetime(2026, 10, 20), "gpt-4o-mini", "production", "prod-key", 1100, "sub-pro", OCTOBER)

# (line, kind, metric, tier, quantity, unit rate, amount, event count, description)
LINES = [
    (1, "setup", None, None, "1", "50", "50.00", None, "Pro Plan setup fee"),
    (2, "recurring", None, None, "1", "199", "199.00", None, "Pro Plan recurring charge"),
    (3, "usage", "Summaries", "First 3", "3", "1.5", "4.50", 4, "Summaries: First 3"),
    (4, "usage", "Summaries", "3+", "1", "1", "1.00", 4, "Summaries: 3+"),
    (5, "usage", "Summaries", "3+ (fixed fee)", "1", "5", "5.00", None, "Summaries: 3+ (fixed fee)"),
    (6, "usage", "Summaries", "Free trial", "1", "0", "0.00", 1, "Summaries: Free trial"),
    (7, "usage", "Tokens", "All tokens", "2700", "0.001", "2.70", 6, "Tokens: All tokens"),
    (8, "usage", "Tokens", "Free trial", "100", "0", "0.00", 1, "Tokens: Free trial"),
    (9, "usage", "Images", None, "0", None, "0.00", 6, "Images"),
    (10, "usage", "Images", "Free trial", "0", "0", "0.00", 1, "Images: Free trial"),
]
TOTAL = Decimal("262.20")

# (metric, credential, quantity, events, trial quantity, trial events)
CREDENTIALS = [
    ("Summaries", "prod-key", 2, 2, 1, 1),
    ("Summaries", "staging-key", 2, 2, 0, 0),
    ("Tokens", "prod-key", 1100, 3, 100, 1),
    ("Tokens", "staging-key", 1600, 3, 0, 0),
]

INT_EVENTS_ATTRIBUTED = """
create table if not exists intermediate.int_events_attributed (
    transaction_id varchar, request_time timestamp, event_type varchar, provider varchar, model varchar,
    input_tokens bigint, output_tokens bigint, reasoning_tokens bigint, cache_read_tokens bigint,
    cache_creation_tokens bigint, total_tokens bigint, reported_cost_usd decimal(20, 10),
    provider_cost_usd decimal(20, 10), cost_source varchar, organization_id varchar, event_product_id varchar,
    event_product_name varchar, matched_product_id varchar, subscriber_id varchar, credential_value varchar,
    is_catalog_credential boolean, credential_name varchar, attribution_rule varchar, subscription_id varchar,
    product_id varchar, period_start timestamp, period_end timestamp, is_trial boolean, billing_status varchar,
    unbilled_reason varchar, units_json varchar, attributes_json varchar, source_file varchar, line_number bigint
)
"""

USAGE_BY_PERIOD = """
create table if not exists marts.usage_by_period (
    draft_key varchar, subscription_id varchar, product_id varchar, organization_id varchar,
    period_start timestamp, period_end timestamp, metric varchar, metric_position integer, aggregation varchar,
    breakdown varchar, credential_name varchar, quantity decimal(21, 10), event_count bigint,
    trial_quantity decimal(21, 10), trial_event_count bigint
)
"""


def build_warehouse(
    root: Path,
    *,
    subscription_name: str = "Acme production summaries",
    organization_name: str = "Acme Corp",
    subscriber_email: str = "ap@acme.example",
    metric_names: dict[str, str] | None = None,
    branding_yaml: str | None = None,
) -> Path:
    """A data directory with one issued invoice (NUMBER) and its inputs; returns the root."""
    root.mkdir(parents=True, exist_ok=True)
    if branding_yaml is not None:
        (root / "branding.yaml").write_text(branding_yaml, encoding="utf-8")
    rename = metric_names or {}
    connection = duckdb.connect(str(warehouse.warehouse_path(root)))
    try:
        warehouse.ensure_schema(connection)
        connection.execute("create schema if not exists intermediate")
        connection.execute(INT_EVENTS_ATTRIBUTED)
        connection.execute(USAGE_BY_PERIOD)
        _catalog(connection, rename)
        _events(connection)
        _invoice(connection, NUMBER, "sub-pro", subscription_name, organization_name, subscriber_email, rename)
        for metric, credential, quantity, events, trial_quantity, trial_events in CREDENTIALS:
            connection.execute(
                "insert into marts.usage_by_period values"
                " ('k', 'sub-pro', 'pro-plan', 'acme', ?, ?, ?, ?, 'sum', 'credential', ?, ?, ?, ?, ?)",
                [*OCTOBER, rename.get(metric, metric), 1 if metric == "Summaries" else 2, credential, quantity,
                 events, trial_quantity, trial_events],
            )
    finally:
        connection.close()
    return root


def _catalog(connection: duckdb.DuckDBPyConnection, rename: dict[str, str]) -> None:
    for position, (metric, element) in enumerate(
        (("Summaries", "requests"), ("Tokens", "total_tokens"), ("Images", "units.images")), start=1
    ):
        connection.execute(
            "insert into catalog.metrics values ('pro-plan', ?, ?, ?, 'sum', null, null, 'graduated')",
            [rename.get(metric, metric), position, element],
        )
    for field, value in (("model", "gpt-4o-mini"), ("environment", "production")):
        connection.execute(
            "insert into catalog.metric_filters values ('pro-plan', ?, ?, ?)",
            [rename.get("Summaries", "Summaries"), field, value],
        )


def _events(connection: duckdb.DuckDBPyConnection, events: list[tuple] = EVENTS, first_line: int = 1,
            loaded_at: datetime = LOADED_AT) -> None:
    for index, (transaction, moment, model, environment, credential, tokens, subscription, period) in enumerate(
        events, start=first_line
    ):
        attributes = json.dumps({"transactionId": transaction, "model": model, "environment": environment},
                                sort_keys=True)
        connection.execute(
            """
            insert into raw.events (transaction_id, payload_sha256, event_type, request_time, provider, model,
                input_tokens, output_tokens, reasoning_tokens, cache_read_tokens, cache_creation_tokens,
                total_tokens, subscriber_id, attributes_json, source_file, line_number, load_id, loaded_at)
            values (?, 'sha', 'completion', ?, 'openai', ?, ?, 0, 0, 0, 0, ?, 'acme-ap', ?,
                    'landing/events/october.jsonl', ?, ?, ?)
            """,
            [transaction, moment, model, tokens, tokens, attributes, index, f"load-{loaded_at:%d}", loaded_at],
        )
        billed = subscription is not None
        connection.execute(
            """
            insert into intermediate.int_events_attributed (transaction_id, request_time, event_type, provider,
                model, input_tokens, output_tokens, reasoning_tokens, cache_read_tokens, cache_creation_tokens,
                total_tokens, provider_cost_usd, subscriber_id, credential_name, subscription_id, product_id,
                period_start, period_end, is_trial, billing_status, unbilled_reason, units_json, attributes_json,
                source_file, line_number)
            values (?, ?, 'completion', 'openai', ?, ?, 0, 0, 0, 0, ?, 0.001, 'acme-ap', ?, ?, ?, ?, ?, ?, ?, ?,
                    null, ?, 'landing/events/october.jsonl', ?)
            """,
            [transaction, moment, model, tokens, tokens, credential, subscription,
             ("pro-plan" if subscription == "sub-pro" else "other-plan") if billed else None,
             period[0] if billed else None, period[1] if billed else None, moment < TRIAL_END and billed,
             "billed" if billed else "unbilled", None if billed else "no_matching_subscription",
             attributes, index],
        )


def _invoice(
    connection: duckdb.DuckDBPyConnection, number: str, subscription: str, subscription_name: str,
    organization_name: str, subscriber_email: str, rename: dict[str, str],
) -> None:
    connection.execute(
        """
        insert into marts.invoices (invoice_number, draft_key, subscription_id, subscription_name, organization_id,
            organization_name, subscriber_id, subscriber_email, product_id, product_name, currency, period_start,
            period_end, issued_at, released_at, status, subtotal, total, payment_status)
        values (?, ?, ?, ?, 'acme', ?, 'acme-ap', ?, 'pro-plan', 'Pro Plan', 'USD', ?, ?, ?, ?, 'issued', ?, ?, 'none')
        """,
        [number, f"{subscription}|2026-10-01|2026-11-01", subscription, subscription_name, organization_name,
         subscriber_email, *OCTOBER, ISSUED_AT, datetime(2026, 11, 1, 0, 45), TOTAL, TOTAL],
    )
    for line, kind, metric, tier, quantity, rate, amount, events, description in LINES:
        metric = rename.get(metric, metric)
        if metric and description.startswith(("Summaries", "Tokens", "Images")):
            description = metric + description[description.index(":"):] if ":" in description else metric
        connection.execute(
            """
            insert into marts.invoice_lines (invoice_number, draft_key, line_number, kind, metric, tier_name,
                quantity, unit_rate, amount, currency, event_count, period_start, period_end, description)
            values (?, ?, ?, ?, ?, ?, ?, ?, ?, 'USD', ?, ?, ?, ?)
            """,
            [number, f"{subscription}|2026-10-01|2026-11-01", line, kind, metric, tier,
             Decimal(quantity), None if rate is None else Decimal(rate), Decimal(amount), events, *OCTOBER,
             description],
        )


def add_late_event(root: Path) -> None:
    """LATE_EVENT, loaded (and rated into October by dbt) after the invoice was issued."""
    with duckdb.connect(str(warehouse.warehouse_path(root))) as connection:
        _events(connection, [LATE_EVENT], first_line=len(EVENTS) + 1, loaded_at=LATE_LOADED_AT)


def add_invoice(
    root: Path, number: str | None, status: str = "issued", payment_status: str = "none",
    subscription: str = "sub-other",
) -> None:
    """Another invoice (recurring line only) in the same warehouse; ``number=None`` for a held draft."""
    with duckdb.connect(str(warehouse.warehouse_path(root))) as connection:
        key = f"{subscription}|2026-10-01|2026-11-01"
        connection.execute(
            """
            insert into marts.invoices (invoice_number, draft_key, subscription_id, subscription_name,
                organization_id, organization_name, subscriber_id, subscriber_email, product_id, product_name,
                currency, period_start, period_end, issued_at, status, held_reasons, subtotal, total, payment_status)
            values (?, ?, ?, 'Other', 'globex', 'Globex', 'globex-ap', 'ap@globex.example', 'other-plan', 'Other Plan',
                    'USD', ?, ?, ?, ?, ?, 99.00, 99.00, ?)
            """,
            [number, key, subscription, *OCTOBER, ISSUED_AT if number else None, status,
             "no_negative_amounts" if status == "held" else None, payment_status],
        )
        connection.execute(
            """
            insert into marts.invoice_lines (invoice_number, draft_key, line_number, kind, quantity, unit_rate,
                amount, currency, period_start, period_end, description)
            values (?, ?, 1, 'recurring', 1, 99, 99.00, 'USD', ?, ?, 'Other Plan recurring charge')
            """,
            [number, key, *OCTOBER],
        )


# a 1x1 transparent PNG
LOGO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
BRANDING = """\
company_name: Lumen Analytics GmbH
company_address: ["Friedrichstraße 123", "10117 Berlin"]
company_email: billing@lumen.example
company_tax_id: DE123456789
logo: brand/logo.png
accent_color: "#0f766e"
payment_instructions: ["IBAN DE89 3704 0044 0532 0130 00"]
footer: Danke.
"""


def make_data_dir(root: Path, **overrides) -> Path:
    """``build_warehouse`` with a branding file and its logo (the documents' tests)."""
    (root / "brand").mkdir(parents=True, exist_ok=True)
    (root / "brand" / "logo.png").write_bytes(LOGO)
    return build_warehouse(root, branding_yaml=overrides.pop("branding_yaml", BRANDING), **overrides)
