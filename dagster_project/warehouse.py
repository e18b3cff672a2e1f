"""The DuckDB warehouse file: connection and the tables Python owns.

dbt owns the staging/intermediate models and the derived marts; Python owns what is a
record rather than a derivation: the raw event log, quarantine, the catalog dimensions
as loaded, and the invoice ledger (issued invoices never change, so they cannot be a
model that is rebuilt). Everything here is created idempotently.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from contracts import catalog as catalog_contract

RAW_EVENTS_COLUMNS = """\
    transaction_id          varchar   not null,   -- unique; no key: see ingest/loader.py
    payload_sha256          varchar,              -- id-less events: of the canonical JSON (their id); else null (ingest/loader.py)
    event_type              varchar   not null,
    request_time            timestamp not null,   -- UTC
    response_time           timestamp,
    provider                varchar,
    model                   varchar,
    input_tokens            bigint    not null,
    output_tokens           bigint    not null,
    reasoning_tokens        bigint    not null,
    cache_read_tokens       bigint    not null,
    cache_creation_tokens   bigint    not null,
    total_tokens            bigint    not null,   -- totalTokenCount, else input + output
    reported_cost_usd       decimal(20, 10),      -- totalCost, else the sum of the cost parts, else null
    organization_id         varchar,
    organization_name       varchar,
    product_id              varchar,
    product_name            varchar,
    subscriber_id           varchar   not null,
    subscriber_email        varchar,
    credential_name         varchar,
    credential_value        varchar,
    subscription_id         varchar,
    units_json              varchar,              -- the `units`/`payload` object as JSON text
    attributes_json         varchar   not null using compression zstd,  -- the whole event as JSON text (filters, custom elements)
    source_file             varchar   not null,
    line_number             bigint    not null,
    load_id                 varchar   not null,
    loaded_at               timestamp not null,
    transaction_id_hash     bigint               -- of transaction_id, for the loader's lookup (ingest/loader.py)
"""

# The catalog dimensions, replaced whole (table definition included) by the catalog asset on every
# load (catalog/loader.py): the contract (contracts/catalog.py) validates a catalog before it is
# written; these keys and checks hold whoever writes the tables, so dbt need not test them again
# (dbt/models/staging/_staging__models.yml). Value lists come from the contract's own types.
CATALOG_TABLES: dict[str, str] = {
    "products": """
    product_id          varchar not null primary key,
    product_name        varchar not null,
    currency            varchar not null,
    minor_units         integer not null,
    recurring_charge    decimal(18, 6) not null,
    period_unit         varchar not null,
    period_every        integer not null,
    billing_anchor      varchar not null,
    invoice_schedule    varchar not null,
    payment             varchar not null,
    setup_fee           decimal(18, 6) not null,
    free_trial_days     integer not null,
    grace_period_hours  integer not null,
    check (minor_units in ({minor_units})),
    check (invoice_schedule in ({invoice_schedules}))
""",
    "metrics": """
    product_id         varchar not null,
    metric_name        varchar not null,
    metric_position    integer not null,
    element            varchar not null,
    aggregation        varchar not null,
    aggregation_field  varchar,
    match_value        varchar,
    tier_mode          varchar not null,
    primary key (product_id, metric_name),
    check (aggregation in ({aggregations})),
    check (tier_mode in ({tier_modes}))
""",
    "metric_filters": """
    product_id     varchar not null,
    metric_name    varchar not null,
    field          varchar not null,
    allowed_value  varchar not null
""",
    "tiers": """
    product_id         varchar not null,
    metric_name        varchar not null,
    tier_position      integer not null,
    tier_name          varchar not null,
    lower_bound        decimal(21, 10) not null,
    upper_bound        decimal(21, 10),
    unit_rate          decimal(17, 12) not null,
    fixed_fee          decimal(18, 6) not null,
    notify_at_percent  varchar,
    primary key (product_id, metric_name, tier_position)
""",
    "organizations": """
    organization_id    varchar not null primary key,
    organization_name  varchar not null
""",
    "subscribers": """
    subscriber_id       varchar not null primary key,
    subscriber_name     varchar,
    email               varchar,
    organization_id     varchar,
    stripe_customer_id  varchar
