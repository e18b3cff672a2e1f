"""Inputs of the finance reports, written just before the reports' dbt models are built.

- ``landing/fx_rates.csv`` (optional): ``currency,usd_per_unit,valid_from``. One unit of the
  currency is worth ``usd_per_unit`` USD from ``valid_from`` (UTC, RFC 3339 or a date) until the
  next row of the same currency. Revenue converts at the rate in force at the period's end.
- the run's clock (``as_of``): which periods are open for budget pacing;
- the catalog's optional per-subscription ``budget``.

All three are replaced whole in one transaction, like the catalog tables.
"""

from __future__ import annotations

import csv
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb

from contracts.catalog import CURRENCY_MINOR_UNITS, Catalog
from dagster_project.lib.periods import as_utc_naive

FX_COLUMNS = ("currency", "usd_per_unit", "valid_from")


class FxRatesError(ValueError):
    """fx_rates.csv is malformed; the message names the file, line and column."""


def fx_rates_path(data_dir: Path) -> Path:
    return data_dir / "landing" / "fx_rates.csv"


def read_fx_rates(path: Path) -> list[dict]:
    """Rows of ``fx_rates.csv`` with ``valid_to`` (the next ``valid_from`` of the currency)."""
    if not path.exists():
        return []
    rows: list[dict] = []
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in FX_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise FxRatesError(f"{path.name}: line 1: missing column(s) {', '.join(missing)}")
        for line_number, record in enumerate(reader, start=2):
            currency = (record["currency"] or "").strip().upper()
            try:
                if currency not in CURRENCY_MINOR_UNITS:
                    raise ValueError(f"currency: unknown currency {currency!r}")
                try:
                    rate = Decimal((record["usd_per_unit"] or "").strip())
                except InvalidOperation:
                    raise ValueError(f"usd_per_unit: {record['usd_per_unit']!r} is not a decimal number") from None
                if not rate.is_finite() or rate <= 0 or rate >= 10**10 or rate.as_tuple().exponent < -10:
                    raise ValueError(f"usd_per_unit: {record['usd_per_unit']!r} must be > 0 with at most 10 decimals")
                text = (record["valid_from"] or "").strip()
                text = text if "T" in text else f"{text}T00:00:00+00:00"
                valid_from = as_utc_naive(datetime.fromisoformat(text.replace("Z", "+00:00")))
            except ValueError as error:
                problems.append(f"{path.name}: line {line_number}: {error}")
                continue
            rows.append({"currency": currency, "usd_per_unit": rate, "valid_from": valid_from})
    seen: set[tuple[str, datetime]] = set()
    for row in rows:
        key = (row["currency"], row["valid_from"])
        if key in seen:
            problems.append(f"{path.name}: two rates for {key[0]} from {key[1].isoformat()}")
        seen.add(key)
    if problems:
        raise FxRatesError("; ".join(problems))
    rows.sort(key=lambda row: (row["currency"], row["valid_from"]))
    for current, following in zip(rows, [*rows[1:], None], strict=True):
        same = following is not None and following["currency"] == current["currency"]
        current["valid_to"] = following["valid_from"] if same else None
    return rows


def write_report_inputs(
    connection: duckdb.DuckDBPyConnection, data_dir: Path, as_of: datetime, catalog: Catalog | None,
    keep_fx_rates: bool = False,
) -> dict:
    """Replace reporting.fx_rates, reporting.run_clock and reporting.subscription_budgets.

    ``keep_fx_rates`` leaves the rates of the last good file in place (the file is malformed).
    """
    rates = [] if keep_fx_rates else read_fx_rates(fx_rates_path(data_dir))
    budgets = [
        (subscription.id, subscription.budget)
        for subscription in (catalog.subscriptions if catalog else [])
        if subscription.budget is not None
    ]
    connection.execute("begin transaction")
    try:
        if not keep_fx_rates:
            connection.execute("delete from reporting.fx_rates")
        connection.execute("delete from reporting.run_clock")
        connection.execute("delete from reporting.subscription_budgets")
        if rates:
            connection.executemany(
                "insert into reporting.fx_rates values (?, ?, ?, ?)",
                [[row["currency"], row["usd_per_unit"], row["valid_from"], row["valid_to"]] for row in rates],
            )
        connection.execute("insert into reporting.run_clock values (?)", [as_of])
        if budgets:
            connection.executemany("insert into reporting.subscription_budgets values (?, ?)", budgets)
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    kept = connection.execute("select count(*) from reporting.fx_rates").fetchone()[0]
    return {"fx_rates": kept, "budgets": len(budgets), "as_of": as_of.isoformat()}
