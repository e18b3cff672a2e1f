"""Named crash points for the kill -9 harness (``tests/reliability/test_kill9.py``).

Each step that writes state calls ``fault_point("<step>.<moment>")`` at the moments where a
crash is most likely to lose or double something: right before and after a commit, between
an external effect (a Stripe charge, an SMTP delivery, a document file) and the row that
records it. When ``METERHOUSE_FAULT_POINT`` names the point (``name``, or ``name@N`` for its
N-th hit in this process) the process sends itself SIGKILL: no ``finally``, no ``atexit``,
no flush, exactly what the OOM killer or a power cut does. Unset (always, outside the
harness), a call costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

from dagster_project import settings

# every point the pipeline calls, in run order; the harness iterates over this list
POINTS: tuple[str, ...] = (
    "ingest.before_commit",
    "ingest.after_commit",
    "catalog.before_commit",
    "rating.before_dbt",
    "rating.after_dbt",
    "release.numbered",
    "release.committed",
    "render.html_written",
    "render.pdf_written",
    "payment.after_stripe_answer",
    "payment.recorded",
    "notify.after_delivery",
    "notify.recorded",
)

_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL if the harness asked for a crash here."""
    wanted = settings.fault_point()
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
