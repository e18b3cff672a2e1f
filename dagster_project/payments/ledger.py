"""Tables the payments domain owns, created idempotently, and the amounts it sends to Stripe.

``billing.payment_attempts`` is the charge ledger: a row is committed *before* Stripe is
called (state ``started``) and updated in a second transaction with Stripe's answer, so
a process that dies in between leaves a trace that the next run resolves by looking the
PaymentIntent up in Stripe instead of charging again.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import duckdb

from dagster_project.lib.money import to_minor_units

PAYMENTS_DDL = """
create schema if not exists billing;
create schema if not exists marts;

-- one row per charge attempt of an invoice; written before and after every Stripe call
create table if not exists billing.payment_attempts (
    invoice_number     varchar   not null,
    attempt_number     integer   not null,   -- 1 = first charge, 2.. = scheduled retries
    state              varchar   not null,   -- started | succeeded | failed | requires_action | unknown
    payment_intent_id  varchar,
    amount_minor       bigint    not null,   -- as sent to Stripe (Stripe's minor-unit rules)
    currency           varchar   not null,   -- lowercase, as sent to Stripe
    idempotency_key    varchar   not null,   -- meterhouse:<invoice_number>:attempt-<n>
    customer_id        varchar,              -- the Stripe customer charged
    decline_code       varchar,              -- Stripe's decline_code, else its error code, else ours
    failure_message    varchar,
    run_as_of          timestamp not null,   -- the run's clock: the retry schedule counts from it
    started_at         timestamp not null,   -- wall clock, UTC
    finished_at        timestamp,
    primary key (invoice_number, attempt_number)
);

-- Stripe customers created (or found) for subscribers without stripe_customer_id in the catalog
create table if not exists billing.stripe_customers (
    subscriber_id       varchar   not null primary key,
    stripe_customer_id  varchar   not null,
    origin              varchar   not null,   -- created | found
    recorded_at         timestamp not null
);

-- landing/payments/*.csv files applied (by content), so a rerun never re-applies an old file
create table if not exists billing.external_payment_files (
    source_file     varchar   not null,       -- relative to the data dir, '/'-separated
    content_sha256  varchar   not null,
    lines_read      integer   not null,
    applied         integer   not null,
    problems        integer   not null,
    applied_at      timestamp not null,
    primary key (source_file, content_sha256)
);

-- every external payment update: a CSV line (source_file + line_number) or the CLI (source 'cli')
create table if not exists billing.external_payments (
    source          varchar   not null,
    line_number     integer,
    invoice_number  varchar,
    status          varchar,                  -- paid | failed; null when the line was rejected
    reference       varchar,
    paid_at         timestamp,
    problem         varchar,                  -- why the line was not applied
    recorded_at     timestamp not null
);
"""

# Extra ledger columns on marts.invoices (SPEC §4 welcomes extra columns): why a charge failed.
INVOICE_COLUMNS = (
    ("payment_failure_code", "varchar"),
    ("payment_failure_message", "varchar"),
    ("paid_at", "timestamp"),
)

# Stripe's currency rules differ from ISO 4217 in a few places (docs.stripe.com/currencies):
# three-decimal currencies take 3 decimals but the last digit must be 0; ISK is sent as if it had
# two decimals (amount * 100, divisible by 100) for backwards compatibility.
STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
STRIPE_TWO_DECIMAL_COMPAT = frozenset({"ISK"})


def ensure_payment_tables(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(PAYMENTS_DDL)
    if connection.execute(
        "select count(*) from information_schema.tables where table_schema = 'marts' and table_name = 'invoices'"
    ).fetchone()[0]:
        for name, kind in INVOICE_COLUMNS:
            connection.execute(f"alter table marts.invoices add column if not exists {name} {kind}")


def stripe_amount(amount: Decimal, currency: str) -> int:
    """The integer ``amount`` Stripe expects for an invoice total in ``currency``.

    JPY 2374 -> 2374; USD 12.34 -> 1234; KWD 12.345 -> 12340 (half-even to a multiple of 10,
    Stripe's rule for three-decimal currencies); ISK 2374 -> 237400.
    """
    code = currency.upper()
    minor = to_minor_units(Decimal(amount), code)
    if code in STRIPE_THREE_DECIMAL:
        return int((Decimal(minor) / 10).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) * 10
    if code in STRIPE_TWO_DECIMAL_COMPAT:
        return minor * 100
    return minor
