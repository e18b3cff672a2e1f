"""dbt inside the Dagster process (billing/dbt_inprocess.py) and the instance's event log
(lib/event_log.py): what Dagster records, what a failing dbt test does, and that the warehouse
file is free once dbt is done."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlalchemy
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from dagster_project.billing.assets import dbt_project, manifest_outdated
from dagster_project.definitions import build_defs
from dagster_project.lib.event_log import FastSqliteEventLogStorage, write_instance_config
from dagster_project.runner import bill_partition
from tests.conftest import DOCSUM_CATALOG as CATALOG
from tests.conftest import REPO_ROOT, event, spread, write_jsonl

pytestmark = pytest.mark.slow

AS_OF = "2026-11-02T00:00:00"
METRICS = dg.AssetKey(["staging", "stg_catalog__metrics"])
PRODUCT_REFERENCE_TEST = "relationships_stg_catalog__metrics_product_id__product_id__ref_stg_catalog__products_"


def _manifest_nodes() -> list[dict]:
    manifest = json.loads((REPO_ROOT / "dbt" / "target" / "manifest.json").read_text(encoding="utf-8"))
    return list(manifest["nodes"].values())


def _landed(root: Path) -> Path:
    """A data dir with the DocSum catalog and 12 October calls of one subscriber."""
    (root / "catalog").mkdir(parents=True)
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    moments = spread(12, datetime(2026, 10, 1), datetime(2026, 11, 1))
    write_jsonl(root / "landing" / "events" / "2026-10.jsonl",
                [event(f"e-{index}", moment, "alice", "DocSum Summaries") for index, moment in enumerate(moments)])
    return root


def _materialized_and_checks(records) -> tuple[set[dg.AssetKey], list]:
    materialized = {r.dagster_event.asset_key for r in records
                    if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    checks = [r.dagster_event.event_specific_data for r in records
              if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    return materialized, checks


def _assert_every_dbt_node_reached_dagster(materialized: set[dg.AssetKey], checks: list) -> None:
    nodes = _manifest_nodes()
    models = {dg.AssetKey([n["schema"], n.get("alias") or n["name"]]) for n in nodes if n["resource_type"] == "model"}
    # the rating models and the finance marts (second invocation): every one materialized
    assert models <= materialized
    dbt_tests = {n["name"] for n in nodes if n["resource_type"] == "test" and n.get("attached_node")}
    evaluated = {check.check_name: check.passed for check in checks}
    assert dbt_tests <= set(evaluated), sorted(dbt_tests - set(evaluated))[:5]
    assert all(evaluated[name] for name in dbt_tests)


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = _landed(tmp_path_factory.mktemp("inprocess"))
    result = bill_partition(root, "2026-10-01", AS_OF)
    with dg.DagsterInstance.from_config(str(root / ".dagster")) as instance:
        records = instance.all_logs(result["run_id"])
        storage = type(instance.event_log_storage)
    materialized, checks = _materialized_and_checks(records)
    return {"root": root, "result": result, "materialized": materialized, "checks": checks, "storage": storage}


def test_every_dbt_model_and_data_test_of_the_run_reaches_dagster(billed: dict) -> None:
    _assert_every_dbt_node_reached_dagster(billed["materialized"], billed["checks"])


def test_the_warehouse_is_free_for_another_writer_once_dbt_is_done(billed: dict) -> None:
    # dbt-duckdb keeps its database open in the process between invocations; the runner closes it,
    # so while this (billing) process lives, another process can open the file for writing
    script = ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
              "c.execute('create temp table probe as select 1 as one'); print(c.execute('select one from probe').fetchone()[0])")
    probe = subprocess.run([sys.executable, "-c", script, str(billed["root"] / "warehouse.duckdb")],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "1"


def test_the_event_log_keeps_its_connections_and_its_files(billed: dict, tmp_path: Path) -> None:
    assert billed["storage"] is FastSqliteEventLogStorage
    # a data dir made before (an empty dagster.yaml, Dagster's defaults) keeps its run history
    home = tmp_path / ".dagster"
    home.mkdir()
    (home / "dagster.yaml").touch()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        old = dg.materialize([_probe_asset], instance=instance)
    write_instance_config(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is FastSqliteEventLogStorage
        assert instance.get_run_by_id(old.run_id) is not None
        assert any(r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
                   for r in instance.all_logs(old.run_id))
        new = dg.materialize([_probe_asset], instance=instance)
    # written through kept connections, read back by a fresh instance
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert {run.run_id for run in instance.get_runs()} == {old.run_id, new.run_id}
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")).run_id == new.run_id


def test_the_event_log_asks_sqlite_for_a_table_until_it_is_found(tmp_path: Path, monkeypatch) -> None:
    storage = FastSqliteEventLogStorage(str(tmp_path / "runs"))
    asked: list[str] = []
    dagster_answer = SqliteEventLogStorage.has_table
    monkeypatch.setattr(SqliteEventLogStorage, "has_table",
                        lambda self, name: asked.append(name) or dagster_answer(self, name))
    assert storage.has_table("asset_check_executions")
    assert storage.has_table("asset_check_executions")
    assert asked == ["asset_check_executions"]
    # a missing table is asked about every time: a migration may add it while the instance lives
    assert not storage.has_table("meterhouse_probe")
    with storage.index_connection() as connection:
        connection.execute(sqlalchemy.text("create table meterhouse_probe (id integer)"))
    assert storage.has_table("meterhouse_probe")
    assert asked == ["asset_check_executions", "meterhouse_probe", "meterhouse_probe"]
    # wiping asks again (Dagster's wipe checks which tables the index has)
    storage.wipe()
    assert "asset_check_executions" in asked[3:]
    assert storage.has_table("asset_check_executions")
    storage.dispose()


@dg.asset(name="probe")
def _probe_asset() -> None:
    return None


def test_a_failing_dbt_test_fails_the_dbt_step_and_is_named(billed: dict, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    shutil.copytree(billed["root"], root, ignore=shutil.ignore_patterns(".dagster"))
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        # a metric of a product the catalog does not have: the tables' keys cannot see it, dbt's test does
        connection.execute("update catalog.metrics set product_id = 'no-such-product'")
    # a subset of the dbt assets: dagster-dbt's own selection, run in process
    job = build_defs(data_dir=str(root), as_of=AS_OF).resolve_job_def("bill_period")
    write_instance_config(root / ".dagster")
    with dg.DagsterInstance.from_config(str(root / ".dagster")) as instance:
        result = job.execute_in_process(partition_key="2026-10-01", instance=instance, raise_on_error=False,
                                        asset_selection=[METRICS])
        evaluations = [e.asset_check_evaluation_data for e in result.all_events
                       if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert not result.success
    failed = [e.check_name for e in evaluations if not e.passed]
    assert failed == [PRODUCT_REFERENCE_TEST]
    # only the selected model and its tests ran
    assert {e.asset_key for e in evaluations} == {METRICS}
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert PRODUCT_REFERENCE_TEST in failure.step_failure_data.error.to_string()


def test_the_ui_lists_the_billing_runs(billed: dict, tmp_path: Path) -> None:
    """`meterhouse ui` reads the same instance (dagster.yaml and event log) as the billing run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # as a user starts it: .venv/bin need not be on PATH (dagster-dbt looks for `dbt` there)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    log = tmp_path / "ui.log"
    parsed = _manifest_id() if not manifest_outdated(dbt_project) else None
    ui = subprocess.Popen([sys.executable, "-m", "dagster_project", "ui", "--data-dir", str(billed["root"]),
                           "--port", str(port)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        query = json.dumps({"query": "{ runsOrError { ... on Runs { results { runId status } } } "
                                     "workspaceOrError { ... on Workspace { locationEntries { "
                                     "locationOrLoadError { __typename ... on PythonError { message } } } } } }"}).encode()
        answer: dict | None = None
        deadline = time.monotonic() + 180
        while not _loaded(answer) and time.monotonic() < deadline and ui.poll() is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())["data"]
            except OSError:
                time.sleep(1)
        assert _loaded(answer), log.read_text(errors="replace")[-2000:]
        assert {"runId": billed["result"]["run_id"], "status": "SUCCESS"} in answer["runsOrError"]["results"]
        # the project loads in the UI's code server (definitions, dbt manifest), not only the run history
        locations = [entry["locationOrLoadError"] for entry in answer["workspaceOrError"]["locationEntries"]]
        assert [location["__typename"] for location in locations] == ["RepositoryLocation"], locations
        if parsed is not None:  # nothing changed since `make install` parsed the project: not parsed again
            assert _manifest_id() == parsed
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()


def _manifest_id() -> str:
    manifest = json.loads((REPO_ROOT / "dbt" / "target" / "manifest.json").read_text(encoding="utf-8"))
    return manifest["metadata"]["invocation_id"]


def _loaded(answer: dict | None) -> bool:
    """The UI answered and its code location finished loading (or failed to)."""
    entries = ((answer or {}).get("workspaceOrError") or {}).get("locationEntries") or []
    return bool(entries) and all(entry["locationOrLoadError"] is not None for entry in entries)


# ---------------------------------------------------------------------------------------------
# dbt in a worker process, as `meterhouse bill` runs it (billing/dbt_worker.py). Each case is a
# fresh Python: the worker is forked only from a process with one thread, as the command is.

WORKER_SCRIPT = r"""
import json, os, signal, sys
from pathlib import Path
import duckdb
from dagster_project import settings
from dagster_project.billing import dbt_inprocess, dbt_worker

root, select, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ[settings.WAREHOUSE_ENV] = str(root / "warehouse.duckdb")
args = ["--quiet", "--no-write-json", "build", "--select", select, *dbt_inprocess._project_args(root / ".dbt" / "target")]
with dbt_worker.started(root / ".dbt" / "parse") as worker:
    if mode == "killed":
        os.kill(worker._process.pid, signal.SIGKILL)
        worker._process.join()
    nodes, outcome, error = [], None, None
    results = worker.build(args)
    try:
        while True:
            nodes.append(next(results)["data"]["node_info"]["unique_id"])
    except StopIteration as stop:
        outcome = stop.value
    except dbt_worker.DbtWorkerError as failure:
        error = str(failure)
    if mode == "twice":  # the worker serves the run's second build (the finance marts) too
        again = worker.build(args)
        nodes_again = [event["data"]["node_info"]["unique_id"] for event in again]
        assert sorted(nodes_again) == sorted(nodes), nodes_again
    # dbt let go of the warehouse: this process can write to it while the worker lives
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.execute("create or replace table main.probe as select 1 as one")
print(json.dumps({"nodes": nodes, "success": outcome and outcome.success, "detail": outcome and outcome.detail,
                  "error": error, "dbt_imported_here": "dbt" in sys.modules}))
"""


def _in_worker(root: Path, select: str, mode: str = "once") -> dict:
    run = subprocess.run([sys.executable, "-c", WORKER_SCRIPT, str(root), select, mode], capture_output=True,
                         text=True, timeout=300, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _copy_of(billed: dict, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(billed["root"], root, ignore=shutil.ignore_patterns(".dagster"))
    return root


def _metrics_and_its_tests() -> set[str]:
    model = "model.meterhouse.stg_catalog__metrics"
    return {model} | {n["unique_id"] for n in _manifest_nodes()
                      if n["resource_type"] == "test" and n.get("attached_node") == model}


@pytest.mark.parametrize("mode", ["once", "twice"])
def test_the_dbt_worker_builds_in_its_own_process(billed: dict, tmp_path: Path, mode: str) -> None:
    answer = _in_worker(_copy_of(billed, tmp_path), "stg_catalog__metrics", mode)
    assert answer["success"] is True and answer["error"] is None
    # one result per node of the selection: the model and the tests attached to it
    assert sorted(answer["nodes"]) == sorted(_metrics_and_its_tests())
    assert len(answer["nodes"]) >= 2
    # dbt ran in the worker: the process that asked never imported it
    assert answer["dbt_imported_here"] is False


def test_the_dbt_worker_reports_a_failing_test_by_name(billed: dict, tmp_path: Path) -> None:
    root = _copy_of(billed, tmp_path)
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.execute("update catalog.metrics set product_id = 'no-such-product'")
    answer = _in_worker(root, "stg_catalog__metrics")
    assert answer["success"] is False
    assert PRODUCT_REFERENCE_TEST in answer["detail"]
    assert any(PRODUCT_REFERENCE_TEST in node for node in answer["nodes"])


def test_a_dead_dbt_worker_is_an_error_not_a_hang(billed: dict, tmp_path: Path) -> None:
    answer = _in_worker(_copy_of(billed, tmp_path), "stg_catalog__metrics", "killed")
    assert answer["success"] is None
    assert "dbt worker exited unexpectedly" in answer["error"]
    assert "-9" in answer["error"]  # the exit code: killed


ORPHAN_SCRIPT = r"""
import multiprocessing, os, signal, time
from dagster_project.billing import dbt_worker

def busy(parent):
    dbt_worker._detach_from_run(parent)
    time.sleep(300)  # a build that would go on writing to the warehouse

child = multiprocessing.get_context("fork").Process(target=busy, args=(os.getpid(),))
child.start()
print(child.pid, flush=True)
time.sleep(1)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_dbt_worker_dies_with_the_run(tmp_path: Path) -> None:
    """A killed run must not leave dbt writing to the warehouse outside the run's writer lock."""
    run = subprocess.run([sys.executable, "-c", ORPHAN_SCRIPT], capture_output=True, text=True, timeout=120,
                         cwd=REPO_ROOT)
    assert run.returncode == -signal.SIGKILL
    child = int(run.stdout.strip())
    deadline = time.monotonic() + 60  # it would sleep 300 s if it outlived its parent
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited (a container's init may not reap it)


def test_meterhouse_bill_names_a_failing_dbt_test_run_in_the_worker(billed: dict, tmp_path: Path) -> None:
    root = _copy_of(billed, tmp_path)
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        # the same call loaded twice: raw.events is never rewritten by a bill, so dbt's test sees it
        connection.execute("insert into raw.events select * from raw.events limit 1")
    documents = sorted(path.name for path in (root / "invoices").iterdir())
    bill = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "meterhouse"), "bill", "--period", "2026-10",
                           "--as-of", AS_OF + "Z", "--data-dir", str(root)],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert bill.returncode == 1
    assert "test.meterhouse.unique_across_loads_stg_raw__events_transaction_id" in bill.stderr
    # the failed step held everything after it: no invoice document written
    assert sorted(path.name for path in (root / "invoices").iterdir()) == documents


BILL_SCRIPT = r"""
import atexit, json, sys
root, as_of = sys.argv[1], sys.argv[2]
atexit.register(lambda: print(json.dumps({name: name in sys.modules for name in ("dbt", "pandas")})))
sys.argv = ["meterhouse", "bill", "--period", "2026-10", "--as-of", as_of, "--data-dir", root]
from dagster_project.cli import app
app()
"""


def test_meterhouse_bill_leaves_dbt_to_its_worker_and_dagster_sees_every_node(tmp_path: Path) -> None:
    # the command's process builds the definitions from the kept selections
    # (billing/dbt_selection.py) and never imports dbt; Dagster gets the same events as in process.
    # Nor does it import pandas (lib/arrow_arrays.py; the release gate's frames are made in the
    # Great Expectations worker)
    root = _landed(tmp_path / "bill")
    bill = subprocess.run([sys.executable, "-c", BILL_SCRIPT, str(root), AS_OF + "Z"], capture_output=True,
                          text=True, timeout=600, cwd=REPO_ROOT)
    assert bill.returncode == 0, bill.stderr[-3000:]
    assert json.loads(bill.stdout.strip().splitlines()[-1]) == {"dbt": False, "pandas": False}
    assert "1 invoice(s) issued" in bill.stdout
    with dg.DagsterInstance.from_config(str(root / ".dagster")) as instance:
        (run,) = instance.get_runs()
        records = instance.all_logs(run.run_id)
    _assert_every_dbt_node_reached_dagster(*_materialized_and_checks(records))
