"""The Great Expectations 1.x suite behind the draft checks (imported only when checks run).

Each expectation maps to one gate check; ``unexpected_index_column_names=["draft_key"]``
makes GX name the failing rows, so a failure holds exactly the drafts it concerns.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

# great_expectations imports pyspark.sql.connect when pyspark (the spark extra) is installed. Without
# all of Spark Connect's client packages, pyspark takes a __main__ without __file__ (``python -c``,
# pytest-xdist workers) for its own doctest run and calls sys.exit(0) on that import. Meterhouse
# never uses Spark Connect: mark it unavailable, so the import fails as an ImportError, which GX handles.
if importlib.util.find_spec("pyspark") is not None:
    sys.modules.setdefault("pyspark.sql.connect", None)

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
import pandas as pd  # noqa: E402

from dagster_project.quality.gate import CheckOutcome  # noqa: E402

logging.getLogger("great_expectations").setLevel(logging.WARNING)

DRAFT_EXPECTATIONS = {
    "invoice_total_is_the_sum_of_its_lines": gxe.ExpectColumnPairValuesToBeEqual(
        column_A="total", column_B="lines_total"
    ),
    "one_invoice_per_subscription_period": gxe.ExpectColumnValuesToBeBetween(
        column="drafts_for_period", min_value=1, max_value=1
    ),
    "no_event_after_the_run_time": gxe.ExpectColumnValuesToBeBetween(column="events_after_run", max_value=0),
}
LINE_EXPECTATIONS = {
    "usage_quantities_and_amounts_non_negative": [
        gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0),
    ],
    "line_currency_is_the_products": [
        gxe.ExpectColumnPairValuesToBeEqual(column_A="currency", column_B="product_currency"),
    ],
}


def _context(quality_dir: Path):
    quality_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(quality_dir))
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return context


def _validate(context, name: str, frame: pd.DataFrame, expectations: list) -> list:
    source = context.data_sources.add_or_update_pandas("meterhouse")
    asset = next((a for a in source.assets if a.name == name), None) or source.add_dataframe_asset(name)
    batch = next((b for b in asset.batch_definitions if b.name == "due"), None) or \
        asset.add_batch_definition_whole_dataframe("due")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{name}_gate", data=batch, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["draft_key"]},
    )
    return result.results


def _failing(result) -> list[str]:
    return sorted({row["draft_key"] for row in (result.result.get("unexpected_index_list") or [])})


def validate_drafts(drafts: pd.DataFrame, lines: pd.DataFrame, quality_dir: Path,
                    build_docs: bool = True) -> list[CheckOutcome]:
    """The draft checks' outcomes; GX keeps the validation results under ``quality_dir`` and,
    with ``build_docs``, renders them into its data docs (else ``build_data_docs`` does later)."""
    context = _context(quality_dir)
    outcomes = []
    draft_results = _validate(context, "invoice_drafts", drafts, [e.copy() for e in DRAFT_EXPECTATIONS.values()])
    for name, result in zip(DRAFT_EXPECTATIONS, draft_results, strict=True):
        failing = _failing(result)
        outcomes.append(CheckOutcome(name, "draft", result.success, f"{len(failing)} draft(s) failing", failing))
    # the non-negative rule is about usage: adjustments and credit notes may be negative
    usage_lines = lines[lines["kind"] != "adjustment"]
    flat = [e.copy() for group in LINE_EXPECTATIONS.values() for e in group]
    line_results = iter(_validate(context, "invoice_line_drafts", usage_lines, flat))
    for name, group in LINE_EXPECTATIONS.items():
        results = [next(line_results) for _ in group]
        failing = sorted({key for result in results for key in _failing(result)})
        passed = all(result.success for result in results)
        outcomes.append(CheckOutcome(name, "draft", passed, f"{len(failing)} draft(s) failing", failing))
    if build_docs:
        context.build_data_docs()
    return outcomes


def build_data_docs(quality_dir: Path) -> None:
    _context(quality_dir).build_data_docs()
