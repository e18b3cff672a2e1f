"""Hostile customer strings, end to end, on the reference run of ``tests/reliability/harness.py``.

Its catalog puts HTML/JS and SQL quotes in product, metric, tier, organization, subscriber,
subscription and credential names, a filter value and subscription metadata; its events
carry a hostile model name and metadata. A real `meterhouse bill` (Stripe on localstripe,
e-mail to a capturing SMTP server) must then:

* render invoices and e-mails that headless Chromium opens without running any script;
* keep the quotes as data (the metric is named exactly as in the catalog, the filter value
  with a quote matched nothing, raw.events still exists);
* never write the Stripe key to a log, the Dagster event log, asset metadata, the warehouse
  or a rendered file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from tests.reliability import harness

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reference")]  # shares the reference run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def reference() -> harness.Outcome:
    return harness.reference()


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--allow-file-access-from-files"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def assert_no_script_ran(browser, page: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    browser.get(page.as_uri())
    try:
        alert = browser.switch_to.alert
        text = alert.text
        alert.dismiss()
        pytest.fail(f"{page.name}: an alert ran: {text!r}")
    except NoAlertPresentException:
        pass
    assert browser.execute_script("return window.__pwned === undefined"), f"{page.name}: a payload ran"
    assert browser.title != "pwned", f"{page.name}: a payload changed the title"
    # the payload is on the page as text, so the test is not vacuous
    assert "window.__pwned" in browser.execute_script("return document.body.innerText") or \
        "onerror" in browser.execute_script("return document.body.innerText")


def test_invoices_show_hostile_names_as_text_in_a_browser(reference: harness.Outcome, browser) -> None:
    pages = sorted((reference.root / "invoices").glob("*.html"))
    assert pages
    hostile = [page for page in pages if "window.__pwned" in page.read_text(encoding="utf-8").replace("&#34;", '"')
               or "&lt;script&gt;" in page.read_text(encoding="utf-8")]
    assert hostile, "no invoice carries a hostile string: the test would prove nothing"
    for page in hostile:
        assert_no_script_ran(browser, page)


def test_emails_show_hostile_names_as_text_in_a_browser(
    reference: harness.Outcome, browser, tmp_path: Path
) -> None:
    opened = 0
    for index, message in enumerate(reference.mailbox.messages):
        part = message.get_body(preferencelist=("html",))
        if part is None:
            continue
        html = part.get_content()
        if "&lt;script&gt;" not in html and "&lt;img" not in html:
            continue
        page = tmp_path / f"mail-{index}.html"
        page.write_text(html, encoding="utf-8")
        assert_no_script_ran(browser, page)
        opened += 1
    assert opened, "no e-mail carries a hostile string: the test would prove nothing"


def test_the_finance_dashboard_shows_hostile_names_as_text_in_a_browser(reference: harness.Outcome, browser) -> None:
    """Organization, product and model names reach the dashboard's tables and plotly charts."""
    page = reference.root / "dashboards" / "finance.html"
    assert "window.__pwned" in page.read_text(encoding="utf-8").replace("&#34;", '"').replace("\\u003c", "<") or \
        "&lt;script&gt;" in page.read_text(encoding="utf-8"), "the dashboard carries no hostile name: the test would be vacuous"
    assert_no_script_ran(browser, page)


def test_hostile_names_are_escaped_in_the_raw_html(reference: harness.Outcome) -> None:
    documents = [page.read_text(encoding="utf-8") for page in (reference.root / "invoices").glob("*.html")]
    mails = [message.get_body(preferencelist=("html",)).get_content() for message in reference.mailbox.messages
             if message.get_body(preferencelist=("html",)) is not None]
    for text in documents + mails:
        assert "<script>window.__pwned" not in text and "<img src=x" not in text and "<iframe" not in text
        assert "<svg onload" not in text and "<b onmouseover" not in text


def test_quotes_in_catalog_strings_are_data_not_sql(reference: harness.Outcome) -> None:
    with duckdb.connect(str(reference.root / "warehouse.duckdb"), read_only=True) as connection:
        metrics = {row[0] for row in connection.execute("select distinct metric from marts.invoice_lines").fetchall()}
        tiers = {row[0] for row in connection.execute("select distinct tier_name from marts.invoice_lines").fetchall()}
        events = connection.execute("select count(*) from raw.events").fetchone()[0]
        by_filter = connection.execute(
            "select count(*) from intermediate.int_events_attributed where model = ?", [harness.XSS["filter"]]
        ).fetchone()[0]
        hostile_model = connection.execute(
            "select count(*) from raw.events where model = ?", [harness.XSS["model"]]
        ).fetchone()[0]
        quoted_raw = connection.execute(
            "select count(*) from raw.events where model = ?", [harness.XSS["filter"]]
        ).fetchone()[0]
    assert harness.XSS["metric"] in metrics
    assert harness.XSS["tier"] in tiers
    assert events > 1000 and hostile_model == 1
    # the generator sends events whose model is the quoted filter value: they are data, rated like any other
    assert quoted_raw > 0 and by_filter == quoted_raw


def _files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_the_stripe_key_is_in_no_log_metadata_or_file(reference: harness.Outcome) -> None:
    """The run was paid through Stripe with STRIPE_KEY set; grep everything it left behind."""
    key = harness.STRIPE_KEY.encode()
    assert reference.snapshot["payments"], "no Stripe charge was made: the test would prove nothing"
    assert key.decode() not in reference.run.stdout and key.decode() not in reference.run.stderr
    found = []
    for path in _files_under(reference.root):  # warehouse, .dagster (event log, run storage), last_bill.log, documents
        if key in path.read_bytes():
            found.append(str(path.relative_to(reference.root)))
    assert not found, f"the Stripe key was written to {found}"
    assert (reference.root / ".dagster" / "last_bill.log").exists()
    assert any(path.suffix in (".db", ".sqlite") or "storage" in str(path) for path in _files_under(
        reference.root / ".dagster")), "the Dagster event log was not where the test looks"
    for message in reference.mailbox.messages:
        assert key not in message.as_bytes()


def test_the_dagster_event_log_and_asset_metadata_hold_no_secret(reference: harness.Outcome) -> None:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(reference.root / ".dagster")) as instance:
        records = instance.get_run_records()
        assert records
        text = []
        for record in records:
            for entry in instance.all_logs(record.dagster_run.run_id):
                text.append(entry.message or "")
                event = entry.dagster_event
                if event is not None and event.event_type_value == "ASSET_MATERIALIZATION":
                    text.append(repr(event.event_specific_data.materialization.metadata))
            text.append(repr(record.dagster_run.run_config))
            text.append(repr(record.dagster_run.tags))
    joined = "\n".join(text)
    assert "paid_invoices" in joined or "payment_status_counts" in joined  # payments metadata was looked at
    assert harness.STRIPE_KEY not in joined
