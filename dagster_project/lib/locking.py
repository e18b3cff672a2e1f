"""One writer per data directory.

DuckDB allows one writing process per file; two billing runs would also race for invoice
numbers. Writers take an exclusive advisory lock on ``<data dir>/.meterhouse.lock`` (released
by the OS if the process dies, so a kill -9 never leaves a stale lock). Readers (lookups,
dashboards) never take it: they read published snapshots.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DataDirBusy(RuntimeError):
    """Another process is writing to the data directory."""


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
        yield
    finally:
        os.close(handle)  # closing releases the lock
