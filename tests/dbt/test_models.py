"""The dbt rating project against a hand-made warehouse with hand-worked expectations.

One ``dbt build`` per module (it runs every model, unit and data test); each test then reads
the marts. Catalog rows, billing periods and prorated recurring amounts are written by hand
here, as the catalog asset and ``lib/periods.py`` would write them, so that every expected
number below can be checked with pencil and paper.

All subscriptions are on monthly, calendar-anchored periods in October 2026 unless noted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dbt.cli.main import dbtRunner

from dagster_project.warehouse import ensure_schema

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"

OCT = datetime(2026, 10, 1)
NOV = datetime(2026, 11, 1)
DEC = datetime(2026, 12, 1)
SEP = datetime(2026, 9, 1)
LOADED_AT = datetime(2026, 12, 1, 12)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def key(subscription_id: str, start: datetime, end: datetime) -> str:
    return f"{subscription_id}|{start:%Y-%m-%dT%H:%M:%S}|{end:%Y-%m-%dT%H:%M:%S}"


# --------------------------------------------------------------------------------------------
# catalog
# --------------------------------------------------------------------------------------------

PRODUCTS = [
    # product_id, name, currency, minor_units, recurring, schedule, setup, trial_days
    ("docsum-pro", "DocSum Pro", "USD", 2, "199.00", "in_arrears", "0", 0),
    ("docsum-ent", "DocSum Enterprise", "USD", 2, "499.00", "in_arrears", "0", 0),
    ("tokens-demo", "Token Meter", "USD", 2, "0", "in_arrears", "0", 0),
    ("jp-translate", "JP Translate", "JPY", 0, "0", "in_arrears", "0", 0),
    ("agg-demo", "Aggregations Demo", "USD", 2, "0", "in_arrears", "0", 0),
    ("trial-pro", "Trial Pro", "USD", 2, "31.00", "in_arrears", "0", 7),
    ("adv-pro", "Advance Pro", "USD", 2, "100.00", "in_advance", "50.00", 0),
    ("minute-meter", "Minute Meter", "USD", 2, "0", "in_arrears", "0", 0),
]

# product_id, metric, position, element, aggregation, aggregation_field, match_value, tier_mode
METRICS = [
    ("docsum-pro", "Summaries", 1, "requests", "sum", None, None, "graduated"),
    ("docsum-ent", "Summaries", 1, "requests", "sum", None, None, "graduated"),
    ("tokens-demo", "Tokens (volume)", 1, "total_tokens", "sum", None, None, "volume"),
    ("tokens-demo", "Tokens (graduated)", 2, "total_tokens", "sum", None, None, "graduated"),
    ("jp-translate", "Characters", 1, "units.characters", "sum", None, None, "graduated"),
    ("jp-translate", "Pages", 2, "units.pages", "sum", None, None, "graduated"),
    ("agg-demo", "Avg duration", 1, "requestDuration", "average", None, None, "graduated"),
    ("agg-demo", "Peak output", 2, "output_tokens", "max", None, None, "graduated"),
    ("agg-demo", "Distinct models", 3, "requests", "count_unique", "model", None, "graduated"),
    # the catalog writes a YAML boolean as 'True'; the event's JSON says true
    ("agg-demo", "Streamed calls", 4, "requests", "match", "isStreamed", "True", "graduated"),
    ("agg-demo", "Provider cost", 5, "total_cost", "sum", None, None, "graduated"),
    ("agg-demo", "Prod calls", 6, "requests", "count", None, None, "graduated"),
    ("trial-pro", "Calls", 1, "requests", "sum", None, None, "graduated"),
    ("adv-pro", "Calls", 1, "requests", "sum", None, None, "graduated"),
    ("minute-meter", "Calls", 1, "requests", "sum", None, None, "graduated"),
]

METRIC_FILTERS = [
    ("docsum-pro", "Summaries", "model", "gpt-4o-mini"),
    ("agg-demo", "Prod calls", "environment", "prod"),
]

SIZE_TIERS = [("Small", "0", "100", "0.10", "5.00"), ("Medium", "100", "1000", "0.08", "20.00"),
              ("Large", "1000", None, "0.05", "50.00")]
# product_id, metric, position, name, lower, upper, unit_rate, fixed_fee
TIERS = [
    ("docsum-pro", "Summaries", 1, "First 1,000", "0", "1000", "1.50", "0"),
    ("docsum-pro", "Summaries", 2, "1,000+", "1000", None, "1.35", "0"),
    ("docsum-ent", "Summaries", 1, "All", "0", None, "1.00", "0"),
    *[("tokens-demo", metric, position, *tier) for metric in ("Tokens (volume)", "Tokens (graduated)")
      for position, tier in enumerate(SIZE_TIERS, start=1)],
    ("jp-translate", "Characters", 1, "All", "0", None, "0.5", "0"),
    ("jp-translate", "Pages", 1, "All", "0", None, "0.5", "0"),
    ("agg-demo", "Avg duration", 1, "All", "0", None, "1.00", "0"),
    ("agg-demo", "Peak output", 1, "All", "0", None, "0.01", "0"),
    ("agg-demo", "Distinct models", 1, "All", "0", None, "1.00", "0"),
    ("agg-demo", "Streamed calls", 1, "All", "0", None, "0.10", "0"),
    ("agg-demo", "Provider cost", 1, "All", "0", None, "1.00", "0"),
    ("agg-demo", "Prod calls", 1, "All", "0", None, "0.50", "0"),
    ("trial-pro", "Calls", 1, "All", "0", None, "2.00", "0"),
    ("adv-pro", "Calls", 1, "All", "0", None, "1.00", "0"),
    ("minute-meter", "Calls", 1, "All", "0", None, "1.00", "0"),
]

ORGANIZATIONS = [("acme", "Acme Corp"), ("globex", "Globex")]

# subscriber_id, email, organization
SUBSCRIBERS = [
    ("user-123", "ap@acme.example", "acme"),
    ("user-456", "bob@globex.example", "globex"),
    ("user-900", "ops@acme.example", "acme"),
    ("user-edge", "edge@globex.example", "globex"),
    ("user-789", "jp@example.jp", None),
    ("user-agg", "agg@acme.example", "acme"),
    ("user-trial", "trial@globex.example", "globex"),
    ("user-adv", "adv@globex.example", "globex"),
    ("user-min", "min@globex.example", "globex"),
]

# subscription_id, subscriber, phases [(product, start, end)], end_at
SUBSCRIPTIONS = [
    ("acme-docsum", "user-123", [("docsum-pro", OCT, None)]),
    ("globex-docsum", "user-456", [("docsum-pro", OCT, None)]),
    ("plan-change", "user-900", [("docsum-pro", OCT, ts("2026-10-15")), ("docsum-ent", ts("2026-10-15"), None)]),
    ("tokens-acct", "user-456", [("tokens-demo", OCT, None)]),
    ("tokens-edge", "user-edge", [("tokens-demo", OCT, None)]),
    ("jp-sub", "user-789", [("jp-translate", OCT, None)]),
    ("agg-sub", "user-agg", [("agg-demo", OCT, None)]),
    ("trial-sub", "user-trial", [("trial-pro", OCT, None)]),
    ("adv-sub", "user-adv", [("adv-pro", OCT, None)]),
    ("minute-sub", "user-min", [("minute-meter", ts("2026-10-31T23:59:59"), ts("2026-11-01T00:12:30"))]),
]

CREDENTIALS = [("acme-docsum", "prod-key", "sk-acme-1")]

# organization_id, provider, model, input, output, cache_read, cache_creation per million, valid_from, valid_to
MODEL_PRICES = [
    (None, "openai", "gpt-4o-mini", "9.99", "9.99", "0", "0", ts("2025-01-01"), ts("2026-01-01")),
    (None, "openai", "gpt-4o-mini", "0.15", "0.60", "0", "0", ts("2026-01-01"), None),
    ("acme", "openai", "gpt-4o-mini", "0.10", "0.40", "0", "0", ts("2026-01-01"), None),
    (None, "acmeai", "tiny-model", "0.00005", "0", "0", "0", ts("2026-01-01"), None),
]


def period_row(subscription_id: str, product_id: str, start: datetime, end: datetime, *, phase: int = 1,
               active: tuple[datetime, datetime] | None = None, trial_end: datetime | None = None,
               recurring: str = "0", recurring_span: tuple[datetime, datetime] | None = None,
               setup: str = "0") -> tuple[Any, ...]:
    currency, minor_units = next((p[2], p[3]) for p in PRODUCTS if p[0] == product_id)
    active_start, active_end = active or (start, end)
    recurring_start, recurring_end = recurring_span or (None, None)
    span_seconds = int((recurring_end - recurring_start).total_seconds()) if recurring_span else 0
    return (subscription_id, phase, product_id, currency, minor_units, start, end, active_start, active_end,
            trial_end, end, recurring_start, recurring_end, span_seconds, span_seconds,
            Decimal(recurring), Decimal(setup))


PERIODS = [
    # tutorial product: 199.00 a month in arrears; November has no usage at all
    period_row("acme-docsum", "docsum-pro", OCT, NOV, recurring="199.00", recurring_span=(OCT, NOV)),
    period_row("acme-docsum", "docsum-pro", NOV, DEC, recurring="199.00", recurring_span=(NOV, DEC)),
    period_row("globex-docsum", "docsum-pro", OCT, NOV, recurring="199.00", recurring_span=(OCT, NOV)),
    # plan change on Oct 15 closes the period: 199 * 14/31 = 89.8709.. -> 89.87; 499 * 17/31 = 273.645.. -> 273.65
    period_row("plan-change", "docsum-pro", OCT, ts("2026-10-15"), recurring="89.87",
               recurring_span=(OCT, ts("2026-10-15"))),
    period_row("plan-change", "docsum-ent", ts("2026-10-15"), NOV, phase=2, recurring="273.65",
               recurring_span=(ts("2026-10-15"), NOV)),
    period_row("tokens-acct", "tokens-demo", OCT, NOV),
    period_row("tokens-edge", "tokens-demo", OCT, NOV),
    period_row("jp-sub", "jp-translate", OCT, NOV),
    period_row("agg-sub", "agg-demo", OCT, NOV),
    # 7-day trial: no fee for Oct 1-7, 31.00 * 24/31 = 24.00
    period_row("trial-sub", "trial-pro", OCT, NOV, trial_end=ts("2026-10-08"), recurring="24.00",
               recurring_span=(OCT, NOV)),
    # in_advance: the opening draft (empty usage period) carries setup + October's fee; the
    # October draft carries October's usage and November's fee
    period_row("adv-sub", "adv-pro", OCT, OCT, active=(OCT, OCT), recurring="100.00", recurring_span=(OCT, NOV),
               setup="50.00"),
    period_row("adv-sub", "adv-pro", OCT, NOV, recurring="100.00", recurring_span=(NOV, DEC)),
    # five-minute periods around midnight, active from 23:59:59 (a one-second first stretch) until 00:12:30
    period_row("minute-sub", "minute-meter", ts("2026-10-31T23:55"), NOV,
               active=(ts("2026-10-31T23:59:59"), NOV)),
    period_row("minute-sub", "minute-meter", NOV, ts("2026-11-01T00:05")),
    period_row("minute-sub", "minute-meter", ts("2026-11-01T00:05"), ts("2026-11-01T00:10")),
    period_row("minute-sub", "minute-meter", ts("2026-11-01T00:10"), ts("2026-11-01T00:15"),
               active=(ts("2026-11-01T00:10"), ts("2026-11-01T00:12:30"))),
]


# --------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------

EVENT_COLUMNS = (
    "transaction_id", "payload_sha256", "event_type", "request_time", "provider", "model", "input_tokens",
    "output_tokens", "reasoning_tokens", "cache_read_tokens", "cache_creation_tokens", "total_tokens",
    "reported_cost_usd", "organization_id", "organization_name", "product_id", "product_name", "subscriber_id",
    "subscriber_email", "credential_name", "credential_value", "subscription_id", "units_json", "attributes_json",
    "source_file", "line_number", "load_id", "loaded_at",
)


def event(transaction_id: str, request_time: str, subscriber: str, *, subscription: str | None = None,
          product_id: str | None = None, product_name: str | None = None, credential: tuple | None = None,
          provider: str = "openai", model: str = "gpt-4o-mini", input_tokens: int = 0, output_tokens: int = 0,
          total_tokens: int | None = None, cost: str | None = None, organization_id: str | None = None,
          organization_name: str | None = None, units: dict | None = None, **attributes: Any) -> tuple:
    """One raw.events row; `attributes` are extra camelCase fields of the event's JSON."""
    document: dict[str, Any] = {
        "transactionId": transaction_id, "requestTime": request_time, "provider": provider, "model": model,
        "subscriber": {"id": subscriber}, **attributes,
    }
    if units is not None:
        document["units"] = units
    credential_name, credential_value = credential or (None, None)
    return (
        transaction_id, "sha-" + transaction_id, "completion", ts(request_time.rstrip("Z")), provider, model,
        input_tokens, output_tokens, 0, 0, 0, input_tokens + output_tokens if total_tokens is None else total_tokens,
        None if cost is None else Decimal(cost), organization_id, organization_name, product_id, product_name,
        subscriber, None, credential_name, credential_value, subscription, None if units is None else json.dumps(units),
        json.dumps(document), "landing/events/test.jsonl", 0, "load-1", LOADED_AT,
    )


