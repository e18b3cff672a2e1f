"""Pool workers end with the run that started them, even when it is killed (lib/workers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dagster_project.lib.workers import process_pool

# a "run": start a pool of two, make the workers exist, print their pids, then SIGKILL itself
KILLED_RUN = """
import os, signal, sys
from dagster_project.lib.workers import process_pool
pool = process_pool(2)
list(pool.map(abs, range(4)))
print(" ".join(str(pid) for pid in pool._processes), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead: it only waits for its (new) parent to collect it
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().split(") ")[1][0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent() -> None:
    # stdout goes to a pipe: communicate() returns only once every holder (the workers too) is gone
    run = subprocess.run([sys.executable, "-c", KILLED_RUN], capture_output=True, text=True, timeout=60)
    assert run.returncode == -9, run.stderr
    workers = [int(pid) for pid in run.stdout.split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def test_the_pool_works_and_its_workers_know_their_parent() -> None:
    with process_pool(2) as pool:
        assert sorted(pool.map(abs, [-2, 1, -3])) == [1, 2, 3]
        assert set(pool.map(_parent_of_worker, range(2))) == {os.getpid()}


def _parent_of_worker(_: int) -> int:
    return os.getppid()
