"""Pure pieces of the reports: the FX rates file, tier consumption, a dashboard without data."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from dagster_project.reporting.dashboard import write_dashboard
from dagster_project.reporting.inputs import FxRatesError, read_fx_rates
from dagster_project.reporting.lookups import tier_consumption, trimmed


def test_fx_rates_are_dated_and_exact(tmp_path: Path) -> None:
    path = tmp_path / "fx_rates.csv"
    path.write_text("currency,usd_per_unit,valid_from\neur,1.0850,2026-01-01\nEUR,1.1,2026-10-15T00:00:00Z\n"
                    "JPY,0.0066666667,2026-01-01T09:00:00+09:00\n")
    assert read_fx_rates(path) == [
        {"currency": "EUR", "usd_per_unit": Decimal("1.0850"), "valid_from": datetime(2026, 1, 1),
         "valid_to": datetime(2026, 10, 15)},
        {"currency": "EUR", "usd_per_unit": Decimal("1.1"), "valid_from": datetime(2026, 10, 15), "valid_to": None},
        {"currency": "JPY", "usd_per_unit": Decimal("0.0066666667"), "valid_from": datetime(2026, 1, 1),
         "valid_to": None},
    ]
    assert read_fx_rates(tmp_path / "missing.csv") == []


@pytest.mark.parametrize(("text", "message"), [
    ("currency,usd_per_unit\nEUR,1.1\n", "missing column"),
    ("currency,usd_per_unit,valid_from\nXXX,1.1,2026-01-01\n", "line 2: currency"),
    ("currency,usd_per_unit,valid_from\nEUR,-1,2026-01-01\n", "line 2: usd_per_unit"),
    ("currency,usd_per_unit,valid_from\nEUR,1.1,someday\n", "line 2"),
    ("currency,usd_per_unit,valid_from\nEUR,1.1,2026-01-01\nEUR,1.2,2026-01-01\n", "two rates for EUR"),
])
def test_fx_rate_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "fx_rates.csv"
    path.write_text(text)
    with pytest.raises(FxRatesError, match=message):
        read_fx_rates(path)


TIERS = [
    {"tier_name": "A", "tier_position": 1, "lower_bound": Decimal(0), "upper_bound": Decimal(100),
     "unit_rate": Decimal("2"), "fixed_fee": Decimal(0)},
    {"tier_name": "B", "tier_position": 2, "lower_bound": Decimal(100), "upper_bound": Decimal(500),
     "unit_rate": Decimal("1.5"), "fixed_fee": Decimal(0)},
    {"tier_name": "C", "tier_position": 3, "lower_bound": Decimal(500), "upper_bound": None,
     "unit_rate": Decimal("1"), "fixed_fee": Decimal(0)},
]


def test_graduated_consumption() -> None:
    # 250: A holds 100 (full), B holds 150 of 400 (250 left, current), C nothing (unbounded)
    got = [(t["consumed"], t["remaining"], t["current"]) for t in tier_consumption(Decimal(250), "graduated", TIERS)]
    assert got == [(Decimal(100), Decimal(0), False), (Decimal(150), Decimal(250), True), (Decimal(0), None, False)]
    # exactly at a bound stays in the lower tier (tiers are (lower, upper])
    at_bound = tier_consumption(Decimal(100), "graduated", TIERS)
    assert [t["current"] for t in at_bound] == [True, False, False]


def test_volume_consumption() -> None:
    # the whole 250 in B: 250 more to B's bound
    got = [(t["consumed"], t["remaining"], t["current"]) for t in tier_consumption(Decimal(250), "volume", TIERS)]
    assert got == [(Decimal(0), None, False), (Decimal(250), Decimal(250), True), (Decimal(0), None, False)]
    assert [t["current"] for t in tier_consumption(Decimal(0), "volume", TIERS)] == [False, False, False]


def test_trimmed_keeps_the_value() -> None:
    assert str(trimmed(Decimal("8.0000000000"))) == "8"
    assert str(trimmed(Decimal("10.5000000000"))) == "10.5"
    assert str(trimmed(Decimal("100"))) == "100"
    assert trimmed(None) is None


def test_a_dashboard_without_data(tmp_path: Path) -> None:
    """A data dir whose run had nothing to report still gets a page (the asset never fails the run)."""
    from dagster_project import warehouse
    from dagster_project.reporting.snapshot import publish_snapshot

    with warehouse.connect(tmp_path) as connection:
        connection.execute("insert into reporting.run_clock values (timestamp '2026-11-01 00:00:00')")
        from datetime import datetime

        publish_snapshot(connection, tmp_path, datetime(2026, 11, 1))
    result = write_dashboard(tmp_path)
    html = result.path.read_text(encoding="utf-8")
    assert "No billing periods yet." in html and "No customers billed yet." in html
    assert result.headline["revenue_usd"] == 0

def test_finance_assets_run_after_the_invoices_in_the_billing_job() -> None:
    import dagster as dg

    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    key = dg.AssetKey
    # revenue is what was issued: the finance marts read the ledger, so they come after it
    assert key(["marts", "invoices"]) in graph.get(key(["intermediate", "int_drafts_margined"])).parent_keys
    assert key(["marts", "margin_by_customer"]) in graph.get(key(["reporting", "snapshot"])).parent_keys
    assert key(["reporting", "snapshot"]) in graph.get(key(["reporting", "finance_dashboard"])).parent_keys
    # the rating invocation does not build them (it runs before the ledger is written)
    rating = graph.get(key(["marts", "invoice_drafts"])).assets_def
    assert key(["marts", "margin_by_customer"]) not in rating.keys
    job = defs.resolve_job_def("bill_period")
    assert {"reporting__snapshot", "reporting__finance_dashboard", "meterhouse_dbt_reports"} <= {
        node.name for node in job.graph.node_defs}


def test_a_malformed_fx_file_keeps_the_last_good_rates(tmp_path: Path) -> None:
    from dagster_project import warehouse
    from dagster_project.reporting.inputs import write_report_inputs

    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "fx_rates.csv").write_text("currency,usd_per_unit,valid_from\nEUR,1.1,2026-01-01\n")
    with warehouse.connect(tmp_path) as connection:
        assert write_report_inputs(connection, tmp_path, datetime(2026, 11, 1), None)["fx_rates"] == 1
        (tmp_path / "landing" / "fx_rates.csv").write_text("currency,usd_per_unit,valid_from\nEUR,abc,2026-01-01\n")
        with pytest.raises(FxRatesError):
            write_report_inputs(connection, tmp_path, datetime(2026, 11, 2), None)
        summary = write_report_inputs(connection, tmp_path, datetime(2026, 11, 2), None, keep_fx_rates=True)
        assert summary["fx_rates"] == 1
        assert connection.execute("select as_of from reporting.run_clock").fetchall() == [(datetime(2026, 11, 2),)]


def test_a_snapshot_publishes_over_a_data_dir_copied_without_symlinks(tmp_path: Path) -> None:
    """A backup restored with `cp -r` turns `snapshots/current` into a plain directory."""
    import shutil
    from datetime import datetime

    from dagster_project import warehouse
    from dagster_project.reporting.snapshot import KEEP, current_snapshot, manifest, publish_snapshot

    original = tmp_path / "original"
    with warehouse.connect(original) as connection:
        publish_snapshot(connection, original, datetime(2026, 10, 1))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)  # symlinks=False: the link's target is copied as a directory
    assert not (copy / "snapshots" / "current").is_symlink()
    with warehouse.connect(copy) as connection:
        for day in range(1, KEEP + 3):
            publish_snapshot(connection, copy, datetime(2026, 11, day))
    current = copy / "snapshots" / "current"
    assert current.is_symlink()
    assert manifest(current_snapshot(copy))["as_of"] == f"2026-11-{KEEP + 2:02d}T00:00:00"
    # pruning keeps KEEP versions, the link not counted among them
    versions = [p for p in (copy / "snapshots").iterdir() if p.is_dir() and not p.is_symlink()
                and not p.name.startswith(".")]
    assert len(versions) == KEEP
