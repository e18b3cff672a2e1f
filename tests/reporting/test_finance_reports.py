"""The finance reports end to end, on one billed data dir (tests/reporting/conftest.py): every mart
against hand-worked numbers, the quota and preview lookups (also while another process holds the
warehouse), the dashboard in headless Chromium, and price simulation.

One module on purpose: its two billing runs are shared by every test here, and `pytest -n 2
--dist loadfile` keeps a module on one worker, so they run once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.reporting.lookups import NotFound, preview, quota
from tests.reporting.conftest import CATALOG

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


# --- marts --------------------------------------------------------------------------------

SEP, OCT, NOV, DEC = (datetime(2026, month, 1) for month in (9, 10, 11, 12))


def D(text: str) -> Decimal:  # noqa: N802
    return Decimal(text)


def pct(margin: str, revenue: str) -> Decimal:
    return (D(margin) / D(revenue)).quantize(D("1E-10"), rounding=ROUND_HALF_EVEN)


def rows(root: Path, sql: str, *parameters) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql, list(parameters)).fetchall()


def test_margin_by_customer(billed_reporting: Path) -> None:
    got = {
        (org, start): values for org, start, *values in rows(billed_reporting, """
            select organization_id, period_start, currency, invoiced_revenue, late_revenue, revenue, pending_revenue,
                   usd_per_unit, revenue_usd, provider_cost_usd, trial_cost_usd, margin, margin_pct, status
            from marts.margin_by_customer
        """)
    }
    # acme September: 12 calls issued = 100 + 10 x 1.00 + 2 x 0.50 = 111.00; the late 13th call re-rates
    # it to 111.50: +0.50 late. Cost 13 x 0.10 = 1.30; margin 111.50 - 1.30 = 110.20
    assert got[("acme", SEP)] == ["USD", D("111.00"), D("0.50"), D("111.50"), D("0"), D("1"), D("111.50"),
                                  D("1.30"), D("0"), D("110.20"), pct("110.20", "111.50"), "invoiced"]
    # acme October: 20 calls = 100 + 10 + 10 x 0.50 = 115.00 (the 0.50 adjustment line it carries is
    # September's revenue, not October's); cost 2.00; margin 113.00
    assert got[("acme", OCT)][1:4] == [D("115.00"), D("0"), D("115.00")]
    assert got[("acme", OCT)][7:10] == [D("2.00"), D("0"), D("113.00")]
    # acme November is open: nothing issued, 100 + 8 x 1.00 = 108.00 pending; 8 calls cost 0.80 so far
    assert got[("acme", NOV)][1:5] == [D("0"), D("0"), D("0"), D("108.00")]
    assert got[("acme", NOV)][-1] == "open"
    # globex September in EUR: 50 + 4 x 2.00 (volume) = 58.00 EUR at 1.10 (rate at 10-01) = 63.80 USD;
    # cost 4 x 0.05 = 0.20; margin 63.60
    assert got[("globex", SEP)] == ["EUR", D("58.00"), D("0"), D("58.00"), D("0"), D("1.1"), D("63.80"),
                                    D("0.20"), D("0"), D("63.60"), pct("63.60", "63.80"), "invoiced"]
    # globex October: 50 + 6 x 1.00 (6 > 5: all at the second tier) = 56.00 EUR at 1.20 (from 10-15) = 67.20
    assert got[("globex", OCT)][5:7] == [D("1.2"), D("67.20")]
    # initech October: trial calls (3 x 0.20) cost 0.60 and bill 0; 5 calls after it = 5.00
    # cost 0.60 + 1.00 = 1.60; margin 3.40 = 68 %
    assert got[("initech", OCT)][3] == D("5.00")
    assert got[("initech", OCT)][7:11] == [D("1.60"), D("0.60"), D("3.40"), D("0.68")]


def test_margin_by_product(billed_reporting: Path) -> None:
    # chat-pro September is acme's: 111.50 revenue, 1.30 cost; chat-eu October is globex's
    assert rows(billed_reporting, """
        select product_id, revenue, revenue_usd, provider_cost_usd, margin, subscription_count from marts.margin_by_product
        where period_start = ? order by product_id
    """, SEP) == [
        ("chat-eu", D("58.00"), D("63.80"), D("0.20"), D("63.60"), 1),
        ("chat-pro", D("111.50"), D("111.50"), D("1.30"), D("110.20"), 1),
    ]


def test_margin_by_period(billed_reporting: Path) -> None:
    got = {month: values for month, *values in rows(billed_reporting, """
        select reporting_month, revenue_usd, pending_revenue_usd, provider_cost_usd, trial_cost_usd,
               unbilled_cost_usd, margin from marts.margin_by_period
    """)}
    # September: 111.50 + 63.80 = 175.30; cost 1.30 + 0.20 = 1.50; mallory's call 0.07 unbilled
    assert got[SEP] == [D("175.30"), D("0"), D("1.50"), D("0"), D("0.07"), D("173.80")]
    # October: 115.00 + 67.20 + 5.00 = 187.20; cost 2.00 + 0.30 + 1.60 = 3.90 (0.60 trial); margin 183.30
    assert got[OCT] == [D("187.20"), D("0"), D("3.90"), D("0.60"), D("0.07"), D("183.30")]
    # November: pending 108.00 + 50.00 EUR x 1.20 (rate at 12-01) + 0 = 168.00; cost so far 0.80
    assert got[NOV][:3] == [D("0"), D("168.00"), D("0.80")]


def test_margin_by_model_allocates_revenue_by_events(billed_reporting: Path) -> None:
    got = {(provider, model): values for provider, model, *values in rows(billed_reporting, """
        select provider, model, allocated_revenue_usd, provider_cost_usd, trial_cost_usd, unbilled_cost_usd
        from marts.margin_by_model where reporting_month = ?
    """, OCT)}
    # acme's 115.00 over 20 billable calls: 15 on gpt-4o-mini = 86.25, 5 on gpt-4o = 28.75;
    # initech's 5.00 is all gpt-4o-mini (trial calls are not billable, their cost still counts)
    assert got[("openai", "gpt-4o-mini")] == [D("91.25"), D("3.10"), D("0.60"), D("0.07")]
    assert got[("openai", "gpt-4o")] == [D("28.75"), D("0.50"), D("0"), D("0")]
    assert got[("anthropic", "claude-3-haiku")] == [D("67.20"), D("0.30"), D("0"), D("0")]
    # the allocation adds up to the month's revenue
    assert sum(values[0] for values in got.values()) == D("187.20")


def test_late_revenue(billed_reporting: Path) -> None:
    (first_invoice,) = rows(billed_reporting, """
        select invoice_number from marts.invoices where subscription_id = 'acme-pro' and period_start = ?
    """, SEP)[0]
    # the late September call is 0.50 more (13th call at 0.50), carried on October's invoice
    assert rows(billed_reporting, """
        select original_invoice_number, subscription_id, period_start, invoiced_revenue, late_revenue,
               pending_late_revenue, adjustment_count from marts.late_revenue
    """) == [(first_invoice, "acme-pro", SEP, D("111.00"), D("0.50"), D("0"), 1)]
    (line,) = rows(billed_reporting, """
        select l.amount from marts.invoice_lines as l join marts.invoices as i using (invoice_number)
        where i.subscription_id = 'acme-pro' and i.period_start = ? and l.kind = 'adjustment'
    """, OCT)
    assert line == (D("0.50"),)


def test_budget_pacing(billed_reporting: Path) -> None:
    got = {subscription: values for subscription, *values in rows(billed_reporting, """
        select subscription_id, period_start, elapsed_seconds, quantity, recent_event_count,
               projected_quantity_linear, projected_quantity_recent, usage_amount_so_far, projected_amount_linear,
               projected_amount_recent, tier_position, projected_tier_position_linear, crosses_tier,
               draft_amount_so_far, projected_total_linear, projected_total_recent, budget, exceeds_budget
        from marts.budget_pacing
    """)}
    assert set(got) == {"acme-pro", "globex-eu", "initech-trial"}
    # acme at 11-16: 15 of 30 days elapsed, 8 calls, 4 in the last quarter of the elapsed time (after 11-12 06:00)
    # linear 8 x 30/15 = 16; recent 8 + 8 x (4/8) x (15 days left / 3.75 days) = 24
    # amounts: 8 x 1.00 = 8.00; 16 -> 10 + 6 x 0.50 = 13.00; 24 -> 10 + 14 x 0.50 = 17.00
    # totals with the 100.00 fee: 108.00 / 113.00 / 117.00; 117.00 > budget 115 -> over budget
    assert got["acme-pro"] == [NOV, 15 * 86400, D("8"), 4, D("16"), D("24"), D("8.00"), D("13.00"), D("17.00"),
                               1, 2, True, D("108.00"), D("113.00"), D("117.00"), D("115"), True]
    # globex has no November call: nothing projected, no tier entered, no budget
    assert got["globex-eu"][2] == D("0")
    assert got["globex-eu"][9:] == [None, None, False, D("50.00"), D("50.00"), D("50.00"), None, False]


# --- lookups ------------------------------------------------------------------------------

HOLD_THE_WAREHOUSE = """
import sys, time
from pathlib import Path
import duckdb
from dagster_project.lib.locking import exclusive_writer
root = Path(sys.argv[1])
with exclusive_writer(root):
    connection = duckdb.connect(str(root / "warehouse.duckdb"))  # the writer's own handle on the file
    connection.execute("select count(*) from marts.invoices").fetchone()
    print("holding", flush=True)
    time.sleep(120)
