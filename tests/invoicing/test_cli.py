"""``meterhouse invoice NUMBER --events`` and ``meterhouse void``: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dagster_project.invoicing import lineage
from tests.conftest import REPO_ROOT
from tests.invoicing.ledger import NUMBER, build_warehouse


def run(*arguments: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagster_project", *arguments, "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=dict(os.environ), timeout=120,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = build_warehouse(tmp_path / "data")
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        lineage.stamp_events_loaded_through(connection, [NUMBER])
    return root


def test_invoice_events_json_lists_each_line_and_its_events(root: Path) -> None:
    result = run("invoice", NUMBER, "--events", "--json", data_dir=root)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["invoice_number"] == NUMBER
    assert [line["line_number"] for line in answer["lines"]] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert all(line["matches"] in (True, None) for line in answer["lines"])
    line_7 = [event for event in answer["events"] if event["line_number"] == 7]
    assert [event["transaction_id"] for event in line_7] == ["e2", "e3", "e4", "e5", "e6", "e8"]
    assert line_7[0] | {"value": None} == {
        "invoice_number": NUMBER, "line_number": 7, "metric": "Tokens", "tier_name": "All tokens", "role": "tier",
        "transaction_id": "e2", "request_time": "2026-10-05T00:00:00", "credential_name": "prod-key",
        "is_trial": False, "value": None, "source_file": "landing/events/october.jsonl", "source_line": 2,
    }
    assert line_7[0]["value"] == "200.0000000000"
    assert result.stderr == ""


def test_invoice_events_table_names_the_lines_each_event_feeds(root: Path) -> None:
    result = run("invoice", NUMBER, "--events", data_dir=root)
    assert result.returncode == 0, result.stderr
    assert "3,4,5" in result.stdout and "e8" in result.stdout and "2026-10-02 12:00:00" in result.stdout


def test_void_from_the_command_line(root: Path) -> None:
    missing = run("void", NUMBER, data_dir=root)
    assert missing.returncode == 2  # --reason is required
    blank = run("void", NUMBER, "--reason", "  ", data_dir=root)
    assert blank.returncode == 2 and "--reason must not be empty" in blank.stderr
    done = run("void", NUMBER, "--reason", "Issued to the wrong <company>", "--as-of", "2026-11-03T09:30:00Z",
               data_dir=root)
    assert done.returncode == 0, done.stderr
    assert f"{NUMBER}: void (Issued to the wrong <company>)" in done.stdout
    again = run("void", NUMBER, "--reason", "again", data_dir=root)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"meterhouse: error: invoice {NUMBER} is already void (since 2026-11-03 09:30:00 UTC)"
    )
    shown = json.loads(run("invoice", NUMBER, "--json", data_dir=root).stdout)
    assert (shown["invoice_number"], shown["status"]) == (NUMBER, "void")
