"""One writer per data dir: a second writer fails clearly or waits; a killed writer frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagster_project.lib.locking import DataDirBusy, exclusive_writer

HOLDER = """
import sys, time
from pathlib import Path
from dagster_project.lib.locking import exclusive_writer
with exclusive_writer(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(data_dir: Path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir), str(seconds)], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_fails_with_the_holders_pid(tmp_path: Path) -> None:
    holder = hold(tmp_path, 30)
    try:
        with pytest.raises(DataDirBusy) as busy, exclusive_writer(tmp_path):
            pass
        assert f"pid {holder.pid}" in str(busy.value) and "--wait" in str(busy.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_second_writer_can_wait_for_the_first(tmp_path: Path) -> None:
    holder = hold(tmp_path, 0.5)
    started = time.monotonic()
    with exclusive_writer(tmp_path, wait_seconds=20):
        waited = time.monotonic() - started
    holder.wait()
    assert waited > 0.1


def test_a_writer_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = hold(tmp_path, 30)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with exclusive_writer(tmp_path):
        pass


DUCKDB_HOLDER = """
import pathlib, sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("open", flush=True)
time.sleep(float(sys.argv[2]))
# written before the file is let go: whoever gets the file next finds it
pathlib.Path(sys.argv[3]).touch()
connection.close()
"""


def hold_warehouse(data_dir: Path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", DUCKDB_HOLDER, str(data_dir / "warehouse.duckdb"), str(seconds),
         str(data_dir / "holder-closing")],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout.readline().strip() == "open"
    return process


def test_a_process_still_holding_the_warehouse_file_is_waited_for(tmp_path: Path, monkeypatch) -> None:
    # like the dbt of a killed run: no Meterhouse lock, but DuckDB's own lock on the file
    holder = hold_warehouse(tmp_path, 1.0)
    with exclusive_writer(tmp_path):
        # we got in only after it let go (not after it exited: that can come a moment later)
        assert (tmp_path / "holder-closing").exists()
    holder.wait()


def test_a_process_that_keeps_the_warehouse_open_is_named_after_the_grace(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("dagster_project.lib.locking.ORPHAN_GRACE_SECONDS", 0.5)
    holder = hold_warehouse(tmp_path, 30)
    try:
        with pytest.raises(DataDirBusy) as busy, exclusive_writer(tmp_path):
            pass
        assert "still has the warehouse open" in str(busy.value)
        # our own lock was released on the way out: the next writer is not blocked by us
        holder.kill()
        holder.wait()
        with exclusive_writer(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
