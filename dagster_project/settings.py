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