"""


@pytest.fixture()
def writer_holding(billed_reporting: Path):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WAREHOUSE, str(billed_reporting)], cwd=REPO,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout.readline().strip() == "holding"
        yield process
    finally:
        process.kill()
        process.wait()


def test_quota_of_the_open_period(billed_reporting: Path) -> None:
    answer = quota(billed_reporting, "acme-pro")
    assert (answer["period_start"], answer["period_end"], answer["status"]) == (
        datetime(2026, 11, 1), datetime(2026, 12, 1), "open")
    assert answer["data_as_of"] == datetime(2026, 11, 16)
    # 100.00 fee + 8 calls in "First 10" at 1.00: 2 left in it; "10+" untouched and unbounded
    assert answer["amount_so_far"] == Decimal("108.00")
    (requests,) = answer["metrics"]
    assert requests["quantity"] == Decimal("8")
    first, second = requests["tiers"]
    assert (first["consumed"], first["remaining"], first["current"], first["amount"]) == (
        Decimal("8"), Decimal("2"), True, Decimal("8.00"))
    assert (second["consumed"], second["remaining"], second["current"], second["amount"]) == (
        Decimal("0"), None, False, Decimal("0"))
    assert (requests["projected_quantity_linear"], requests["projected_quantity_recent"]) == (Decimal("16"), Decimal("24"))


def test_quota_at_an_instant_of_an_issued_period(billed_reporting: Path) -> None:
    # October: 20 calls, 10 in each tier; the second tier 10 x 0.50 = 5.00
    answer = quota(billed_reporting, "acme-pro", at=datetime(2026, 10, 15))
    assert answer["status"] == "issued" and answer["invoice_number"].startswith("MH-2026-")
    first, second = answer["metrics"][0]["tiers"]
    assert (first["consumed"], first["remaining"], second["consumed"], second["amount"]) == (
        Decimal("10"), Decimal("0"), Decimal("10"), Decimal("5.00"))


def test_unknown_subscription_and_instant(billed_reporting: Path) -> None:
    with pytest.raises(NotFound, match="no subscription"):
        quota(billed_reporting, "nobody")
    with pytest.raises(NotFound, match="no period"):
        quota(billed_reporting, "initech-trial", at=datetime(2026, 9, 15))


def test_lookups_answer_while_a_billing_run_holds_the_warehouse(billed_reporting: Path, writer_holding) -> None:
    # the warehouse file itself is not readable now: DuckDB lets one process hold it
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(billed_reporting / "warehouse.duckdb"), read_only=True)
    started = time.perf_counter()
    answer = quota(billed_reporting, "acme-pro")
    seconds = time.perf_counter() - started
    assert answer["amount_so_far"] == Decimal("108.00")
    assert seconds < 2, f"quota took {seconds:.2f} s"
    assert preview(billed_reporting, "globex-eu")["draft"]["total"] == Decimal("50.00")
    # and through the command line, as JSON
    completed = subprocess.run(
        [sys.executable, "-m", "dagster_project", "quota", "acme-pro", "--json", "--data-dir", str(billed_reporting)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["amount_so_far"] == "108.00"
    assert [tier["remaining"] for tier in document["metrics"][0]["tiers"]] == ["2", None]


def test_preview_renders_the_would_be_invoice(billed_reporting: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dagster_project.cli import app

    page = tmp_path / "preview.html"
    result = CliRunner().invoke(app, ["preview", "acme-pro", "--html", str(page), "--data-dir", str(billed_reporting)])
    assert result.exit_code == 0, result.output
    assert "PREVIEW" in result.output and "108.00 USD" in result.output
    html = page.read_text(encoding="utf-8")
    assert "Preview, not an invoice" in html and "108.00" in html
    missing = CliRunner().invoke(app, ["quota", "nobody", "--data-dir", str(billed_reporting)])
    assert missing.exit_code == 1


# --- dashboard ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("headless Chromium is missing: `make browser` installs chromium and chromium-driver")
        pytest.skip("headless Chromium is not installed (make browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,2200", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_run_wrote_the_dashboard(billed_reporting: Path) -> None:
    page = billed_reporting / "dashboards" / "finance.html"
    assert page.exists()
    html = page.read_text(encoding="utf-8")
    # self-contained: plotly.js inlined, no script, style sheet or image fetched from anywhere
    assert "Plotly" in html and "<script src" not in html and "<link" not in html and '<img src="http' not in html


def test_dashboard_in_a_browser(billed_reporting: Path, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    page = billed_reporting / "dashboards" / "finance.html"
    browser.get(page.resolve().as_uri())
    WebDriverWait(browser, 30).until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".js-plotly-plot .main-svg")))
    charts = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
    assert {chart.get_attribute("id") for chart in charts} >= {"chart-over-time", "chart-tiers", "chart-models"}
    # plotly drew bars, not an empty frame
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-over-time g.trace.bars path")
    assert browser.find_element(By.ID, "kpi-revenue").text == "362.50"  # 175.30 + 187.20 issued, USD

    def organizations() -> list[str]:
        return [row.find_element(By.TAG_NAME, "td").text
                for row in browser.find_elements(By.CSS_SELECTOR, "#margin-table tbody tr")]

    # margins of invoiced periods: acme 110.20 + 113.00, globex 63.60 + 66.90, initech 3.40
    assert organizations() == ["Acme Corp", "Globex", "Initech"]
    header = browser.find_element(By.XPATH, "//table[@id='margin-table']//th[normalize-space()='Margin (USD)']")
    header.click()
    assert organizations() == ["Initech", "Globex", "Acme Corp"]
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert organizations() == ["Acme Corp", "Globex", "Initech"]
    margins = [row.find_elements(By.TAG_NAME, "td")[5].text
               for row in browser.find_elements(By.CSS_SELECTOR, "#margin-table tbody tr")]
    assert margins == ["223.20", "130.50", "3.40"]
    # pacing flags acme, unbilled usage lists mallory
    assert "over budget" in browser.find_element(By.ID, "pacing-table").text
    assert "mallory" in browser.find_element(By.ID, "unbilled-table").text
    screenshot = tmp_path / "finance-dashboard.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 20_000
    if os.environ.get("METERHOUSE_KEEP_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["METERHOUSE_KEEP_SCREENSHOT"])


# --- simulation ---------------------------------------------------------------------------

def _fingerprint(root: Path) -> dict[str, str]:
    """Hashes of everything a simulation must leave alone."""
    files = [root / "warehouse.duckdb", *sorted((root / "invoices").glob("*")), *sorted((root / "catalog").glob("*"))]
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def test_simulate_a_dearer_second_tier(billed_reporting: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dagster_project.cli import app

    new_catalog = tmp_path / "new-catalog"
    new_catalog.mkdir()
    (new_catalog / "catalog.yaml").write_text(CATALOG.replace('"10+", up_to: null, unit_rate: "0.50"',
                                                              '"10+", up_to: null, unit_rate: "0.75"'))
    before = _fingerprint(billed_reporting)
    result = CliRunner().invoke(app, [
        "simulate", "--catalog", str(new_catalog), "--from", "2026-09", "--to", "2026-10", "--json",
        "--data-dir", str(billed_reporting),
    ])
    assert result.exit_code == 0, result.output
    assert _fingerprint(billed_reporting) == before
    document = json.loads(result.stdout)
    got = {(row["organization_id"], row["product_id"]): row for row in document["rows"]}
    # acme, chat-pro: September 13 calls 100 + 10 + 3 x 0.75 = 112.25 (was 111.50);
    # October 20 calls 100 + 10 + 10 x 0.75 = 117.50 (was 115.00): 229.75 vs 226.50, +3.25
    acme = got[("acme", "chat-pro")]
    assert [Decimal(acme[key]) for key in ("old_revenue", "new_revenue", "revenue_difference")] == [
        Decimal("226.50"), Decimal("229.75"), Decimal("3.25")]
    # cost is the same events': 1.30 + 2.00; margin 223.20 -> 226.45
    assert [Decimal(acme[key]) for key in ("old_margin_usd", "new_margin_usd")] == [Decimal("223.20"), Decimal("226.45")]
    # globex and initech are priced as before (EUR 58 + 56 = 114; USD 5)
    assert Decimal(got[("globex", "chat-eu")]["revenue_difference"]) == 0
    assert Decimal(got[("globex", "chat-eu")]["new_revenue"]) == Decimal("114.00")
    assert Decimal(got[("initech", "chat-trial")]["new_revenue"]) == Decimal("5.00")
    assert Decimal(document["totals"]["revenue_difference_usd"]) == Decimal("3.25")
    page = Path(document["dashboard"])
    assert page.name == "simulation-2026-09-2026-10.html" and "229.75" in page.read_text(encoding="utf-8")


def test_simulate_rejects_bad_periods(billed_reporting: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dagster_project.cli import app

    result = CliRunner().invoke(app, [
        "simulate", "--catalog", str(tmp_path), "--from", "2026-10", "--to", "2026-09",
        "--data-dir", str(billed_reporting),
    ])
    assert result.exit_code == 2
