"""The parsed dbt manifest kept between processes (billing/dbt_inprocess.py): which changes make
the next run parse again, and that a kept manifest is the one dbt would parse."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from dbt.contracts.graph.manifest import Manifest

from dagster_project import settings
from dagster_project.billing import dbt_inprocess


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A copy of the dbt project (without what dbt writes) as the project the runner parses, an
    empty seed directory, and a `_parse` that counts its calls instead of running dbt."""
    copy = tmp_path / "dbt"
    shutil.copytree(settings.DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setattr(settings, "DBT_PROJECT_DIR", copy)
    monkeypatch.setattr(dbt_inprocess, "SEED_DIR", tmp_path / "seed")
    monkeypatch.setattr(dbt_inprocess, "_PARSED", {})
    parses: list[Path] = []

    def parse(target: Path) -> Manifest:
        parses.append(target)
        return _manifest(len(parses))

    monkeypatch.setattr(dbt_inprocess, "_parse", parse)
    return SimpleNamespace(dir=copy, parses=parses)


def _manifest(parse: int | str) -> Manifest:
    """A manifest that says which parse made it."""
    return Manifest(env_vars={"parse": str(parse)})


def _next_process(scratch: Path) -> str:
    """Which parse the manifest a new process gets comes from."""
    dbt_inprocess._PARSED.clear()
    return dbt_inprocess.parsed_manifest(scratch).env_vars["parse"]


def test_the_next_process_loads_the_manifest_the_first_one_parsed(project: SimpleNamespace, tmp_path: Path) -> None:
    scratch = tmp_path / "data" / ".dbt" / "parse"
    assert dbt_inprocess.parsed_manifest(scratch).env_vars == {"parse": "1"}
    # the same process asks again: the same object, no parse
    assert dbt_inprocess.parsed_manifest(scratch) is dbt_inprocess.parsed_manifest(scratch)
    assert _next_process(scratch) == "1"
    assert project.parses == [scratch]


def test_a_changed_model_or_macro_is_parsed_again(project: SimpleNamespace, tmp_path: Path) -> None:
    scratch = tmp_path / "parse"
    _next_process(scratch)
    model = project.dir / "models" / "marts" / "fct_usage_by_period.sql"
    model.write_text(model.read_text(encoding="utf-8") + "\n-- changed\n", encoding="utf-8")
    assert _next_process(scratch) == "2"
    (project.dir / "macros" / "new_macro.sql").write_text("{% macro new_macro() %}1{% endmacro %}\n", encoding="utf-8")
    assert _next_process(scratch) == "3"
    assert _next_process(scratch) == "3"


def test_what_dbt_writes_into_the_project_is_not_a_change(project: SimpleNamespace, tmp_path: Path) -> None:
    scratch = tmp_path / "parse"
    _next_process(scratch)
    (project.dir / "target").mkdir()
    (project.dir / "target" / "manifest.json").write_text("{}", encoding="utf-8")
    (project.dir / "logs").mkdir()
    (project.dir / "logs" / "dbt.log").write_text("log", encoding="utf-8")
    assert _next_process(scratch) == "1"


def test_an_environment_variable_the_project_reads_is_part_of_the_key(
    project: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "parse"
    monkeypatch.delenv("METERHOUSE_SPARK_MASTER", raising=False)
    _next_process(scratch)
    # profiles.yml reads it with env_var(): set, then another value, each parses again
    monkeypatch.setenv("METERHOUSE_SPARK_MASTER", "local[4]")
    assert _next_process(scratch) == "2"
    monkeypatch.setenv("METERHOUSE_SPARK_MASTER", "local[1]")
    assert _next_process(scratch) == "3"
    # dbt's own settings too
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    assert _next_process(scratch) == "4"
    # a variable the project does not read, and the warehouse path a run sets (the parse never
    # sees it), are not
    monkeypatch.setenv("METERHOUSE_UNRELATED", "x")
    monkeypatch.setenv(settings.WAREHOUSE_ENV, str(tmp_path / "warehouse.duckdb"))
    assert _next_process(scratch) == "4"


def test_a_damaged_file_is_parsed_again_and_replaced(project: SimpleNamespace, tmp_path: Path) -> None:
    scratch = tmp_path / "parse"
    _next_process(scratch)
    kept = scratch / dbt_inprocess.MANIFEST_FILE
    key = kept.read_bytes().split(b"\n", 1)[0]
    kept.write_bytes(key + b"\nnot a pickle")
    assert _next_process(scratch) == "2"
    assert _next_process(scratch) == "2"
    # cut short, as by a full disk
    kept.write_bytes(kept.read_bytes()[:-3])
    assert _next_process(scratch) == "3"


def test_a_new_data_dir_starts_from_the_manifest_make_install_kept(project: SimpleNamespace, tmp_path: Path) -> None:
    key = dbt_inprocess._parse_key(project.dir)
    dbt_inprocess._store_manifest(dbt_inprocess.SEED_DIR, key, _manifest("at install"))
    assert _next_process(tmp_path / "new" / "parse") == "at install"
    assert project.parses == []
    # the seed of another project version is not used
    (project.dir / "dbt_project.yml").write_text(
        (project.dir / "dbt_project.yml").read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    assert _next_process(tmp_path / "other" / "parse") == "1"


@pytest.mark.slow
def test_a_kept_manifest_is_the_manifest_dbt_parses(tmp_path: Path) -> None:
    # a full parse (no earlier state): its lookups are built, which dbt's own pickling misplaces
    parsed = dbt_inprocess._parse(tmp_path / "parse")
    assert parsed._ref_lookup is not None
    dbt_inprocess._store_manifest(tmp_path / "kept", b"key", parsed)
    kept = dbt_inprocess._load_manifest(tmp_path / "kept", b"key")
    assert kept is not None and kept is not parsed
    assert kept.writable_manifest().to_dict() == parsed.writable_manifest().to_dict()
    assert sorted(kept.macros) == sorted(parsed.macros)
    assert kept.fixtures == parsed.fixtures
    # every ref, source and macro resolves to what the parse resolves it to
    models = [node for node in parsed.nodes.values() if node.resource_type == "model"]
    assert len(models) > 30
    for model in models:
        found = kept.ref_lookup.find(model.name, None, None, kept)
        assert found is not None and found.unique_id == model.unique_id
    for source in parsed.sources.values():
        found = kept.source_lookup.find(f"{source.source_name}.{source.name}", None, kept)
        assert found is not None and found.unique_id == source.unique_id
    assert kept.find_macro_by_name("is_incremental", "meterhouse", None).unique_id == \
        parsed.find_macro_by_name("is_incremental", "meterhouse", None).unique_id
    assert dbt_inprocess._load_manifest(tmp_path / "kept", b"another key") is None
