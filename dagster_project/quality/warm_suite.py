"""The Great Expectations suite in a worker process started at the beginning of a billing run.

Importing great_expectations costs ~4 s (it brings pandas, scipy, altair, sqlalchemy), all of it
single-threaded Python. Started when the run starts, a spawned worker pays that on the second
core while dbt rates on the first, and the release gate's draft checks then cost only the
validation itself. Without a started worker (a direct call, a test), the suite runs in process.
The worker holds no state between calls: the suite and its data docs are rebuilt on each call,
exactly as in process. In the worker, the data docs (an HTML rendering of the validation results
GX has stored, ~0.25 s) are built after the outcomes are returned, while the run issues the
invoices; the run waits for them before it ends. The outcomes themselves are recorded in
``billing.gate_results`` before anything is released.
"""

from __future__ import annotations

import sys
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dagster_project.lib.workers import process_pool

if TYPE_CHECKING:
    import pyarrow as pa

    from dagster_project.quality.gate import CheckOutcome

_worker: ProcessPoolExecutor | None = None
_docs: list[Future] = []


def _import_suite() -> None:
    import dagster_project.quality.suite  # noqa: F401
    from dagster_project.lib.gc_tuning import freeze_long_lived

    freeze_long_lived()  # Great Expectations' modules stay for the worker's life


def _validate(drafts: pa.Table, lines: pa.Table, quality_dir: Path,
              build_docs: bool = True) -> list[CheckOutcome]:
    from dagster_project.quality.suite import validate_drafts

    # pandas is imported here, in the worker (amounts stay exact: Decimal objects)
    return validate_drafts(drafts.to_pandas(), lines.to_pandas(), quality_dir, build_docs=build_docs)


def _build_docs(quality_dir: Path) -> None:
    from dagster_project.quality.suite import build_data_docs

    build_data_docs(quality_dir)


@contextmanager
def warm_suite():
    """For the duration of a run: a worker process that has imported the suite."""
    global _worker
    # spawned, and ends with the run even when the run is killed (lib/workers.py)
    _worker = process_pool(1)
    _worker.submit(_import_suite)  # the import starts now; validate_drafts queues behind it
    try:
        yield
    finally:
        worker, _worker = _worker, None
        docs, _docs[:] = list(_docs), []
        try:
            for built in docs:
                _report_docs_failure(built)
        finally:
            worker.shutdown(wait=True, cancel_futures=True)


def _report_docs_failure(built: Future) -> None:
    # the gate's outcomes are recorded already; a page that failed to render is said, not fatal
    error = built.exception()
    if error is not None:
        print(f"meterhouse: warning: Great Expectations data docs not built: {error}", file=sys.stderr)


def validate_drafts(drafts: pa.Table, lines: pa.Table, quality_dir: Path) -> list[CheckOutcome]:
    """The suite's outcomes over the due drafts and their lines (``gate._due_tables``), from the
    warm worker when the run started one."""
    if _worker is None:
        return _validate(drafts, lines, quality_dir)
    outcomes = _worker.submit(_validate, drafts, lines, quality_dir, False).result()
    _docs.append(_worker.submit(_build_docs, quality_dir))
    return outcomes
