"""dbt without a dbt process per invocation: every build reuses a parsed manifest, parsed once per
change of the project.

``DbtCliResource.cli`` starts a ``dbt`` subprocess per invocation; on a small period that fixed
cost (interpreter and dbt import, ``dbt --version``, adapter set-up, the partial-parse check)
was most of a billing run's dbt time (docs/performance.md). Here dbt runs through ``dbtRunner``
with a manifest parsed once (:func:`parsed_manifest`), and each result event of dbt's
structured log is turned into Dagster events by dagster-dbt's own ``DbtCoreCliEventMessage``:
the same materializations and asset-check results as the CLI path, from the same selection
(dagster-dbt computes it from the run's asset subset).

Partial parsing is keyed on the profile, and the profile names the warehouse path, so the parse
runs with ``METERHOUSE_WAREHOUSE`` unset (only the build connects, with the path of the data dir
at hand). Its state, and the parsed manifest pickled, stay in ``<data dir>/.dbt/parse``; a new
data dir starts from the ones ``make install`` prepares with this same function
(``python -m dagster_project.billing.dbt_inprocess`` into ``dbt/target/inprocess-parse``), not
from ``dbt/target``'s own, which any dbt command with another environment rewrites.

Where it runs: under ``meterhouse bill``, in a worker process forked at the command's start,
which has dbt imported and the manifest loaded by the time the run reaches dbt and runs it on the
other core while Dagster handles the events here (``billing/dbt_worker.py``); elsewhere (the UI,
tests calling the runner) in a thread of this process. Same arguments, same events either way.

The DuckDB engine only: dbt-spark's session method starts a JVM inside dbt, which stays a
subprocess (``billing/engines.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import pickle
import queue
import re
import shutil
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_project import settings, warehouse
from dagster_project.billing import dbt_worker
from dagster_project.lib.gc_tuning import freeze_long_lived

if TYPE_CHECKING:  # the dbt worker imports this module without Dagster (billing/dbt_worker.py)
    import dagster as dg

# dbt's structured-log events that carry one node's result (what dagster-dbt turns into events)
RESULT_EVENTS = frozenset({"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"})
_PARSED: dict[Path, Any] = {}
_PARSE_LOCK = threading.Lock()


class DbtInvocationError(RuntimeError):
    """dbt failed: a node errored, or dbt itself could not run."""


def _project_args(target_path: Path) -> list[str]:
    project_dir = str(settings.DBT_PROJECT_DIR)
    return ["--project-dir", project_dir, "--profiles-dir", project_dir, "--target-path", str(target_path),
            "--log-path", str(target_path)]


# the partial-parse state `make install` prepares, with the same environment as a run's parse
SEED_DIR = settings.DBT_PROJECT_DIR / "target" / "inprocess-parse"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# the parsed manifest itself, behind the key of what the parse read (see _parse_key)
MANIFEST_FILE = "manifest.pickle"
# what the file holds (see _manifest_fields); part of the key, so a file of another layout is a miss
MANIFEST_FORMAT = b"meterhouse manifest fields 1\0"
# the profile reads these; a run sets them, a parse must not see them (they key dbt's partial parse)
RUN_ONLY_ENV = (settings.WAREHOUSE_ENV, warehouse.MEMORY_LIMIT_ENV)
_ENV_VAR_CALL = re.compile(rb"""env_var\(\s*['"]([^'"]+)['"]""")


@contextmanager
def _parse_environment():
    """The environment without ``RUN_ONLY_ENV``, restored on exit."""
    saved = {name: os.environ.pop(name) for name in RUN_ONLY_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _parse(target: Path):
    from dbt.cli.main import dbtRunner

    target.mkdir(parents=True, exist_ok=True)
    # parsing connects to nothing
    with _parse_environment():
        result = dbtRunner().invoke(["--quiet", "parse", *_project_args(target), "--no-write-json"])
    if not result.success or result.result is None:
        raise DbtInvocationError(f"dbt parse failed: {result.exception or 'see ' + str(target / 'dbt.log')}")
    return result.result


def _parse_key(project_dir: Path) -> bytes:
    """A hash of everything a parse of ``project_dir`` reads: the versions of Python, dbt and the
    adapter, every file of the project (path and bytes; not ``target/`` and ``logs/``, which dbt
    writes) and, in the parse's environment, the variables the project names in ``env_var()``
    and dbt's own ``DBT_*``. Broader than dbt's partial-parse check: any change re-parses."""
    digest = hashlib.sha256(MANIFEST_FORMAT)
    digest.update(sys.version.encode())
    for package in ("dbt-core", "dbt-adapters", "dbt-common", "dbt-duckdb"):
        digest.update(f"\0{package}={importlib.metadata.version(package)}".encode())
    names = {name for name in os.environ if name.startswith("DBT_")}
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if not path.is_file() or relative.parts[0] in {"target", "logs"}:
            continue
        content = path.read_bytes()
        names.update(match.decode() for match in _ENV_VAR_CALL.findall(content))
        digest.update(b"\0file\0" + relative.as_posix().encode() + b"\0" + hashlib.sha256(content).digest())
    with _parse_environment():
        for name in sorted(names):
            value = os.environ.get(name)
            digest.update(f"\0env\0{name}\0{'unset' if value is None else 'set=' + value}".encode())
    return digest.hexdigest().encode()


# built again on first use; the lock is the process's own
_MANIFEST_RUNTIME_FIELDS = frozenset({
    "_doc_lookup", "_source_lookup", "_ref_lookup", "_metric_lookup", "_saved_query_lookup",
    "_semantic_model_by_measure_lookup", "_disabled_lookup", "_analysis_lookup", "_singular_test_lookup",
    "_function_lookup", "_lock", "_macros_by_name", "_macros_by_package",
})


def _manifest_fields(manifest) -> dict[str, Any]:
    """The manifest's fields by name, without its lookups and lock. Not dbt's own pickling:
    ``Manifest.__reduce_ex__`` (dbt-core 1.11) passes its fields by position and leaves one out,
    so every lookup after it lands in the wrong field (a fully parsed manifest then fails to
    compile any ``ref``)."""
    return {field.name: getattr(manifest, field.name) for field in dataclasses.fields(manifest)
            if field.init and field.name not in _MANIFEST_RUNTIME_FIELDS}


def _load_manifest(directory: Path, key: bytes):
    """The manifest pickled in ``directory`` under ``key``, or None (no file, another key, or a
    file that does not unpickle: the caller parses again)."""
    from dbt.contracts.graph.manifest import Manifest

    try:
        with (directory / MANIFEST_FILE).open("rb") as file:
            if file.readline().rstrip(b"\n") != key:
                return None
            return Manifest(**pickle.load(file))
    except Exception:  # noqa: BLE001 - a missing, damaged or incompatible file is a miss, never an error
        return None


def _store_manifest(directory: Path, key: bytes, manifest) -> None:
    # whole or not at all: a killed run leaves the previous file or none, never half of one
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"{MANIFEST_FILE}.{os.getpid()}.tmp"
    with partial.open("wb") as file:
        file.write(key + b"\n")
        pickle.dump(_manifest_fields(manifest), file, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, directory / MANIFEST_FILE)


def parsed_manifest(scratch_dir: Path):
    """The project's manifest, parsed once per process and kept for the next one.

    dbt's partial parse from its msgpack state takes 0.8-1.1 s even when nothing changed; the
    manifest pickled right after a parse, keyed by what the parse read (:func:`_parse_key`),
    loads in ~20 ms (the first dbt command of a process still sets dbt up, ~0.55 s, either
    way; docs/performance.md). It is read from the data dir's scratch
    directory, or for a new data dir from the one ``make install`` prepared; when neither
    matches, dbt parses (partially from the same places' msgpack state) and the result is
    pickled for the next run. The pickle is Meterhouse's own file beside the warehouse, as
    trusted as the warehouse itself; it is written before any build touches the manifest.
    """
    project_dir = settings.DBT_PROJECT_DIR
    with _PARSE_LOCK:
        if project_dir not in _PARSED:
            key = _parse_key(project_dir)
            manifest = _load_manifest(scratch_dir, key)
            if manifest is None:
                manifest = _load_manifest(SEED_DIR, key)
            if manifest is None:
                seed, own = SEED_DIR / PARTIAL_PARSE_FILE, scratch_dir / PARTIAL_PARSE_FILE
                if seed.exists() and not own.exists():
                    scratch_dir.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(seed, own)
                manifest = _parse(scratch_dir)
                _store_manifest(scratch_dir, key, manifest)
            _PARSED[project_dir] = manifest
            freeze_long_lived()  # the manifest stays for the process (lib/gc_tuning.py)
        return _PARSED[project_dir]


def release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in the process between invocations, so this
    process's own connections (another configuration) and other processes can open the file."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
            DuckDBConnectionManager._ENV = None


def stream_build(
    context: dg.AssetExecutionContext,
    args: Sequence[str],
    target_path: Path,
    raise_on_error: bool = True,
) -> Iterator[Any]:
    """Run ``dbt <args>`` for the context's asset subset and yield its Dagster events as nodes finish.

    Returns (as the generator's value) whether every node succeeded; raises
    :class:`DbtInvocationError` on failure when ``raise_on_error``.
    """
    from dagster_dbt.asset_utils import (
        extract_runtime_selection_from_args,
        get_updated_cli_invocation_params_for_context,
    )
    from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

    cleaned, selects, excludes = extract_runtime_selection_from_args(list(args))
    params = get_updated_cli_invocation_params_for_context(
        context=context, manifest={}, dagster_dbt_translator=None,
        runtime_selects=selects, runtime_excludes=excludes,
    )
    if params.dbt_project is not None and Path(params.dbt_project.project_dir) != settings.DBT_PROJECT_DIR:
        # dagster-dbt copied the project for a selector file (a very large UI subset): not this path
        raise DbtInvocationError("asset selection too large for the in-process dbt runner; select fewer assets")
    # as a flag: it takes precedence over a DBT_INDIRECT_SELECTION the user may have set
    indirect = ["--indirect-selection", params.indirect_selection] if params.indirect_selection else []
    # no manifest.json / run_results.json per run (~0.4 s): nothing reads them, the manifest is
    # in memory and each result reaches Dagster as an event
    dbt_args = ["--quiet", "--no-write-json", "--log-level-file", "info", *cleaned, *_project_args(target_path),
                *indirect, *params.selection_args]
    parse_dir = target_path.parent / "parse"
    worker = dbt_worker.current(parse_dir)
    results = worker.build(dbt_args) if worker is not None else _build_in_thread(dbt_args, parse_dir)
    try:
        while True:
            raw = next(results)
            yield from DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={}).to_default_asset_events(
                manifest=params.manifest, dagster_dbt_translator=params.dagster_dbt_translator,
                context=context, target_path=target_path,
            )
    except StopIteration as stop:
        outcome: dbt_worker.BuildOutcome = stop.value
    except dbt_worker.DbtWorkerError as error:
        raise DbtInvocationError(f"dbt {' '.join(cleaned)}: {error}") from error
    finally:
        # whatever stopped the loop, dbt finishes and lets go of the warehouse before the next step
        results.close()
    if not outcome.success and raise_on_error:
        raise DbtInvocationError(
            f"dbt {' '.join(cleaned)} failed: {outcome.detail} (dbt log: {target_path / 'dbt.log'})"
        )
    return outcome.success


def run_build(manifest, dbt_args: list[str], emit: Callable[[dict[str, Any]], None]) -> dbt_worker.BuildOutcome:
    """``dbt <dbt_args>`` with ``manifest``, in the calling thread: each node's result event goes to
    ``emit`` as a dict; dbt's DuckDB database is closed afterwards. In a thread here or in the
    worker process (billing/dbt_worker.py)."""
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_dict

    def collect(message) -> None:
        if message.info.name in RESULT_EVENTS:
            emit(msg_to_dict(message))

    try:
        result = dbtRunner(manifest=manifest, callbacks=[collect]).invoke(dbt_args)
    finally:
        release_duckdb()
    if result.success:
        return dbt_worker.BuildOutcome(success=True, detail=None)
    return dbt_worker.BuildOutcome(success=False, detail=str(result.exception or _first_failure(result)))


def _build_in_thread(dbt_args: list[str], parse_dir: Path) -> Generator[dict[str, Any], None, dbt_worker.BuildOutcome]:
    """``dbt <dbt_args>`` in a thread of this process; yields its result events, returns a
    :class:`dbt_worker.BuildOutcome`; raises what kept dbt from running."""
    manifest = parsed_manifest(parse_dir)
    events: queue.Queue = queue.Queue()
    done = object()
    outcome: dict[str, Any] = {}

    def invoke() -> None:
        try:
            outcome["result"] = run_build(manifest, dbt_args, events.put)
        except BaseException as error:  # surfaced in the caller's thread below
            outcome["error"] = error
        finally:
            events.put(done)

    worker = threading.Thread(target=invoke, name="dbt", daemon=True)
    worker.start()
    try:
        while (raw := events.get()) is not done:
            yield raw
    finally:
        worker.join()
    if "error" in outcome:
        raise dbt_worker.DbtWorkerError(str(outcome["error"])) from outcome["error"]
    return outcome["result"]


def _first_failure(result) -> str:
    for node in getattr(result.result, "results", None) or []:
        if str(node.status) in {"error", "fail"}:
            return f"{node.node.unique_id}: {(node.message or '').strip().splitlines()[0] if node.message else node.status}"
    return "see the dbt log"


if __name__ == "__main__":
    # `make install`: the parse state new data dirs start from (dbt/target/inprocess-parse)
    _store_manifest(SEED_DIR, _parse_key(settings.DBT_PROJECT_DIR), _parse(SEED_DIR))
