"""The one place that reads the environment (secrets stay in the environment: never in files)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
EXAMPLES_DIR = PROJECT_ROOT / "data" / "examples"

DATA_DIR_ENV = "METERHOUSE_DATA_DIR"
AS_OF_ENV = "METERHOUSE_AS_OF"
# read by dbt/profiles.yml: the dbt subprocess finds the warehouse through it
WAREHOUSE_ENV = "METERHOUSE_WAREHOUSE"
# payments and notifications (SPEC §3.10): secrets live only in the environment
STRIPE_API_KEY_ENV = "STRIPE_API_KEY"
STRIPE_API_BASE_ENV = "STRIPE_API_BASE"
SMTP_URL_ENV = "METERHOUSE_SMTP_URL"
# the engine dbt rates on (docs/scale-out.md): duckdb, the default, or spark
ENGINE_ENV = "METERHOUSE_ENGINE"
ENGINES = ("duckdb", "spark")
# read by dbt/profiles.yml's spark target: the Parquet lake (<data dir>/lake), set by billing/engines.py
LAKE_ENV = "METERHOUSE_LAKE"


def data_dir(explicit: str | Path | None = None) -> Path:
    """``--data-dir``, else ``METERHOUSE_DATA_DIR``, else ``./data`` (SPEC §0)."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV) or "data"
    return Path(chosen).expanduser().resolve()


def parse_instant(text: str) -> datetime:
    """An RFC 3339 instant as a naive UTC datetime (the warehouse's time convention)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def as_of(explicit: str | None = None) -> datetime:
    """The run's clock: decides which periods are closed. Fixed by tests and backfills."""
    chosen = explicit or os.environ.get(AS_OF_ENV)
    if chosen:
        return parse_instant(chosen)
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def engine(explicit: str | None = None) -> str:
    """``duckdb`` (default) or ``spark``: which dbt target rates usage. A configuration choice, not
    a code edit; the models are the same on both."""
    chosen = (explicit or os.environ.get(ENGINE_ENV) or "duckdb").strip().lower()
    if chosen not in ENGINES:
        raise ValueError(f"{ENGINE_ENV}={chosen!r}: expected one of {', '.join(ENGINES)}")
    return chosen


def stripe_api_key() -> str | None:
    """The Stripe secret key, or None when payments through Stripe are not configured.

    Never print, log or store it: callers pass it straight to the Stripe client.
    """
    return os.environ.get(STRIPE_API_KEY_ENV) or None


def stripe_api_base() -> str | None:
    """Base URL of the Stripe API (a local fake such as localstripe in tests), else Stripe's own."""
    return os.environ.get(STRIPE_API_BASE_ENV) or None


def smtp_url() -> str | None:
    """``smtp://[user:password@]host:port`` (or ``smtps://``) for notification e-mail; None: write
    ``.eml`` files to ``<data dir>/outbox/`` instead. May hold a password: never log it."""
    return os.environ.get(SMTP_URL_ENV) or None


# test harness only (tests/reliability): the crash point a run kills itself at, see lib/faults.py
FAULT_POINT_ENV = "METERHOUSE_FAULT_POINT"


def fault_point() -> str | None:
    return os.environ.get(FAULT_POINT_ENV) or None
