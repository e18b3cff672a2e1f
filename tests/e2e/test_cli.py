"""The command line's contract (SPEC §5): exit codes, one-line errors, --json on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def run(*arguments: str, data_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagster_project", *arguments, "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, timeout=120,
    )


def test_init_writes_the_tutorial_catalog_and_is_idempotent(tmp_path: Path) -> None:
    first = run("init", "--example", "tutorial", data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    catalog = tmp_path / "catalog" / "tutorial.yaml"
    assert "DocSum Summaries" in catalog.read_text(encoding="utf-8")
    assert run("init", "--example", "tutorial", data_dir=tmp_path).returncode == 0


def test_unknown_example_is_bad_usage(tmp_path: Path) -> None:
    result = run("init", "--example", "nope", data_dir=tmp_path)
    assert result.returncode == 2
    assert "unknown example 'nope'" in result.stderr


def test_a_bad_period_is_bad_usage_with_one_line(tmp_path: Path) -> None:
    result = run("bill", "--period", "2026-13", data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "not a valid month" in result.stderr


def test_an_invalid_catalog_fails_billing_with_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "broken.yaml").write_text(
        "products:\n  - {id: p, name: P, currency: XXX}\n", encoding="utf-8"
    )
    result = run("bill", "--period", "2026-10", data_dir=tmp_path, env={"METERHOUSE_AS_OF": "2026-11-02T00:00:00Z"})
    assert result.returncode == 1
    assert "broken.yaml" in result.stderr and "currency" in result.stderr
    assert not (tmp_path / "invoices").exists() or not any((tmp_path / "invoices").iterdir())


def test_missing_warehouse_is_a_one_line_failure(tmp_path: Path) -> None:
    result = run("invoices", data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("meterhouse: error:") and "no warehouse yet" in result.stderr


def test_unknown_command_is_bad_usage(tmp_path: Path) -> None:
    assert run("frobnicate", data_dir=tmp_path).returncode == 2


@pytest.mark.slow
def test_invoices_json_lists_what_bill_issued(tmp_path: Path) -> None:
    # the tutorial catalog with no events: October's four active subscriptions each get the
    # recurring fee; umbrella ends on Oct 21 (20 of 31 days: 199 x 20/31 = 128.387 -> 128.39) and
    # initech starts on Oct 11 (21 of 31 days: 199 x 21/31 = 134.806 -> 134.81)
    assert run("init", data_dir=tmp_path).returncode == 0
    billed = run("bill", "--period", "2026-10", data_dir=tmp_path, env={"METERHOUSE_AS_OF": "2026-11-02T00:00:00Z"})
    assert billed.returncode == 0, billed.stderr
    listed = run("invoices", "--period", "2026-10", "--json", data_dir=tmp_path)
    assert listed.returncode == 0
    invoices = {row["subscription_id"]: row["total"] for row in json.loads(listed.stdout)}
    assert invoices == {
        "acme-summaries": "199.000", "acme-labs-research": "199.000", "globex-summaries": "199.000",
        "initech-research": "134.810", "umbrella-summaries": "128.390",
    }
    one = run("invoice", "MH-2026-000001", "--json", data_dir=tmp_path)
    assert json.loads(one.stdout)["lines"][0]["kind"] == "recurring"