""",
    "subscriptions": """
    subscription_id    varchar not null primary key,
    subscription_name  varchar,
    subscriber_id      varchar not null,
    start_at           timestamp not null,
    end_at             timestamp
""",
    "subscription_phases": """
    subscription_id  varchar not null,
    phase_number     integer not null,
    product_id       varchar not null,
    phase_start_at   timestamp not null,
    phase_end_at     timestamp
""",
    "credentials": """
    subscription_id   varchar not null,
    credential_name   varchar not null,
    credential_value  varchar not null unique
""",
    "model_prices": """
    organization_id             varchar,
    provider                    varchar not null,
    model                       varchar not null,
    input_per_million           decimal(17, 12) not null,
    output_per_million          decimal(17, 12) not null,
    cache_read_per_million      decimal(17, 12) not null,
    cache_creation_per_million  decimal(17, 12) not null,
    valid_from                  timestamp not null,
    valid_to                    timestamp
""",
    "subscription_periods": """
    subscription_id            varchar   not null,
    phase_number               integer   not null,
    product_id                 varchar   not null,
    currency                   varchar   not null,
    minor_units                integer   not null,
    period_start               timestamp not null,   -- usage period [period_start, period_end)
    period_end                 timestamp not null,
    active_start               timestamp not null,   -- the part of it the subscription was on this product
    active_end                 timestamp not null,
    trial_end_at               timestamp,
    due_at                     timestamp not null,   -- period_end + grace: when it may be invoiced
    recurring_start            timestamp,            -- service period the recurring fee on this invoice covers
    recurring_end              timestamp,
    recurring_billable_seconds bigint    not null,
    recurring_period_seconds   bigint    not null,
    recurring_amount           decimal(18, 3) not null,  -- prorated and rounded (money.round_money)
    setup_amount               decimal(18, 3) not null,
    recurring_note             varchar,                  -- 'prorated: 21 days of 31 days, ...'; last, as migrated
    check (minor_units in ({minor_units}))
""",
}


def _sql_list(values: object) -> str:
    return ", ".join(repr(value) if isinstance(value, str) else str(int(value)) for value in sorted(set(values)))


def _literal_values(model: type, field: str) -> tuple[str, ...]:
    return typing.get_args(model.model_fields[field].annotation)


_CATALOG_VALUES = {
    "minor_units": _sql_list(catalog_contract.CURRENCY_MINOR_UNITS.values()),
    "invoice_schedules": _sql_list(_literal_values(catalog_contract.Product, "invoice_schedule")),
    "aggregations": _sql_list(_literal_values(catalog_contract.Metric, "aggregation")),
    "tier_modes": _sql_list(_literal_values(catalog_contract.Metric, "tier_mode")),
}


def catalog_table_ddl(table: str, if_not_exists: bool = False) -> str:
    body = CATALOG_TABLES[table].format(**_CATALOG_VALUES)
    return f"create table {'if not exists ' if if_not_exists else ''}catalog.{table} ({body});"


DDL = """
create schema if not exists raw;
create schema if not exists catalog;
create schema if not exists billing;
create schema if not exists marts;

-- one row per file content ever loaded; a changed or re-dropped file shows up as a new hash
create table if not exists raw.loaded_files (
    source_file      varchar   not null,   -- path relative to the data dir, '/'-separated
    size_bytes       bigint    not null,
    content_sha256   varchar   not null,
    load_id          varchar   not null,
    loaded_at        timestamp not null,
    lines_read       bigint    not null,
    accepted         bigint    not null,
    duplicates       bigint    not null,
    rejected         bigint    not null,
    primary key (source_file, content_sha256)
);

-- accepted, deduplicated events; the first line with a transaction id wins for ever
create table if not exists raw.events (
{raw_events_columns}
);

create table if not exists raw.rejected_events (
    source_file   varchar   not null,
    line_number   bigint    not null,
    reason        varchar   not null,
    field         varchar,
    raw           varchar,
    load_id       varchar   not null,
    rejected_at   timestamp not null
);

create table if not exists raw.duplicate_events (
    transaction_id  varchar   not null,
    source_file     varchar   not null,
    line_number     bigint    not null,
    load_id         varchar   not null
);

