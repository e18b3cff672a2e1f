"""Python's cyclic garbage collector in a billing process, which builds big object graphs that live
until it exits.

A billing run imports Dagster, dbt and Great Expectations, builds the definitions and parses dbt's
manifest: ~0.5 M objects that stay alive until the process ends. CPython's collector walked all of
them on each full collection (9 in a 1,000-event run, ~2.9 s in all) and once more when the
interpreter shut down (~2.4 s in the main process, ~1 s in the Great Expectations worker), work
that frees nothing (docs/performance.md). So: objects built once per process are frozen
(``gc.freeze``: reference counting still frees them, only the cycle search skips them), young
objects are collected less often (full collections as often as before, relative to young ones:
they are cheap once the long-lived objects are frozen, and WeasyPrint's layout leaves cycles
that must not pile up over 10 K invoices), and the collection at exit is skipped. Worker
processes keep CPython's thresholds and only skip the collection at exit.
"""

from __future__ import annotations

import atexit
import gc

# CPython's default is (700, 10, 10): a young collection per 700 allocations
BATCH_THRESHOLDS = (50_000, 10, 10)


def tune_for_batch_process() -> None:
    """Fewer collections for the rest of this process, and none of it again at exit."""
    gc.set_threshold(*BATCH_THRESHOLDS)
    skip_collection_at_exit()


def skip_collection_at_exit() -> None:
    """The interpreter's last collection frees nothing a process that is ending needs freed."""
    atexit.register(freeze_long_lived)


def freeze_long_lived() -> None:
    """Every object alive now lives as long as the process: leave it out of later collections."""
    gc.freeze()
