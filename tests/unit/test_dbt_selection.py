"""dbt selections kept per manifest (billing/dbt_selection.py), so that a billing run's process
can build its definitions without importing dbt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from dagster_dbt import utils

from dagster_project.billing import dbt_selection
from tests.conftest import REPO_ROOT

MANIFEST = REPO_ROOT / "dbt" / "target" / "manifest.json"


def _project(tmp_path: Path, invocation_id: str = "parse-1") -> SimpleNamespace:
    """A copy of the project's manifest, as if dbt had parsed it with that invocation id."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    manifest["metadata"]["invocation_id"] = invocation_id
    path = tmp_path / "target" / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return SimpleNamespace(project_dir=tmp_path, manifest_path=path, manifest=manifest)


def _models(unique_ids: set[str]) -> set[str]:
    return {unique_id for unique_id in unique_ids if unique_id.startswith("model.")}


def _select(selection: dbt_selection.Selection, project: SimpleNamespace) -> set[str]:
    return dbt_selection.select_unique_ids(selection.select, selection.exclude, selection.selector, project,
                                           project.manifest)


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every selection dagster-dbt evaluates with dbt."""
    evaluated: list[tuple[str, str, str]] = []
    original = utils.select_unique_ids

    def counting(select, exclude, selector, project, manifest_json):
        evaluated.append((select, exclude, selector))
        return original(select, exclude, selector, project, manifest_json)

    monkeypatch.setattr(utils, "select_unique_ids", counting)
    return evaluated


def test_the_definitions_selections_split_the_models_by_the_reporting_tag(tmp_path: Path, evaluations) -> None:
    project = _project(tmp_path)
    nodes = project.manifest["nodes"].values()
    models = {node["unique_id"] for node in nodes if node["resource_type"] == "model"}
    reporting = {node["unique_id"] for node in nodes if node["resource_type"] == "model" and "reporting" in node["tags"]}
    assert reporting and reporting < models  # the finance marts, and the rating models
    assert _models(_select(dbt_selection.REPORTING, project)) == reporting
    assert _models(_select(dbt_selection.RATING, project)) == models - reporting
    assert len(evaluations) == 2
    assert dbt_selection.all_kept(project.manifest_path)


def test_a_kept_selection_is_answered_without_dbt_until_the_next_parse(tmp_path: Path, evaluations) -> None:
    project = _project(tmp_path)
    first = _select(dbt_selection.RATING, project)
    assert _select(dbt_selection.RATING, project) == first
    assert len(evaluations) == 1  # the second answer came from the file
    assert not dbt_selection.all_kept(project.manifest_path)  # REPORTING is not kept yet

    reparsed = _project(tmp_path, invocation_id="parse-2")  # same project, parsed again
    assert _select(dbt_selection.RATING, reparsed) == first
    assert len(evaluations) == 2  # a new parse: evaluated again, with dbt
    kept = json.loads((tmp_path / "target" / dbt_selection.SELECTIONS_FILE).read_text(encoding="utf-8"))
    assert kept["manifest"] == "parse-2"
    assert set(kept["selections"]) == {dbt_selection.RATING.key()}


def test_a_damaged_selections_file_is_evaluated_again(tmp_path: Path, evaluations) -> None:
    project = _project(tmp_path)
    (tmp_path / "target" / dbt_selection.SELECTIONS_FILE).write_text('{"manifest": "parse-1", "selec', encoding="utf-8")
    assert not dbt_selection.all_kept(project.manifest_path)
    assert _models(_select(dbt_selection.REPORTING, project))
    assert len(evaluations) == 1
    assert dbt_selection.all_kept(project.manifest_path) is False  # RATING still missing, file whole again


def test_make_install_kept_the_selections_of_the_project_manifest() -> None:
    assert dbt_selection.all_kept()


def test_dbt_stays_importable_in_a_process_that_has_it_already() -> None:
    with dbt_selection.dbt_left_to_worker(worker_running=True) as left:
        import dbt.version  # noqa: F401  (already imported here: nothing may change)
    assert left is False


LEFT_TO_WORKER_SCRIPT = r"""
import json, sys
from dagster_project.billing import dbt_selection

def importable():
    try:
        import dbt.version  # noqa: F401
    except ImportError as error:
        return str(error)
    return True

with dbt_selection.dbt_left_to_worker(worker_running=sys.argv[1] == "yes") as left:
    inside = importable()
    import dagster_dbt
    from dagster_dbt.compat import DBT_PYTHON_VERSION
print(json.dumps({"left": left, "inside": inside, "dagster_dbt_without_dbt": DBT_PYTHON_VERSION is None,
                  "after": importable()}))
