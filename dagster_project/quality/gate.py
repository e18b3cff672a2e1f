"""The release gate (SPEC §3.9): data-quality checks that must pass before an invoice leaves.

Two scopes:

* **run** checks look at the whole warehouse (reconciliation, quarantine rate). A failure
  means no draft of the run can be trusted: every due draft is held with the check's name,
  and Dagster's blocking check stops invoicing, payments and notifications.
* **draft** checks look at each due draft and its lines (a Great Expectations suite):
  a failure holds only the drafts it names; the others are released.

Every outcome is recorded in ``billing.gate_results``; GX also writes its data docs under
``<data dir>/quality/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

# A file whose latest version has more than this fraction of rejected lines blocks billing.
MAX_REJECTED_FRACTION_ENV = "METERHOUSE_MAX_REJECTED_FRACTION"
DEFAULT_MAX_REJECTED_FRACTION = Decimal("0.05")

RUN_CHECKS = (
    "events_all_rated",
    "every_subscription_period_has_a_draft",
    "provider_cost_reconciles",
    "rejected_fraction_below_limit",
)
DRAFT_CHECKS = (
    "usage_quantities_and_amounts_non_negative",
    "line_currency_is_the_products",
    "invoice_total_is_the_sum_of_its_lines",
    "one_invoice_per_subscription_period",
    "no_event_after_the_run_time",
)

GATE_DDL = """
create table if not exists billing.gate_results (
    run_as_of    timestamp not null,
    check_name   varchar   not null,
    scope        varchar   not null,   -- run | draft
    passed       boolean   not null,
    draft_key    varchar,              -- the failing draft, for draft checks
    detail       varchar,
    recorded_at  timestamp not null
);
"""


@dataclass
class CheckOutcome:
    name: str
    scope: str
    passed: bool
    detail: str
    failing_drafts: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


def max_rejected_fraction() -> Decimal:
    text = os.environ.get(MAX_REJECTED_FRACTION_ENV)
    return Decimal(text) if text else DEFAULT_MAX_REJECTED_FRACTION


def run_checks(connection: duckdb.DuckDBPyConnection, limit: Decimal | None = None) -> list[CheckOutcome]:
    """Warehouse-wide checks; plain SQL, so they cost milliseconds."""
    limit = max_rejected_fraction() if limit is None else limit
    outcomes = []

    accepted, rated = connection.execute(
        "select (select count(*) from raw.events), (select count(*) from intermediate.int_events_attributed)"
    ).fetchone()
    outcomes.append(CheckOutcome(
        "events_all_rated", "run", accepted == rated,
        f"{accepted} accepted events, {rated} rated or listed as unbilled",
        metadata={"accepted": accepted, "rated": rated},
    ))

    missing, extra = connection.execute(
        """
        select
            (select count(*) from (select subscription_id, period_start, period_end from catalog.subscription_periods
                                   except select subscription_id, period_start, period_end from marts.invoice_drafts)),
            (select count(*) from (select subscription_id, period_start, period_end from marts.invoice_drafts
                                   except select subscription_id, period_start, period_end
                                   from catalog.subscription_periods))
        """
    ).fetchone()
    outcomes.append(CheckOutcome(
        "every_subscription_period_has_a_draft", "run", missing == 0 and extra == 0,
        f"{missing} subscription period(s) without a draft, {extra} draft(s) without a subscription period",
    ))

    # every accepted event's provider cost lands in exactly one bucket
    raw_cost, billed, trial, unbilled = connection.execute(
        """
        select
            (select coalesce(sum(provider_cost_usd), 0) from intermediate.int_events_attributed),
            (select coalesce(sum(provider_cost_usd), 0) from intermediate.int_events_attributed
              where billing_status = 'billed' and not is_trial),
            (select coalesce(sum(provider_cost_usd), 0) from intermediate.int_events_attributed
              where billing_status = 'billed' and is_trial),
            (select coalesce(sum(provider_cost_usd), 0) from marts.unbilled_usage)
        """
    ).fetchone()
    outcomes.append(CheckOutcome(
        "provider_cost_reconciles", "run", raw_cost == billed + trial + unbilled,
        f"provider cost {raw_cost:f} USD = billed {billed:f} + trial {trial:f} + unbilled {unbilled:f}",
        metadata={"raw": str(raw_cost), "billed": str(billed), "trial": str(trial), "unbilled": str(unbilled)},
    ))

    # the latest version of each file: a corrected file dropped at the same path clears the check
    offenders = connection.execute(
        """
        with latest as (
            select source_file, lines_read, rejected,
                   row_number() over (partition by source_file order by loaded_at desc, load_id desc) as version
            from raw.loaded_files
        )
        select source_file, rejected, lines_read from latest
        where version = 1 and lines_read > 0
          and cast(rejected as decimal(38, 10)) > cast(lines_read as decimal(38, 10)) * ?
        order by source_file
        """,
        [limit],
    ).fetchall()
    outcomes.append(CheckOutcome(
        "rejected_fraction_below_limit", "run", not offenders,
        "; ".join(f"{file}: {bad} of {read} lines rejected" for file, bad, read in offenders)
        or f"every file under {limit:.0%} rejected lines",
        metadata={"limit": str(limit), "files_over_limit": len(offenders)},
    ))
    return outcomes


def _due_tables(connection: duckdb.DuckDBPyConnection, window_start: datetime, window_end: datetime,
                as_of: datetime) -> tuple[pa.Table, pa.Table]:
    """The window's due drafts and their lines, as Arrow: the suite runs in the Great Expectations
    worker, which makes its pandas frames of them (no pandas import in the run's process)."""
    connection.complete()  # connection.sql() refuses to start while a result of execute() is open
    drafts = connection.sql(
        """
        select d.draft_key, d.subscription_id, d.period_start, d.period_end, d.total,
               coalesce(l.lines_total, 0) as lines_total,
               count(*) over (partition by d.subscription_id, d.period_start, d.period_end) as drafts_for_period,
               (select count(*) from intermediate.int_events_attributed as e
                 where e.subscription_id = d.subscription_id and e.period_start = d.period_start
                   and e.period_end = d.period_end and e.request_time > $as_of) as events_after_run
        from marts.invoice_drafts as d
        left join (select draft_key, sum(amount) as lines_total from marts.invoice_line_drafts group by 1) as l
          on l.draft_key = d.draft_key
        where d.due_at <= $as_of
          and case when d.period_start = d.period_end
                   then d.period_start >= $window_start and d.period_start < $window_end
                   else d.period_end > $window_start and d.period_end <= $window_end end
        """,
        params={"as_of": as_of, "window_start": window_start, "window_end": window_end},
    ).to_arrow_table()
    lines = connection.sql(
        """
        select l.draft_key, l.line_number, l.kind, l.quantity, l.amount, l.currency, p.currency as product_currency
        from marts.invoice_line_drafts as l
        join marts.invoice_drafts as d on d.draft_key = l.draft_key
        join catalog.products as p on p.product_id = d.product_id
        where l.draft_key in (select unnest($draft_keys))
        """,
        params={"draft_keys": drafts.column("draft_key").to_pylist()},
    ).to_arrow_table()
    return drafts, lines


def draft_checks(
    connection: duckdb.DuckDBPyConnection,
    data_dir: Path,
    window_start: datetime,
    window_end: datetime,
    as_of: datetime,
) -> list[CheckOutcome]:
    """The Great Expectations suite over the window's due drafts and their lines."""
    drafts, lines = _due_tables(connection, window_start, window_end, as_of)
    if drafts.num_rows == 0:
        return [CheckOutcome(name, "draft", True, "no due drafts") for name in DRAFT_CHECKS]
    # GX costs seconds to import: a run imports it in a worker while dbt rates (warm_suite.py)
    from dagster_project.quality.warm_suite import validate_drafts

    return validate_drafts(drafts, lines, data_dir / "quality")


def record(connection: duckdb.DuckDBPyConnection, outcomes: list[CheckOutcome], as_of: datetime) -> None:
    connection.execute(GATE_DDL)
    now = datetime.now().replace(microsecond=0)
    rows = []
    for outcome in outcomes:
        if outcome.failing_drafts:
            rows += [[as_of, outcome.name, outcome.scope, False, key, outcome.detail, now]
                     for key in outcome.failing_drafts]
        else:
            rows.append([as_of, outcome.name, outcome.scope, outcome.passed, None, outcome.detail, now])
    connection.executemany("insert into billing.gate_results values (?, ?, ?, ?, ?, ?, ?)", rows)


def holds_by_draft(outcomes: list[CheckOutcome]) -> dict[str, list[str]]:
    """Draft key -> names of the failing draft checks that hold it."""
    holds: dict[str, list[str]] = {}
    for outcome in outcomes:
        for key in outcome.failing_drafts:
            holds.setdefault(key, []).append(outcome.name)
    return holds