HANDMADE_EVENTS = [
    # acme-docsum: rule 3 by product id (case-insensitive), a new credential -> auto-created '…9999'
    event("acme-r3-id", "2026-10-03T00:00:00", "user-123", product_id="DOCSUM-PRO",
          credential=(None, "sk-new-9999"), cost="0.001"),
    # acme-docsum by credential, but another model: filtered out of Summaries, still billed to the period;
    # its unknown product name is "discovered"
    *[event(f"acme-4o-{i}", "2026-10-04T00:00:00", "user-123", product_name="Unknown Thing" if i == 0 else None,
            credential=("ignored-name", "sk-acme-1"), model="gpt-4o", cost="0.001") for i in range(7)],
    # before acme-docsum starts: attributed by subscriptionId, outside its term
    event("acme-september", "2026-09-15T00:00:00", "user-123", subscription="acme-docsum", cost="0.001"),
    # plan change: usage before Oct 15 rates on docsum-pro, after it on docsum-ent (the phase product,
    # whatever product the event names)
    *[event(f"pc-pro-{i}", "2026-10-05T00:00:00", "user-900", subscription="plan-change") for i in range(2)],
    *[event(f"pc-ent-{i}", "2026-10-20T00:00:00", "user-900", subscription="plan-change",
            product_name="DocSum Pro") for i in range(3)],
    event("pc-ent-by-subscriber", "2026-10-20T00:00:00", "user-900", product_name="DocSum Enterprise"),
    # user-900 is not on docsum-pro any more on Oct 20
    event("pc-pro-by-subscriber", "2026-10-20T00:00:00", "user-900", product_name="DocSum Pro"),
    # tokens: 100 + 100 + 50 = 250 tokens; the edge subscription has exactly 100
    event("tok-1", "2026-10-02T00:00:00", "user-456", subscription="tokens-acct", input_tokens=60, output_tokens=40),
    event("tok-2", "2026-10-03T00:00:00", "user-456", subscription="tokens-acct", input_tokens=100),
    event("tok-3", "2026-10-04T00:00:00", "user-456", subscription="tokens-acct", output_tokens=50),
    event("tok-edge", "2026-10-04T00:00:00", "user-edge", subscription="tokens-edge", input_tokens=100),
    # JPY: 2 + 3 characters, 7 pages
    event("jp-1", "2026-10-02T00:00:00", "user-789", subscription="jp-sub", units={"characters": 2}),
    event("jp-2", "2026-10-03T00:00:00", "user-789", subscription="jp-sub", units={"characters": 3, "pages": 7}),
    # aggregations and provider cost (agg-sub belongs to user-agg of acme)
    event("agg-1", "2026-10-02T00:00:00", "user-agg", subscription="agg-sub", organization_id="acme",
          input_tokens=1000, output_tokens=500, requestDuration=1.0000000001, isStreamed=True, environment="prod"),
    event("agg-2", "2026-10-03T00:00:00", "user-agg", subscription="agg-sub", model="gpt-4o", output_tokens=20,
          cost="0.25", requestDuration=2, isStreamed=False, environment="prod"),
    event("agg-3", "2026-10-04T00:00:00", "user-agg", subscription="agg-sub", input_tokens=1000, output_tokens=500,
          isStreamed=True, environment="dev"),
    event("agg-4", "2026-10-05T00:00:00", "user-agg", subscription="agg-sub", organization_name="Globex",
          input_tokens=1000, output_tokens=500),
    event("agg-5", "2026-10-06T00:00:00", "user-agg", subscription="agg-sub", provider="acmeai", model="tiny-model",
          input_tokens=1),
    event("agg-6", "2026-10-07T00:00:00", "user-agg", subscription="agg-sub", provider="acmeai",
          model="unknown-model", input_tokens=1),
    # trial ends 2026-10-08T00:00:00: three calls inside it, four after (the boundary instant is after)
    *[event(f"trial-in-{i}", t, "user-trial", subscription="trial-sub")
      for i, t in enumerate(["2026-10-02T00:00:00", "2026-10-03T00:00:00", "2026-10-07T23:59:59"])],
    *[event(f"trial-out-{i}", t, "user-trial", subscription="trial-sub")
      for i, t in enumerate(["2026-10-08T00:00:00", "2026-10-09T00:00:00", "2026-10-10T00:00:00",
                             "2026-10-31T23:59:59"])],
    # in advance: five calls in October
    *[event(f"adv-{i}", "2026-10-10T00:00:00", "user-adv", subscription="adv-sub") for i in range(5)],
    # unbilled
    *[event(f"mystery-{i}", t, "nobody", product_name="Mystery Product")
      for i, t in enumerate(["2026-10-02T00:00:00", "2026-10-09T00:00:00"])],
    event("nobody-pro", "2026-10-02T00:00:00", "nobody", product_id="docsum-pro"),
    # minute-sub: each side of every stretch's edges, to the microsecond
    *[event(f"min-{name}", t, "user-min", subscription="minute-sub") for name, t in [
        ("before-start", "2026-10-31T23:59:58.999999"), ("first-stretch-start", "2026-10-31T23:59:59"),
        ("first-stretch-last", "2026-10-31T23:59:59.999999"), ("midnight", "2026-11-01T00:00:00"),
        ("0005-last", "2026-11-01T00:04:59.999999"), ("0005", "2026-11-01T00:05:00"),
        ("0010", "2026-11-01T00:10:00"), ("active-last", "2026-11-01T00:12:29.999999"),
        ("after-end", "2026-11-01T00:12:30"),
    ]],
]


