"""Two writers, a read-only data dir, a full disk, a bad catalog, a failing reconciliation.

Each test starts from a copy of the reference run's data dir (``harness.reference()``): a
warehouse with issued invoices, payments and e-mails, the "last good state" that a failed
run must leave exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import yaml

from dagster_project.quality.gate import run_checks
from tests.reliability import harness
from tests.unit.test_locking import hold

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reference")]  # shares the reference run


def copy_of_reference(parent: Path, name: str) -> Path:
    target = parent / name
    shutil.copytree(harness.reference().root, target, ignore=shutil.ignore_patterns(".meterhouse.lock"))
    return target


def add_events(root: Path, count: int = 50, name: str = "late.jsonl") -> None:
    path = root / "landing" / "events" / "more" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({
        "transactionId": f"{name}-{index}", "requestTime": "2026-10-20T10:00:00Z", "provider": "openai",
        "model": "o3", "totalCost": "0.01", "subscriber": {"id": "acme-labs", "credential": {"value": "sk-acme-labs-1"}},
    }) + "\n" for index in range(count)), encoding="utf-8")


def ledger(root: Path) -> dict:
    state = harness.snapshot(root)
    return {key: state[key] for key in ("invoices", "invoice_lines", "sequences", "events", "payments",
                                        "notifications", "documents")}


def one_line_error(run: harness.Run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.startswith("meterhouse:")]
    assert len(lines) == 1, run.stderr[-2000:]
    return lines[0]


def test_a_second_bill_fails_clearly_while_another_run_writes(tmp_path: Path) -> None:
    root = copy_of_reference(tmp_path, "data")
    before = ledger(root)
    holder = hold(root, 120)  # tests/unit/test_locking.py: a process holding the writer lock
    try:
        with harness.smtp() as mailbox:
            second = harness.bill(root, mailbox)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 1
    message = one_line_error(second)
    assert f"pid {holder.pid}" in message and "another Meterhouse run is writing here" in message
    assert "--wait" in message
    assert ledger(root) == before


@pytest.mark.reliability
def test_two_bills_at_once_one_waits_and_the_warehouse_stays_whole(tmp_path: Path) -> None:
    root = copy_of_reference(tmp_path, "data")
    add_events(root)
    with harness.smtp() as mailbox:
        environment = harness._environment({"STRIPE_API_KEY": harness.STRIPE_KEY,
                                            "STRIPE_API_BASE": harness.stripe_base(),
                                            "METERHOUSE_SMTP_URL": mailbox.url})
        command = [str(harness.METERHOUSE), "bill", "--data-dir", str(root), "--period", harness.PERIOD]
        first = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lock = root / ".meterhouse.lock"
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        refused = harness.bill(root, mailbox)
        waiting = subprocess.Popen(command + ["--wait", "900"], env=environment, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        first_out = first.communicate(timeout=900)
        waiting_out = waiting.communicate(timeout=900)
    assert first.returncode == 0, first_out[1][-2000:]
    assert refused.returncode == 1 and "another Meterhouse run" in one_line_error(refused)
    assert waiting.returncode == 0, waiting_out[1][-2000:]
    state = harness.snapshot(root)
    count, distinct, _ = state["events"][0]
    assert count == distinct == harness.reference().snapshot["events"][0][0] + 50
    numbers = sorted(row[0] for row in state["invoices"] if row[0])
    assert numbers == [f"MH-2026-{index:06d}" for index in range(1, len(numbers) + 1)]
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        assert connection.execute("pragma database_size").fetchall()


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_read_only_data_dir_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "256m") as mount:
        root = copy_of_reference(mount, "data")
        add_events(root)
        before = ledger(root)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        try:
            with harness.smtp() as mailbox:
                run = harness.bill(root, mailbox)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        assert run.returncode == 1
        assert "Read-only file system" in one_line_error(run)
        assert ledger(root) == before


@pytest.mark.reliability
def test_a_full_disk_is_a_clear_error_keeps_the_last_good_state_and_a_rerun_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "256m") as mount:
        root = copy_of_reference(mount, "data")
        before = ledger(root)
        add_events(root, count=20_000, name="big.jsonl")
        statistics = os.statvfs(mount)
        filler = mount / "filler"
        with filler.open("wb") as handle:  # leave 256 KB: the warehouse cannot take the new events
            handle.write(b"\0" * max(0, statistics.f_bavail * statistics.f_frsize - 256 * 1024))
        with harness.smtp() as mailbox:
            full = harness.bill(root, mailbox)
            assert full.returncode == 1
            message = one_line_error(full)
            assert "No space left on device" in message or "space" in message.lower(), message
            filler.unlink()
            assert ledger(root) == before  # the last good state, readable, not corrupted
            rerun = harness.bill(root, mailbox)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert harness.snapshot(root)["events"][0][0] == harness.reference().snapshot["events"][0][0] + 20_000


def test_a_bad_catalog_stops_billing_and_keeps_the_ledger(tmp_path: Path) -> None:
    root = copy_of_reference(tmp_path, "data")
    catalog_file = root / "catalog" / "catalog.yaml"
    catalog = yaml.safe_load(catalog_file.read_text(encoding="utf-8"))
    catalog["products"][0]["metrics"][0]["tiers"].reverse()  # tiers out of order
    catalog_file.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
    add_events(root)
    before = ledger(root)
    with harness.smtp() as mailbox:
        run = harness.bill(root, mailbox)
        assert not mailbox.messages
    assert run.returncode == 1
    message = one_line_error(run)
    assert "catalog.yaml" in message and "products[0].metrics[0]" in message
    after = ledger(root)
    assert {key: value for key, value in after.items() if key != "events"} == \
        {key: value for key, value in before.items() if key != "events"}


def test_the_reconciliation_check_fails_when_cost_goes_missing(tmp_path: Path) -> None:
    """provider cost of accepted events = billed + trial + unbilled: passes on the reference,
    fails (naming the amounts) when one unbilled event's cost disappears."""
    target = tmp_path / "warehouse.duckdb"
    shutil.copyfile(harness.reference().root / "warehouse.duckdb", target)
    with duckdb.connect(str(target)) as connection:
        outcomes = {outcome.name: outcome for outcome in run_checks(connection, Decimal("0.2"))}
        assert all(outcome.passed for outcome in outcomes.values()), outcomes
        lost = connection.execute(
            "select transaction_id, provider_cost_usd from marts.unbilled_usage where provider_cost_usd > 0 limit 1"
        ).fetchone()
        assert lost is not None
        connection.execute("delete from marts.unbilled_usage where transaction_id = ?", [lost[0]])
        failed = {outcome.name: outcome for outcome in run_checks(connection, Decimal("0.2"))}
        assert not failed["provider_cost_reconciles"].passed
        assert "unbilled" in failed["provider_cost_reconciles"].detail
        # an accepted event that rating lost
        connection.execute("delete from intermediate.int_events_attributed where transaction_id = "
                           "(select min(transaction_id) from intermediate.int_events_attributed)")
        assert not {o.name: o for o in run_checks(connection, Decimal("0.2"))}["events_all_rated"].passed