{catalog_tables}

-- what intermediate.int_events_attributed was last built from (billing/rating_state.py): one row
create table if not exists billing.rating_state (
    inputs_fingerprint  varchar   not null,
    recorded_at         timestamp not null
);

-- the loads the last successful rating took in whole, with their event counts then: the
-- incremental models and the uniqueness tests look only at the loads not listed here
-- (billing/rating_state.py, dbt/macros/rated_loads.sql)
create table if not exists billing.rated_loads (
    load_id      varchar not null primary key,
    event_count  bigint  not null
);

-- invoice ledger: written only by the invoicing step, in one transaction per release
create table if not exists billing.invoice_number_sequences (
    invoice_year  integer not null primary key,
    last_number   bigint  not null
);

create table if not exists marts.invoices (
    invoice_number     varchar,                  -- null while held; assigned once at release
    draft_key          varchar   not null primary key,  -- subscription_id|period_start|period_end
    subscription_id    varchar   not null,
    subscription_name  varchar,
    organization_id    varchar,
    organization_name  varchar,
    subscriber_id      varchar   not null,
    subscriber_email   varchar,
    product_id         varchar   not null,
    product_name       varchar   not null,
    currency           varchar   not null,
    period_start       timestamp not null,
    period_end         timestamp not null,
    issued_at          timestamp,                -- invoice date: the moment the period closed
    released_at        timestamp,                -- wall clock of the release run (not printed)
    status             varchar   not null,       -- held | issued | void
    held_reasons       varchar,
    subtotal           decimal(18, 3) not null,
    total              decimal(18, 3) not null,
    payment_status     varchar   not null,       -- none | pending | paid | failed | external_paid
    payment_reference  varchar,
    document_sha256    varchar,
    void_reason        varchar,
    document_type      varchar   not null default 'invoice'   -- invoice | credit_note
);

-- late events re-rate an invoiced period; the difference waits here for the next invoice
create table if not exists billing.adjustments (
    adjustment_id            varchar   not null primary key,   -- <draft_key>#<n>
    draft_key                varchar   not null,               -- the re-rated period's draft
    subscription_id          varchar   not null,
    original_invoice_number  varchar   not null,
    period_start             timestamp not null,
    period_end               timestamp not null,
    currency                 varchar   not null,
    amount                   decimal(18, 3) not null,           -- re-rated total minus what was billed
    detected_at              timestamp not null,
    applied_invoice_number   varchar,                          -- the invoice or credit note carrying it
    applied_line_number      integer
);

create table if not exists marts.invoice_lines (
    invoice_number  varchar,
    draft_key       varchar   not null,
    line_number     integer   not null,
    kind            varchar   not null,          -- recurring | setup | usage | adjustment
    metric          varchar,
    tier_name       varchar,
    quantity        decimal(21, 10),
    unit_rate       decimal(17, 12),
    amount          decimal(18, 3) not null,
    currency        varchar   not null,
    event_count     bigint,
    period_start    timestamp not null,
    period_end      timestamp not null,
    description     varchar,
    line_type       varchar,                     -- finer than kind: tier, fixed_fee, trial, zero_usage, ...
    primary key (draft_key, line_number)
);