def bulk_events_sql(prefix: str, count: int, start: str, subscriber: str, **columns: str | None) -> str:
    """`count` gpt-4o-mini calls one second apart from `start`, 0.001 USD each."""
    values = {"subscription_id": None, "product_id": None, "product_name": None, "credential_name": None,
              "credential_value": None, **columns}
    literal = {name: "null" if value is None else f"'{value}'" for name, value in values.items()}
    return f"""
        insert into raw.events by name
        select
            '{prefix}-' || i as transaction_id, 'sha-{prefix}-' || i as payload_sha256, 'completion' as event_type,
            timestamp '{start}' + to_seconds(i) as request_time, 'openai' as provider, 'gpt-4o-mini' as model,
            0 as input_tokens, 0 as output_tokens, 0 as reasoning_tokens, 0 as cache_read_tokens,
            0 as cache_creation_tokens, 0 as total_tokens, 0.001 as reported_cost_usd,
            {literal['product_id']} as product_id, {literal['product_name']} as product_name,
            '{subscriber}' as subscriber_id, {literal['credential_name']} as credential_name,
            {literal['credential_value']} as credential_value, {literal['subscription_id']} as subscription_id,
            '{{}}' as attributes_json, 'landing/events/bulk.jsonl' as source_file, i as line_number,
            'load-1' as load_id, timestamp '2026-12-01 12:00:00' as loaded_at
        from range({count}) as t(i)
    """


