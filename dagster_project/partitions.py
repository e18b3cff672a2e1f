"""Billing-period partitions: a partition issues every invoice whose period closes in it."""

from __future__ import annotations

import re
from datetime import datetime

import dagster as dg

# end_offset=1 makes the current, still open month a partition too: billing it issues only
# what is already due (e.g. 5-minute test periods, cancellations) and previews the rest.
monthly_billing_periods = dg.MonthlyPartitionsDefinition(start_date="2020-01-01", end_offset=1)

_MONTH = re.compile(r"^\d{4}-\d{2}$")


def partition_key_for(period: str) -> str:
    """CLI period text (``2026-10``) -> the monthly partition key (``2026-10-01``)."""
    text = period.strip()
    if _MONTH.match(text):
        try:
            datetime.strptime(text, "%Y-%m")
        except ValueError:
            raise ValueError(f"period {period!r}: not a valid month (expected YYYY-MM, e.g. 2026-10)") from None
        return f"{text}-01"
    raise ValueError(f"period {period!r}: expected YYYY-MM (e.g. 2026-10)")