-- inputs of the finance reports (dagster_project/reporting/inputs.py), replaced whole every run
create schema if not exists reporting;
create table if not exists reporting.fx_rates (
    currency      varchar   not null,
    usd_per_unit  decimal(20, 10) not null,  -- 1 unit of currency = usd_per_unit USD
    valid_from    timestamp not null,
    valid_to      timestamp                  -- the next valid_from of the currency; null = open
);
create table if not exists reporting.run_clock (
    as_of  timestamp not null                 -- the run's clock: which periods are open
);
create table if not exists reporting.subscription_budgets (
    subscription_id  varchar not null,
    budget           decimal(18, 6) not null  -- per invoicing period, in the product's currency
);
"""


# DuckDB's memory limit for every connection of ours and dbt's (dbt/profiles.yml reads the same variable)
MEMORY_LIMIT_ENV = "METERHOUSE_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "2GB"
# No row-group vacuum at checkpoints, for every writer of ours and dbt's (dbt/profiles.yml too).
# Each load batch appends one or more full row groups and a partial one; DuckDB's vacuum merges
# runs of partial groups at the next checkpoint, which rewrites (and recompresses) all of
# raw.events that came in since the last one: 2.5 s of a 1 M-line load's 8 s, 12 s after a 5 M-line
# load. The tables that see deletes are small (drafts, report inputs), and dbt replaces its
# tables whole, so dead rows left in place cost nothing worth a rewrite (docs/DECISIONS.md).
MAX_VACUUM_TASKS = 0


def warehouse_path(data_dir: Path) -> Path:
    return data_dir / "warehouse.duckdb"


# columns added after a table first shipped: existing warehouses get them on the next connect
MIGRATIONS = """
alter table marts.invoices add column if not exists document_type varchar default 'invoice';
alter table catalog.subscription_periods add column if not exists recurring_note varchar;
alter table marts.invoice_lines add column if not exists line_type varchar;
-- the start of the latest load that hashed the file again and found this content (ingest/loader.py)
alter table raw.loaded_files add column if not exists verified_at timestamp;
"""


def ensure_schema(connection: duckdb.DuckDBPyConnection) -> None:
    catalog_tables = "\n".join(catalog_table_ddl(table, if_not_exists=True) for table in CATALOG_TABLES)
    connection.execute(DDL.format(raw_events_columns=RAW_EVENTS_COLUMNS, catalog_tables=catalog_tables))
    connection.execute(MIGRATIONS)
    _drop_events_primary_key(connection)
    _drop_payload_hash_not_null(connection)
    # 63 bits of the id's md5, which the loader probes instead of the id text (ingest/loader.py);
    # rows of older warehouses get theirs at their next load
    connection.execute("alter table raw.events add column if not exists transaction_id_hash bigint")


def _drop_events_primary_key(connection: duckdb.DuckDBPyConnection) -> None:
    """Warehouses made before 2026-11-27 have a primary key on raw.events.transaction_id, which
    DuckDB cannot drop: the table is copied once into one without it (ingest/loader.py says why)."""
    keyed = connection.execute(
        "select count(*) from duckdb_constraints() where schema_name = 'raw' and table_name = 'events'"
        " and constraint_type = 'PRIMARY KEY'"
    ).fetchone()[0]
    if not keyed:
        return
    connection.execute("begin")
    try:
        connection.execute(f"create table raw.events_unkeyed (\n{RAW_EVENTS_COLUMNS}\n)")
        connection.execute("insert into raw.events_unkeyed by name select * from raw.events")
        connection.execute("drop table raw.events")
        connection.execute("alter table raw.events_unkeyed rename to events")
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise


def _drop_payload_hash_not_null(connection: duckdb.DuckDBPyConnection) -> None:
    """Warehouses made before 2026-11-29 require raw.events.payload_sha256; events with an id now
    leave it null (their text is compared instead, ingest/loader.py). Their old hashes stay."""
    required = connection.execute(
        "select count(*) from duckdb_constraints() where schema_name = 'raw' and table_name = 'events'"
        " and constraint_type = 'NOT NULL' and constraint_column_names = ['payload_sha256']"
    ).fetchone()[0]
    if required:
        connection.execute("alter table raw.events alter column payload_sha256 drop not null")


@contextmanager
def connect(data_dir: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse; the connection is closed on exit so dbt (a subprocess) can open it next."""
    path = warehouse_path(data_dir)
    if read_only and not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet; run `meterhouse bill --period ...` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    # ICU is built in; without this DuckDB tries to autoinstall it from the network and fails offline
    connection = duckdb.connect(str(path), read_only=read_only, config={
        "TimeZone": "UTC", "autoinstall_known_extensions": False,
        # bounded memory: past the limit, joins and aggregates spill under the data dir
        "memory_limit": os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT),
        "temp_directory": str(data_dir / ".duckdb_tmp"),
        "max_vacuum_tasks": MAX_VACUUM_TASKS,
    })
    try:
        if not read_only:
            ensure_schema(connection)
        yield connection
    finally:
        connection.close()
