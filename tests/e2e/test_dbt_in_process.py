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


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("inprocess")
    (root / "catalog").mkdir()
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    moments = spread(12, datetime(2026, 10, 1), datetime(2026, 11, 1))
    write_jsonl(root / "landing" / "events" / "2026-10.jsonl",
                [event(f"e-{index}", moment, "alice", "DocSum Summaries") for index, moment in enumerate(moments)])
    result = bill_partition(root, "2026-10-01", AS_OF)
    with dg.DagsterInstance.from_config(str(root / ".dagster")) as instance:
        records = instance.all_logs(result["run_id"])
        storage = type(instance.event_log_storage)
    materialized = {r.dagster_event.asset_key for r in records
                    if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    checks = [r.dagster_event.event_specific_data for r in records
              if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    return {"root": root, "result": result, "materialized": materialized, "checks": checks, "storage": storage}


def test_every_dbt_model_and_data_test_of_the_run_reaches_dagster(billed: dict) -> None:
    nodes = _manifest_nodes()
    models = {dg.AssetKey([n["schema"], n.get("alias") or n["name"]]) for n in nodes if n["resource_type"] == "model"}
    # the rating models and the finance marts (second invocation): every one materialized
    assert models <= billed["materialized"]
    dbt_tests = {n["name"] for n in nodes if n["resource_type"] == "test" and n.get("attached_node")}
    evaluated = {check.check_name: check.passed for check in billed["checks"]}
    assert dbt_tests <= set(evaluated), sorted(dbt_tests - set(evaluated))[:5]
    assert all(evaluated[name] for name in dbt_tests)


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
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()


def _loaded(answer: dict | None) -> bool:
    """The UI answered and its code location finished loading (or failed to)."""
    entries = ((answer or {}).get("workspaceOrError") or {}).get("locationEntries") or []
    return bool(entries) and all(entry["locationOrLoadError"] is not None for entry in entries)