"""


@pytest.mark.parametrize("worker", ["yes", "no"])
def test_a_fresh_process_with_a_dbt_worker_does_not_import_dbt(worker: str) -> None:
    run = subprocess.run([sys.executable, "-c", LEFT_TO_WORKER_SCRIPT, worker], capture_output=True, text=True,
                         timeout=120, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    if worker == "yes":
        assert answer["left"] is True
        assert "dbt_worker.py" in answer["inside"]  # the error says where dbt is
        assert answer["dagster_dbt_without_dbt"] is True
    else:  # no worker: dbt runs in this process, as before
        assert answer == {"left": False, "inside": True, "dagster_dbt_without_dbt": False, "after": True}
    assert answer["after"] is True


PARSED_MEANWHILE_SCRIPT = r"""
import json, sys
from pathlib import Path
from dagster_project import settings

settings.DBT_PROJECT_DIR = Path(sys.argv[1])  # a copy of the project's dbt folder
from dagster_project.billing import dbt_selection

target = settings.DBT_PROJECT_DIR / "target"
with dbt_selection.dbt_left_to_worker(worker_running=True) as left:
    # another process parses the project again, as `dagster dev` does on load, and keeps that parse's
    # selections, after this one checked them and before it builds its definitions
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    manifest["metadata"]["invocation_id"] = "parsed-meanwhile"
    (target / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (target / "dagster_selections.json").write_text(
        json.dumps({"manifest": "parsed-meanwhile", "selections": {}}), encoding="utf-8")
    from dagster_project.billing.assets import meterhouse_dbt_models
    from dagster_project.reporting.assets import meterhouse_dbt_reports
    from dagster_dbt.compat import DBT_PYTHON_VERSION
print(json.dumps({"left": left, "dagster_dbt_without_dbt": DBT_PYTHON_VERSION is None,
                  "rating": sorted("/".join(key.path) for key in meterhouse_dbt_models.keys),
                  "reporting": sorted("/".join(key.path) for key in meterhouse_dbt_reports.keys)}))
"""


def test_a_parse_by_another_process_during_the_run_does_not_need_dbt_here(tmp_path: Path) -> None:
    """The run builds its definitions from the manifest and selections it checked, as read then."""
    project = tmp_path / "dbt"
    (project / "target").mkdir(parents=True)
    for name in ("dbt_project.yml", "profiles.yml", "target/manifest.json", f"target/{dbt_selection.SELECTIONS_FILE}"):
        (project / name).write_bytes((REPO_ROOT / "dbt" / name).read_bytes())
    run = subprocess.run([sys.executable, "-c", PARSED_MEANWHILE_SCRIPT, str(project)], capture_output=True,
                         text=True, timeout=120, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["left"] is True and answer["dagster_dbt_without_dbt"] is True
    # the assets are the nodes of the manifest as it was when the run checked it: models by the tag
    nodes = json.loads(MANIFEST.read_text(encoding="utf-8"))["nodes"].values()
    models = [node for node in nodes if node["resource_type"] == "model"]
    relation = lambda node: f"{node['schema']}/{node.get('alias') or node['name']}"  # noqa: E731
    reporting = {relation(node) for node in models if "reporting" in node["tags"]}
    assert reporting and set(answer["reporting"]) == reporting
    assert set(answer["rating"]) >= {relation(node) for node in models if "reporting" not in node["tags"]}


def test_dagster_dev_parses_the_project_again_only_when_a_file_is_newer_than_the_manifest(tmp_path: Path) -> None:
    from dagster_project.billing.assets import manifest_outdated

    project = SimpleNamespace(project_dir=tmp_path, manifest_path=tmp_path / "target" / "manifest.json")
    model = tmp_path / "models" / "staging" / "stg_events.sql"
    model.parent.mkdir(parents=True)
    model.write_text("select 1", encoding="utf-8")
    (tmp_path / "dbt_project.yml").write_text("name: x", encoding="utf-8")
    assert manifest_outdated(project)  # never parsed

    project.manifest_path.parent.mkdir()
    project.manifest_path.write_text("{}", encoding="utf-8")
    os.utime(model, (1_000, 1_000))
    os.utime(tmp_path / "dbt_project.yml", (1_000, 1_000))
    os.utime(project.manifest_path, (2_000, 2_000))
    # what dbt writes (target/, logs/) and files make does not watch either (docs) are not edits
    for written in ("target/run_results.json", "target/compiled/x/models/stg_events.sql", "logs/dbt.log",
                    "models/overview.md"):
        (tmp_path / written).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / written).write_text("x", encoding="utf-8")
    assert not manifest_outdated(project)

    os.utime(model, (3_000, 3_000))  # the model edited after the parse
    assert manifest_outdated(project)
    os.utime(model, (1_000, 1_000))
    os.utime(tmp_path / "dbt_project.yml", (3_000, 3_000))
    assert manifest_outdated(project)
