"""Worker processes that end with the run that started them.

A run killed with SIGKILL (the reliability harness, the OOM killer, a container stop) runs no
``finally``: a ``ProcessPoolExecutor`` worker then waits forever on its call queue, whose pipe it
holds both ends of, with the run's stdout and stderr still open (seen: a killed ``meterhouse bill``
left its Great Expectations worker behind, and whatever read the run's output never saw it end).
Every pool here is spawned (the run has threads and open DuckDB handles a fork would copy) and
each worker asks Linux to kill it when its parent dies (``PR_SET_PDEATHSIG``), with a watcher
thread as the fallback where that call does not exist.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from dagster_project.lib.gc_tuning import skip_collection_at_exit

PR_SET_PDEATHSIG = 1
_PARENT_POLL_SECONDS = 1.0


def process_pool(max_workers: int) -> ProcessPoolExecutor:
    """A spawned pool whose workers exit when this process dies."""
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: die with the parent, however the parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the watcher below does it, within a second
        pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="exit-with-parent", daemon=True).start()
    # a worker imports Great Expectations or WeasyPrint; at exit, freeing all that is wasted time
    skip_collection_at_exit()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_SECONDS)
    os._exit(1)
