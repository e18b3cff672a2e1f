"""One writer per data directory.

DuckDB allows one writing process per file; two billing runs would also race for invoice
numbers. Writers take an exclusive advisory lock on ``<data dir>/.meterhouse.lock`` (released
by the OS if the process dies, so a kill -9 never leaves a stale lock). Readers (lookups,
dashboards) never take it: they read published snapshots.

A killed run can leave its dbt subprocess running for a while, holding DuckDB's own lock on
``warehouse.duckdb`` (dbt is not our child's child we can reach: dagster-dbt starts it). So
after taking our lock, a writer also waits, up to ``ORPHAN_GRACE_SECONDS`` or ``--wait``,
until no other process holds the warehouse file, and otherwise fails naming that, instead of
failing later inside a step with DuckDB's lock error.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ORPHAN_GRACE_SECONDS = 120.0


class DataDirBusy(RuntimeError):
    """Another process is writing to the data directory."""


def _wait_for_warehouse_file(path: Path, deadline: float, poll_seconds: float) -> None:
    """Wait until no other process holds a DuckDB lock on ``path`` (POSIX record locks, as DuckDB
    takes them). Our own process must not have the file open: closing our probe would drop them."""
    try:
        probe = os.open(path, os.O_RDWR)
    except OSError:  # no warehouse yet, or not writable: DuckDB says so itself
        return
    try:
        while True:
            try:
                fcntl.lockf(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(probe, fcntl.LOCK_UN)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise DataDirBusy(
                        f"{path}: another process still has the warehouse open (a reader holding it, or the"
                        " dbt of a killed run finishing); close it or pass --wait SECONDS"
                    ) from None
                time.sleep(poll_seconds)
    finally:
        os.close(probe)


@contextmanager
def exclusive_writer(data_dir: Path, wait_seconds: float = 0.0, poll_seconds: float = 0.2) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ".meterhouse.lock"
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(handle, 64, 0).decode(errors="replace").strip() or "unknown"
                    raise DataDirBusy(
                        f"{data_dir}: another Meterhouse run is writing here (pid {holder}); "
                        "wait for it to finish or pass --wait SECONDS"
                    ) from None
                time.sleep(poll_seconds)
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        _wait_for_warehouse_file(
            data_dir / "warehouse.duckdb", time.monotonic() + max(wait_seconds, ORPHAN_GRACE_SECONDS), poll_seconds
        )
        yield
    finally:
        os.close(handle)  # closing releases the lock
