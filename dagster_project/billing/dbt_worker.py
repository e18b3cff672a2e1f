"""dbt in a second process, started with the ``meterhouse bill`` command and ready when the run
reaches dbt.

In one process, a small billing run is one long line of Python under one interpreter lock:
importing Dagster and dbt, loading dbt's manifest and setting dbt up, then dbt compiling and
running each node while Dagster turns the results into events (docs/performance.md). The
worker is forked at the command's start, before anything heavy is imported, and imports dbt,
loads the manifest (``dbt_inprocess.parsed_manifest``) and the modules a build needs while the
command imports Dagster and builds its definitions; during the build, dbt runs there and
Dagster handles its events here, on the other core.

Protocol (one pipe): the run sends ``(args, environment)``; the worker answers with
``("event", <dbt result event as a dict>)`` per finished node, then ``("done", success, detail)``
or ``("failed", message)`` when dbt could not run. One build at a time; ``None`` or a closed
pipe ends the worker. After each build the worker closes its DuckDB database (dbt-duckdb keeps
it open between invocations), so the run's own connections can open the file.

Only where a fork is safe and useful: the command's process with no thread started yet, the
DuckDB engine (dbt-spark runs as a subprocess anyway, ``billing/engines.py``). Everywhere else
(Dagster's UI, tests calling the runner) dbt runs in process as before.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster_project.lib.workers import exit_with_parent

# how long a worker that was told to stop may take before it is killed
STOP_TIMEOUT_SECONDS = 10.0
_CURRENT: DbtWorker | None = None


@dataclass
class BuildOutcome:
    success: bool
    detail: str | None  # dbt's exception or the first failing node, when not successful


class DbtWorkerError(RuntimeError):
    """The worker could not run dbt (it failed to start, or exited)."""


class DbtWorker:
    def __init__(self, parse_dir: Path):
        self.parse_dir = parse_dir.resolve()
        context = multiprocessing.get_context("fork")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child_end, parse_dir, os.getpid()), name="meterhouse-dbt", daemon=True
        )
        self._process.start()
        child_end.close()

    def build(self, args: Sequence[str]) -> Generator[dict[str, Any], None, BuildOutcome]:
        """Run ``dbt <args>`` in the worker; yield its result events; return a :class:`BuildOutcome`.

        The worker runs with this process's environment of the moment (the run sets the
        warehouse path). Stopping early still waits for dbt to finish, as in process."""
        try:
            self._connection.send((list(args), dict(os.environ)))
        except OSError as error:
            raise self._gone(error) from error
        finished = False
        try:
            while True:
                message = self._receive()
                if message[0] == "event":
                    yield message[1]
                elif message[0] == "done":
                    finished = True
                    return BuildOutcome(success=message[1], detail=message[2])
                else:
                    finished = True
                    raise DbtWorkerError(f"dbt worker: {message[1]}")
        finally:
            while not finished:  # the consumer stopped early: let dbt finish and leave the warehouse
                finished = self._receive()[0] != "event"

    def _receive(self) -> tuple:
        try:
            return self._connection.recv()
        except (EOFError, OSError) as error:
            raise self._gone(error) from error

    def _gone(self, error: BaseException) -> DbtWorkerError:
        self._process.join(timeout=1.0)
        return DbtWorkerError(f"dbt worker exited unexpectedly (exit code {self._process.exitcode}): {error}")

    def stop(self) -> None:
        try:
            self._connection.send(None)
        except OSError:
            pass  # already gone
        self._process.join(timeout=STOP_TIMEOUT_SECONDS)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()


def can_fork() -> bool:
    """Forking is safe only while this process has one thread (a lock held by another thread
    would stay locked in the child for ever)."""
    return hasattr(os, "fork") and threading.active_count() == 1


@contextmanager
def started(parse_dir: Path) -> Iterator[DbtWorker | None]:
    """A worker for the builds of this block, when one can be forked (else None: in process)."""
    global _CURRENT
    if _CURRENT is not None or not can_fork():
        yield None
        return
    worker = DbtWorker(parse_dir)
    _CURRENT = worker
    try:
        yield worker
    finally:
        _CURRENT = None
        worker.stop()


def current(parse_dir: Path) -> DbtWorker | None:
    """The running worker, if it loaded the manifest of ``parse_dir``."""
    if _CURRENT is not None and _CURRENT.parse_dir == parse_dir.resolve():
        return _CURRENT
    return None


# ---------------------------------------------------------------------------------------------
# the worker process


def _detach_from_run(parent_pid: int) -> None:
    """The worker never outlives the run: left alive, it would go on writing to the warehouse
    outside the run's writer lock (lib/locking.py) while a rerun starts."""
    exit_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: the run stops, and waits for dbt to finish its build
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _serve(connection, parse_dir: Path, parent_pid: int) -> None:
    _detach_from_run(parent_pid)
    # dbt's console output (--quiet: errors only) is in its log file too; the command's stdout
    # is its answer
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    send_lock = threading.Lock()  # dbt's threads report results concurrently

    def send(message: tuple) -> None:
        with send_lock:
            connection.send(message)

    try:
        run = _prepare(parse_dir)
        not_ready = None
    except BaseException as error:  # noqa: BLE001 - reported to the run at its first build
        run, not_ready = None, f"{type(error).__name__}: {error}"
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        args, environment = request
        if run is None:
            send(("failed", not_ready))
            continue
        os.environ.clear()
        os.environ.update(environment)
        try:
            outcome = run(args, send)
        except BaseException as error:  # noqa: BLE001 - any failure is the run's to report
            send(("failed", f"{type(error).__name__}: {error}"))
        else:
            send(("done", outcome.success, outcome.detail))


def _prepare(parse_dir: Path):
    """Import dbt and load the manifest; return the function that runs one build."""
    from dagster_project.billing import dbt_inprocess

    manifest = dbt_inprocess.parsed_manifest(parse_dir)
    # what a build imports on first use, imported now while the run is not waiting for it
    import dbt.adapters.duckdb  # noqa: F401
    import dbt.cli.main  # noqa: F401
    import dbt.task.build  # noqa: F401

    def run(args: list[str], send) -> BuildOutcome:
        return dbt_inprocess.run_build(manifest, args, lambda event: send(("event", event)))

    return run
