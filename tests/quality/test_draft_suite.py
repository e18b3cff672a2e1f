"""The Great Expectations draft suite (quality/suite.py) and its warm worker (quality/warm_suite.py):
a failing expectation names exactly the drafts it concerns, in process and in the worker alike."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from dagster_project.quality import warm_suite
from dagster_project.quality.gate import DRAFT_CHECKS

D = Decimal


def _tables(drafts: pd.DataFrame, lines: pd.DataFrame) -> tuple[pa.Table, pa.Table]:
    """As the release gate hands them over (``gate._due_tables``): Arrow, amounts as decimals."""
    return pa.Table.from_pandas(drafts, preserve_index=False), pa.Table.from_pandas(lines, preserve_index=False)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four due drafts: `good` passes everything; each other one breaks one rule, by hand:
    `sum` totals 214.00 over lines of 199.00 + 10.00; `negative` has a usage line of -3 units;
    `late` has an event after the run's clock; `twice` is one of two drafts of one period."""
    start, end = datetime(2026, 10, 1), datetime(2026, 11, 1)
    drafts = pd.DataFrame([
        # draft_key, subscription, total, lines_total, drafts_for_period, events_after_run
        ("good", "sub-a", D("214.00"), D("214.00"), 1, 0),
        ("sum", "sub-b", D("214.00"), D("209.00"), 1, 0),
        ("negative", "sub-c", D("194.50"), D("194.50"), 1, 0),
        ("late", "sub-d", D("199.00"), D("199.00"), 1, 2),
        ("twice", "sub-e", D("199.00"), D("199.00"), 2, 0),
    ], columns=["draft_key", "subscription_id", "total", "lines_total", "drafts_for_period", "events_after_run"])
    drafts["period_start"], drafts["period_end"] = start, end
    lines = pd.DataFrame([
        ("good", 1, "recurring", D("1"), D("199.00"), "USD", "USD"),
        ("good", 2, "usage", D("10"), D("15.00"), "USD", "USD"),
        ("sum", 1, "recurring", D("1"), D("199.00"), "USD", "USD"),
        ("sum", 2, "usage", D("5"), D("10.00"), "USD", "USD"),
        ("negative", 1, "recurring", D("1"), D("199.00"), "USD", "USD"),
        ("negative", 2, "usage", D("-3"), D("-4.50"), "USD", "USD"),
        ("late", 1, "recurring", D("1"), D("199.00"), "USD", "USD"),
        ("twice", 1, "recurring", D("1"), D("199.00"), "EUR", "USD"),
        # an adjustment may be negative: not a usage line, so it fails nothing
        ("good", 3, "adjustment", D("1"), D("-0.00"), "USD", "USD"),
    ], columns=["draft_key", "line_number", "kind", "quantity", "amount", "currency", "product_currency"])
    return drafts, lines


EXPECTED = {
    "invoice_total_is_the_sum_of_its_lines": ["sum"],
    "usage_quantities_and_amounts_non_negative": ["negative"],
    "no_event_after_the_run_time": ["late"],
    "one_invoice_per_subscription_period": ["twice"],
    "line_currency_is_the_products": ["twice"],
}


def _failing(outcomes) -> dict[str, list[str]]:
    return {outcome.name: outcome.failing_drafts for outcome in outcomes}


def test_each_failing_expectation_names_only_its_drafts(tmp_path: Path) -> None:
    drafts, lines = _tables(*_frames())
    outcomes = warm_suite.validate_drafts(drafts, lines, tmp_path / "quality")  # no worker: in process
    assert {outcome.name for outcome in outcomes} == set(DRAFT_CHECKS)
    assert _failing(outcomes) == EXPECTED
    assert not any(outcome.passed for outcome in outcomes)
    # GX wrote its data docs beside the data
    assert list((tmp_path / "quality").rglob("index.html"))


def test_the_warm_worker_gives_the_same_outcomes(tmp_path: Path) -> None:
    drafts, lines = _tables(*_frames())
    with warm_suite.warm_suite():
        in_worker = warm_suite.validate_drafts(drafts, lines, tmp_path / "worker")
    # the worker renders the data docs after answering; they are there once the run's worker ends
    pages = list((tmp_path / "worker").rglob("validations/**/*.html"))
    assert len(pages) == 2, pages  # one validation of the drafts, one of their lines
    in_process = warm_suite.validate_drafts(drafts, lines, tmp_path / "process")
    assert [(o.name, o.passed, o.failing_drafts) for o in in_worker] == \
        [(o.name, o.passed, o.failing_drafts) for o in in_process]


def test_a_clean_set_of_drafts_passes(tmp_path: Path) -> None:
    drafts, lines = _frames()
    drafts, lines = _tables(drafts[drafts.draft_key == "good"], lines[lines.draft_key == "good"])
    outcomes = warm_suite.validate_drafts(drafts, lines, tmp_path / "quality")
    assert all(outcome.passed and not outcome.failing_drafts for outcome in outcomes)


@pytest.mark.parametrize("started", [False, True])
def test_no_worker_outlives_the_run(started: bool) -> None:
    if started:
        with warm_suite.warm_suite():
            assert warm_suite._worker is not None
    assert warm_suite._worker is None


def test_data_docs_that_fail_to_render_are_a_warning_not_a_failed_run(capsys) -> None:
    from concurrent.futures import Future

    failed: Future = Future()
    failed.set_exception(OSError("No space left on device"))
    warm_suite._report_docs_failure(failed)
    assert "data docs not built: No space left on device" in capsys.readouterr().err