def write_fixture(path: Path) -> None:
    connection = duckdb.connect(str(path))
    try:
        ensure_schema(connection)
        connection.executemany(
            "insert into catalog.products values (?, ?, ?, ?, ?, 'month', 1, 'calendar', ?, 'invoice_only', ?, ?, 0)",
            [list(p) for p in PRODUCTS],
        )
        connection.executemany("insert into catalog.metrics values (?, ?, ?, ?, ?, ?, ?, ?)", [list(m) for m in METRICS])
        connection.executemany("insert into catalog.metric_filters values (?, ?, ?, ?)", [list(f) for f in METRIC_FILTERS])
        connection.executemany("insert into catalog.tiers values (?, ?, ?, ?, ?, ?, ?, ?, null)", [list(t) for t in TIERS])
        connection.executemany("insert into catalog.organizations values (?, ?)", [list(o) for o in ORGANIZATIONS])
        connection.executemany(
            "insert into catalog.subscribers values (?, null, ?, ?, null)", [list(s) for s in SUBSCRIBERS]
        )
        for subscription_id, subscriber, phases in SUBSCRIPTIONS:
            connection.execute(
                "insert into catalog.subscriptions values (?, ?, ?, ?, null)",
                [subscription_id, subscription_id.replace("-", " ").title(), subscriber, phases[0][1]],
            )
            for number, (product_id, start, end) in enumerate(phases, start=1):
                connection.execute(
                    "insert into catalog.subscription_phases values (?, ?, ?, ?, ?)",
                    [subscription_id, number, product_id, start, end],
                )
        connection.executemany("insert into catalog.credentials values (?, ?, ?)", [list(c) for c in CREDENTIALS])
        connection.executemany(
            "insert into catalog.model_prices values (?, ?, ?, ?, ?, ?, ?, ?, ?)", [list(p) for p in MODEL_PRICES]
        )
        connection.executemany(
            "insert into catalog.subscription_periods values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null)",
            [list(p) for p in PERIODS],
        )
        placeholders = ", ".join("?" for _ in EVENT_COLUMNS)
        connection.executemany(
            f"insert into raw.events ({', '.join(EVENT_COLUMNS)}) values ({placeholders})",
            [list(e) for e in HANDMADE_EVENTS],
        )
        # acme-docsum: 1,000 calls by credential, 299 by subscriptionId; with acme-r3-id (rule 3 by id) and
        # 200 by subscriber + product name (rule 3, any case) that makes 1,500 gpt-4o-mini calls
        connection.execute(bulk_events_sql("acme-cred", 1000, "2026-10-05 00:00:00", "user-123",
                                           credential_value="sk-acme-1"))
        connection.execute(bulk_events_sql("acme-sub", 299, "2026-10-06 00:00:00", "user-123",
                                           subscription_id="acme-docsum"))
        connection.execute(bulk_events_sql("acme-name", 200, "2026-10-07 00:00:00", "user-123",
                                           product_name="docsum PRO", credential_name="laptop",
                                           credential_value="sk-laptop-2"))
        # globex-docsum: exactly 1,000 calls
        connection.execute(bulk_events_sql("globex", 1000, "2026-10-05 00:00:00", "user-456",
                                           subscription_id="globex-docsum"))
        connection.execute(
            "insert into raw.rejected_events values "
            "('landing/events/bad.jsonl', 3, 'invalid_json', null, '{not json', 'load-1', timestamp '2026-12-01 12:00:00')"
        )
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------
# running dbt
# --------------------------------------------------------------------------------------------


def run_dbt(args: list[str], warehouse: Path, target: Path) -> Any:
    previous = os.environ.get("METERHOUSE_WAREHOUSE")
    os.environ["METERHOUSE_WAREHOUSE"] = str(warehouse)
    try:
        return dbtRunner().invoke([
            *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
            "--target-path", str(target), "--log-path", str(target / "logs"), "--quiet",
        ])
    finally:
        release_warehouse()
        if previous is None:
            os.environ.pop("METERHOUSE_WAREHOUSE", None)
        else:
            os.environ["METERHOUSE_WAREHOUSE"] = previous


def release_warehouse() -> None:
    """dbt-duckdb keeps its DuckDB connection open in-process after an invocation; close it so
    the test (like the invoicing step after a dbt subprocess) can open the file itself."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("dbt_models")
    path = root / "warehouse.duckdb"
    write_fixture(path)
    result = run_dbt(["build"], path, root / "target")
    failures = [f"{r.node.unique_id}: {r.status} {r.message}" for r in (result.result or [])
                if str(r.status) not in ("success", "pass")]
    assert result.success and not failures, failures or result.exception
    yield path


@pytest.fixture(scope="module")
def db(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(warehouse), read_only=True)
    yield connection
    connection.close()


def rows(db: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[tuple]:
    return db.execute(sql, list(params)).fetchall()


def lines(db: duckdb.DuckDBPyConnection, draft_key: str) -> list[tuple]:
    return rows(db, """
        select line_number, kind, metric, tier_name, quantity, unit_rate, amount
        from marts.invoice_line_drafts where draft_key = ? order by line_number
    """, draft_key)


def total(db: duckdb.DuckDBPyConnection, draft_key: str) -> Decimal:
    (value,) = db.execute("select total from marts.invoice_drafts where draft_key = ?", [draft_key]).fetchone()
    return value


def D(text: str) -> Decimal:  # noqa: N802
    return Decimal(text)


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_marts_have_contract_names(db: duckdb.DuckDBPyConnection) -> None:
    tables = {name for (name,) in rows(db, "select table_name from information_schema.tables where table_schema = 'marts'")}
    assert {"usage_by_period", "invoice_drafts", "invoice_line_drafts", "unbilled_usage", "rejected_events",
            "margin_by_customer", "discovered_products", "auto_created_credentials"} <= tables
    columns = {name for (name,) in rows(db, "select column_name from information_schema.columns "
                                            "where table_schema = 'marts' and table_name = 'usage_by_period'")}
    assert {"subscription_id", "period_start", "period_end", "metric", "quantity", "event_count",
            "credential_name", "breakdown", "product_id", "organization_id"} <= columns


def test_not_null_mart_columns_are_enforced_by_the_table(warehouse: Path, db: duckdb.DuckDBPyConnection) -> None:
    """The marts' not_null columns are NOT NULL in DuckDB (a constraint, not a data test), so a
    null amount cannot reach the invoicing step."""
    declared = {
        ("invoice_drafts", "total"), ("invoice_drafts", "draft_key"), ("invoice_line_drafts", "amount"),
        ("usage_by_period", "quantity"), ("margin_by_customer", "currency"),
    }
    enforced = set(rows(db, """
        select table_name, unnest(constraint_column_names) from duckdb_constraints()
        where schema_name = 'marts' and constraint_type = 'NOT NULL'
    """))
    assert declared <= enforced
    copy = warehouse.with_name("not_null_probe.duckdb")
    copy.write_bytes(warehouse.read_bytes())
    with duckdb.connect(str(copy)) as connection:
        with pytest.raises(duckdb.ConstraintException, match="NOT NULL constraint failed: invoice_drafts.total"):
            connection.execute("update marts.invoice_drafts set total = null")


def test_tutorial_1500_requests(db: duckdb.DuckDBPyConnection) -> None:
    # 199.00 recurring + 1,000 x 1.50 + 500 x 1.35 = 199.00 + 1,500.00 + 675.00 = 2,374.00
    draft = key("acme-docsum", OCT, NOV)
    assert lines(db, draft) == [
        (1, "recurring", None, None, D("1"), D("199"), D("199.000")),
        (2, "usage", "Summaries", "First 1,000", D("1000"), D("1.5"), D("1500.000")),
        (3, "usage", "Summaries", "1,000+", D("500"), D("1.35"), D("675.000")),
    ]
    assert total(db, draft) == D("2374.00")


def test_exactly_1000_requests_does_not_enter_next_tier(db: duckdb.DuckDBPyConnection) -> None:
    # 199.00 + 1,000 x 1.50 = 1,699.00; "1,000+" covers (1000, inf): not entered, no line
    draft = key("globex-docsum", OCT, NOV)
    assert lines(db, draft) == [
        (1, "recurring", None, None, D("1"), D("199"), D("199.000")),
        (2, "usage", "Summaries", "First 1,000", D("1000"), D("1.5"), D("1500.000")),
    ]
    assert total(db, draft) == D("1699.00")


def test_zero_usage_gets_one_zero_line(db: duckdb.DuckDBPyConnection) -> None:
    draft = key("acme-docsum", NOV, DEC)
    assert lines(db, draft) == [
        (1, "recurring", None, None, D("1"), D("199"), D("199.000")),
        (2, "usage", "Summaries", None, D("0"), None, D("0.000")),
    ]
    assert total(db, draft) == D("199.00")


def test_volume_and_graduated_with_fixed_fees(db: duckdb.DuckDBPyConnection) -> None:
    # tiers: Small (0, 100] 0.10 + 5.00 fixed; Medium (100, 1000] 0.08 + 20.00; Large 0.05 + 50.00
    # 250 tokens, volume: all 250 in Medium: 250 x 0.08 = 20.00, + Medium's fee 20.00          = 40.00
    # 250 tokens, graduated: 100 x 0.10 = 10.00 + 5.00, then 150 x 0.08 = 12.00 + 20.00         = 47.00
    draft = key("tokens-acct", OCT, NOV)
    assert lines(db, draft) == [
        (1, "usage", "Tokens (volume)", "Medium", D("250"), D("0.08"), D("20.000")),
        (2, "usage", "Tokens (volume)", "Medium (fixed fee)", D("1"), D("20"), D("20.000")),
        (3, "usage", "Tokens (graduated)", "Small", D("100"), D("0.1"), D("10.000")),
        (4, "usage", "Tokens (graduated)", "Small (fixed fee)", D("1"), D("5"), D("5.000")),
        (5, "usage", "Tokens (graduated)", "Medium", D("150"), D("0.08"), D("12.000")),
        (6, "usage", "Tokens (graduated)", "Medium (fixed fee)", D("1"), D("20"), D("20.000")),
    ]
    assert total(db, draft) == D("87.00")
    # exactly 100 tokens is in Small, under both modes: 100 x 0.10 + 5.00 = 15.00 each
    edge = key("tokens-edge", OCT, NOV)
    assert [line[3] for line in lines(db, edge)] == ["Small", "Small (fixed fee)"] * 2
    assert total(db, edge) == D("30.00")


def test_jpy_rounds_half_even_once_per_line(db: duckdb.DuckDBPyConnection) -> None:
    # 5 characters x 0.5 JPY = 2.5 -> 2 (half-even; half-up would say 3)
    # 7 pages      x 0.5 JPY = 3.5 -> 4
    draft = key("jp-sub", OCT, NOV)
    assert [(line[2], line[4], line[6]) for line in lines(db, draft)] == [
        ("Characters", D("5"), D("2")),
        ("Pages", D("7"), D("4")),
    ]
    assert total(db, draft) == D("6")
    assert rows(db, "select currency, minor_units from marts.invoice_drafts where draft_key = ?", draft) == [("JPY", 0)]


def test_attribution_rules_and_credential_breakdown(db: duckdb.DuckDBPyConnection) -> None:
    rules = dict(rows(db, """
        select transaction_id, attribution_rule from intermediate.int_events_attributed
        where transaction_id in ('acme-cred-0', 'acme-sub-0', 'acme-name-0', 'acme-r3-id', 'pc-ent-by-subscriber')
    """))
    assert rules == {"acme-cred-0": "credential", "acme-sub-0": "subscription_id", "acme-name-0": "subscriber",
                     "acme-r3-id": "subscriber", "pc-ent-by-subscriber": "subscriber"}
    usage = rows(db, """
        select breakdown, credential_name, quantity, event_count from marts.usage_by_period
        where subscription_id = 'acme-docsum' and period_start = ? order by breakdown desc, credential_name
    """, OCT)
    # catalog name for sk-acme-1; the event's name for sk-laptop-2; masked '…9999' for a nameless new key
    assert usage == [
        ("total", None, D("1500"), 1500),
        ("credential", "(none)", D("299"), 299),
        ("credential", "laptop", D("200"), 200),
        ("credential", "prod-key", D("1000"), 1000),
        ("credential", "…9999", D("1"), 1),
    ]
    assert rows(db, """
        select subscription_id, credential_name, credential_value, first_seen_at
        from marts.auto_created_credentials order by credential_value
    """) == [
        ("acme-docsum", "laptop", "sk-laptop-2", ts("2026-10-07T00:00:00")),
        ("acme-docsum", "…9999", "sk-new-9999", ts("2026-10-03T00:00:00")),
    ]


def test_filter_on_model(db: duckdb.DuckDBPyConnection) -> None:
    # seven gpt-4o calls by acme's credential are billed to the period but filtered out of Summaries
    (event_count,) = db.execute(
        "select event_count from marts.invoice_drafts where draft_key = ?", [key("acme-docsum", OCT, NOV)]
    ).fetchone()
    assert event_count == 1507
    (quantity,) = db.execute("""
        select quantity from marts.usage_by_period
        where subscription_id = 'acme-docsum' and period_start = ? and breakdown = 'total'
    """, [OCT]).fetchone()
    assert quantity == D("1500")


def test_plan_change_rates_on_phase_product(db: duckdb.DuckDBPyConnection) -> None:
    # before Oct 15 on docsum-pro: 89.87 + 2 x 1.50 = 92.87
    # after: docsum-ent (whatever the event names): 273.65 + 4 x 1.00 = 277.65
    assert total(db, key("plan-change", OCT, ts("2026-10-15"))) == D("92.87")
    after = key("plan-change", ts("2026-10-15"), NOV)
    assert lines(db, after)[1] == (2, "usage", "Summaries", "All", D("4"), D("1"), D("4.000"))
    assert total(db, after) == D("277.65")


def test_unbilled_usage(db: duckdb.DuckDBPyConnection) -> None:
    assert rows(db, "select transaction_id, reason, subscription_id from marts.unbilled_usage order by 1") == [
        ("acme-september", "outside_subscription_term", "acme-docsum"),
        ("min-after-end", "outside_subscription_term", "minute-sub"),
        ("min-before-start", "outside_subscription_term", "minute-sub"),
        ("mystery-0", "unknown_product", None),
        ("mystery-1", "unknown_product", None),
        ("nobody-pro", "no_matching_subscription", None),
        ("pc-pro-by-subscriber", "no_matching_subscription", None),
    ]
    assert rows(db, """
        select product_id, product_name, event_count, unbilled_event_count, first_seen_at, last_seen_at
        from marts.discovered_products order by product_name
    """) == [
        (None, "Mystery Product", 2, 2, ts("2026-10-02"), ts("2026-10-09")),
        (None, "Unknown Thing", 1, 0, ts("2026-10-04"), ts("2026-10-04")),
    ]
    # every accepted event is either billed to a draft's period or unbilled
    (billed,) = db.execute("select sum(event_count) from marts.invoice_drafts").fetchone()
    (unbilled,) = db.execute("select count(*) from marts.unbilled_usage").fetchone()
    (accepted,) = db.execute("select count(*) from raw.events").fetchone()
    assert billed + unbilled == accepted


def test_each_event_bills_to_the_period_stretch_holding_it(db: duckdb.DuckDBPyConnection) -> None:
    # five-minute periods: the first active for one second only, the last cut at 00:12:30
    first, midnight, five, ten, fifteen = (ts("2026-10-31T23:55"), NOV, ts("2026-11-01T00:05"),
                                          ts("2026-11-01T00:10"), ts("2026-11-01T00:15"))
    assert rows(db, """
        select transaction_id, period_start, period_end, billing_status from intermediate.int_events_attributed
        where subscription_id = 'minute-sub' order by request_time
    """) == [
        ("min-before-start", None, None, "unbilled"),
        ("min-first-stretch-start", first, midnight, "billed"),
        ("min-first-stretch-last", first, midnight, "billed"),
        ("min-midnight", midnight, five, "billed"),
        ("min-0005-last", midnight, five, "billed"),
        ("min-0005", five, ten, "billed"),
        ("min-0010", ten, fifteen, "billed"),
        ("min-active-last", ten, fifteen, "billed"),
        ("min-after-end", None, None, "unbilled"),
    ]


def test_trial_usage_is_excluded_from_tiers(db: duckdb.DuckDBPyConnection) -> None:
    # 24.00 prorated fee; 4 calls from Oct 8 00:00 x 2.00 = 8.00; 3 trial calls shown at 0
    draft = key("trial-sub", OCT, NOV)
    assert lines(db, draft) == [
        (1, "recurring", None, None, D("1"), D("24"), D("24.000")),
        (2, "usage", "Calls", "All", D("4"), D("2"), D("8.000")),
        (3, "usage", "Calls", "Free trial", D("3"), D("0"), D("0.000")),
    ]
    assert total(db, draft) == D("32.00")
    assert rows(db, """
        select quantity, trial_quantity, event_count, trial_event_count from marts.usage_by_period
        where subscription_id = 'trial-sub' and breakdown = 'total'
    """) == [(D("4"), D("3"), 4, 3)]


def test_in_advance_opening_draft_and_recurring_service_period(db: duckdb.DuckDBPyConnection) -> None:
    opening = key("adv-sub", OCT, OCT)
    assert [(line[1], line[6]) for line in lines(db, opening)] == [("setup", D("50")), ("recurring", D("100"))]
    assert total(db, opening) == D("150.00")
    october = key("adv-sub", OCT, NOV)
    assert rows(db, """
        select kind, period_start, period_end, amount from marts.invoice_line_drafts
        where draft_key = ? order by line_number
    """, october) == [("recurring", NOV, DEC, D("100")), ("usage", OCT, NOV, D("5"))]
    assert total(db, october) == D("105.00")


def test_aggregations_and_provider_cost(db: duckdb.DuckDBPyConnection) -> None:
    quantities = dict(rows(db, """
        select metric, quantity from marts.usage_by_period
        where subscription_id = 'agg-sub' and breakdown = 'total'
    """))
    assert quantities == {
        # (1.0000000001 + 2) / 2 = 1.50000000005 -> 1.5000000000 half-even at 10 decimals
        "Avg duration": D("1.5"),
        "Peak output": D("500"),
        # gpt-4o-mini, gpt-4o, tiny-model, unknown-model
        "Distinct models": D("4"),
        # isStreamed true on agg-1 and agg-3
        "Streamed calls": D("2"),
        # agg-1 acme price: 1000 x 0.10/M + 500 x 0.40/M = 0.0003 (event names acme)
        # agg-2 reported 0.25
        # agg-3 acme price via its subscriber's organization: 0.0003
        # agg-4 names Globex, which has no override: list price 1000 x 0.15/M + 500 x 0.60/M = 0.00045
        # agg-5 1 token x 0.00005/M = 0.00000000005 -> 0.0000000000 (half-even at 10 decimals)
        # agg-6 no price: unknown, not counted
        "Provider cost": D("0.25105"),
        # environment = prod: agg-1, agg-2
        "Prod calls": D("2"),
    }
    costs = dict(rows(db, """
        select transaction_id, provider_cost_usd from intermediate.int_events_attributed
        where transaction_id like 'agg-%'
    """))
    assert costs == {"agg-1": D("0.0003"), "agg-2": D("0.25"), "agg-3": D("0.0003"), "agg-4": D("0.00045"),
                     "agg-5": D("0"), "agg-6": None}
    # 1.50 + 5.00 + 4.00 + 0.20 + 0.25105 -> 0.25 + 1.00 = 11.95
    draft = key("agg-sub", OCT, NOV)
    assert [line[6] for line in lines(db, draft)] == [D(x) for x in ("1.50", "5.00", "4.00", "0.20", "0.25", "1.00")]
    assert total(db, draft) == D("11.95")
    assert rows(db, "select events_without_cost from marts.invoice_drafts where draft_key = ?", draft) == [(1,)]


def test_margin_by_customer(db: duckdb.DuckDBPyConnection) -> None:
    # revenue is what was issued (tests/reporting works it through the ledger); nothing is issued
    # here, so the drafts are pending: acme, October: acme-docsum 2,374.00 + agg-sub 11.95
    # cost: 1,507 acme-docsum calls x 0.001 + agg-sub 0.25105 = 1.75805, against no revenue yet
    pending, cost = D("2385.95"), D("1.75805")
    assert rows(db, """
        select revenue, pending_revenue, provider_cost_usd, margin, margin_pct, status from marts.margin_by_customer
        where organization_id = 'acme' and period_start = ? and period_end = ?
    """, OCT, NOV) == [(D("0"), pending, cost, -cost, None, "open")]
    # JPY has no FX rate here: no USD view
    assert rows(db, """
        select currency, pending_revenue, usd_per_unit, pending_revenue_usd, drafts_without_fx_rate
        from marts.margin_by_customer where organization_id is null and period_start = ?
    """, OCT) == [("JPY", D("6"), None, None, 1)]


def test_draft_keys_and_rejected_events(db: duckdb.DuckDBPyConnection) -> None:
    (drafts,) = db.execute("select count(*) from marts.invoice_drafts").fetchone()
    assert drafts == len(PERIODS)
    assert rows(db, "select subscriber_email, organization_name from marts.invoice_drafts where draft_key = ?",
                key("acme-docsum", OCT, NOV)) == [("ap@acme.example", "Acme Corp")]
    assert rows(db, "select source_file, line_number, reason, raw from marts.rejected_events") == [
        ("landing/events/bad.jsonl", 3, "invalid_json", "{not json"),
    ]


def test_parse_needs_no_database(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "warehouse.duckdb"
    result = run_dbt(["parse"], missing, tmp_path / "target")
    assert result.success, result.exception
    assert not missing.parent.exists()


def test_a_repeated_transaction_id_in_raw_events_fails_the_build(warehouse: Path, tmp_path: Path) -> None:
    """raw.events has no primary key (the loader keeps ids unique); the staging model's unique
    test is what stops a repeated id before anything is rated twice."""
    copy = tmp_path / "repeated_id.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    with duckdb.connect(str(copy)) as connection:
        repeated = connection.execute("select transaction_id from raw.events order by 1 limit 1").fetchone()[0]
        connection.execute("insert into raw.events select * from raw.events where transaction_id = ?", [repeated])
    result = run_dbt(["test", "--select", "stg_raw__events"], copy, tmp_path / "target")
    failed = [r.node.name for r in result.result if str(r.status) == "fail"]
    assert not result.success
    # the event also counts twice against the reconciliation of billed and unbilled usage
    assert sorted(failed) == ["assert_every_event_billed_or_unbilled", "unique_across_loads_stg_raw__events_transaction_id"]


@pytest.mark.parametrize("repeat_in_load", [None, "load-2", "load-1"],
                         ids=["no-repeat", "new-load-repeats-a-rated-id", "rated-load-gained-a-row"])
def test_uniqueness_is_checked_for_the_loads_not_rated_yet(warehouse: Path, tmp_path: Path,
                                                           repeat_in_load: str | None) -> None:
    """With load-1 recorded as rated (all its events, as a successful rating records it), the
    test reads only the loads not rated yet, but still finds an id of a new load that a rated
    load already has, and a rated load that has since gained a row counts as not rated."""
    copy = tmp_path / "rated.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    with duckdb.connect(str(copy)) as connection:
        connection.execute("insert into billing.rated_loads select load_id, count(*) from raw.events group by load_id")
        assert connection.execute("select load_id from billing.rated_loads").fetchall() == [("load-1",)]
        if repeat_in_load is not None:
            connection.execute(
                "insert into raw.events by name select * replace (? as load_id) from raw.events"
                " where transaction_id = 'acme-cred-1'",
                [repeat_in_load],
            )
    result = run_dbt(["test", "--select", "test_name:unique_across_loads"], copy, tmp_path / "target")
    failed = sorted(r.node.name for r in result.result if str(r.status) == "fail")
    ran = sorted(r.node.name for r in result.result if r.node.resource_type == "test")
    assert ran == ["unique_across_loads_int_events_attributed_transaction_id",
                   "unique_across_loads_stg_raw__events_transaction_id"]
    # int_events_attributed is the table the build made (it does not see rows added to raw since)
    assert failed == ([] if repeat_in_load is None else ["unique_across_loads_stg_raw__events_transaction_id"])
    assert result.success == (repeat_in_load is None)
