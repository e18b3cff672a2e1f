"""Lineage: exactly the events behind each usage line, on the hand-built ledger of ledger.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from dagster_project.invoicing import lineage
from tests.invoicing.ledger import NUMBER, add_late_event, build_warehouse

BILLABLE_SUMMARIES = ["e2", "e3", "e5", "e8"]  # gpt-4o-mini in production, after the trial
ALL_BILLABLE = ["e2", "e3", "e4", "e5", "e6", "e8"]  # no filter, after the trial
TRIAL = ["e1"]

# hand-worked from the table in ledger.py: line -> (role, events in request-time order)
EXPECTED = {
    3: ("tier", BILLABLE_SUMMARIES),  # First 3
    4: ("tier", BILLABLE_SUMMARIES),  # 3+: the same events feed every tier of the metric
    5: ("fixed_fee", BILLABLE_SUMMARIES),  # the fee is due because those events entered "3+"
    6: ("trial", TRIAL),
    7: ("tier", ALL_BILLABLE),  # Tokens: 2,700 tokens from six events
    8: ("trial", TRIAL),
    9: ("no_usage", ALL_BILLABLE),  # Images: quantity 0, the metric's events as dbt counts them
    10: ("trial", TRIAL),
}


def events_by_line(found: list[lineage.LineageEvent]) -> dict[int, tuple[str, list[str]]]:
    result: dict[int, tuple[str, list[str]]] = {}
    for event in found:
        role, ids = result.setdefault(event.line_number, (event.role, []))
        assert event.role == role
        ids.append(event.transaction_id)
    return result


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Issued and stamped (as write_documents does in the releasing run), then a late event lands."""
    root = build_warehouse(tmp_path_factory.mktemp("lineage"))
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        lineage.stamp_events_loaded_through(connection, [NUMBER])
    add_late_event(root)
    return root


def read_only(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)


def test_each_usage_line_lists_exactly_its_events(issued: Path) -> None:
    with read_only(issued) as connection:
        found = lineage.events_for_invoice(connection, NUMBER)
    assert events_by_line(found) == EXPECTED
    # setup and recurring lines (1, 2) have no events; other subscriptions, November and
    # unbilled events never show; nor does the event loaded after the invoice was issued
    assert {event.transaction_id for event in found}.isdisjoint({"x1", "n1", "u1", "late1"})


def test_each_event_carries_its_request_time_credential_value_and_source(issued: Path) -> None:
    with read_only(issued) as connection:
        tokens = lineage.events_for_invoice(connection, NUMBER, line_number=7)
    assert [(event.transaction_id, event.credential_name, str(event.value)) for event in tokens] == [
        ("e2", "prod-key", "200.0000000000"), ("e3", "prod-key", "300.0000000000"),
        ("e4", "staging-key", "400.0000000000"), ("e5", "staging-key", "500.0000000000"),
        ("e6", "prod-key", "600.0000000000"), ("e8", "staging-key", "700.0000000000"),
    ]
    assert sum(event.value for event in tokens) == 2700  # the line's quantity
    first = tokens[0]
    assert first.request_time.isoformat() == "2026-10-05T00:00:00"
    assert (first.metric, first.tier_name, first.is_trial) == ("Tokens", "All tokens", False)
    assert (first.source_file, first.source_line) == ("landing/events/october.jsonl", 2)


def test_every_line_count_matches_what_it_was_rated_from(issued: Path) -> None:
    with read_only(issued) as connection:
        summaries = lineage.line_summaries(connection, NUMBER)
    assert [(line["line_number"], line["event_count"], line["events_found"], line["matches"])
            for line in summaries] == [
        (3, 4, 4, True), (4, 4, 4, True), (5, None, 4, None), (6, 1, 1, True),
        (7, 6, 6, True), (8, 1, 1, True), (9, 6, 6, True), (10, 1, 1, True),
    ]


def test_an_invoice_issued_before_lineage_was_stamped_shows_late_events_as_a_mismatch(
    issued: Path, tmp_path: Path
) -> None:
    root = Path(shutil.copytree(issued, tmp_path / "copy"))
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.execute("update marts.invoices set events_loaded_through = null")
        summaries = {line["line_number"]: line for line in lineage.line_summaries(connection, NUMBER)}
        found = events_by_line(lineage.events_for_invoice(connection, NUMBER))
    assert found[3][1] == ["e2", "e3", "e5", "e8", "late1"]
    assert (summaries[3]["event_count"], summaries[3]["events_found"], summaries[3]["matches"]) == (4, 5, False)
    assert summaries[6]["matches"] is True  # late1 is not in the trial


def test_the_stamp_is_taken_once_when_the_first_document_is_written(issued: Path) -> None:
    with read_only(issued) as connection:
        stamped = connection.execute("select events_loaded_through from marts.invoices").fetchone()[0]
    assert stamped.isoformat() == "2026-11-01T00:30:00"  # the load before the release, not the late one


def test_lineage_reads_a_warehouse_without_the_lineage_column(tmp_path: Path) -> None:
    root = build_warehouse(tmp_path)  # never stamped: the column does not exist yet
    with read_only(root) as connection:
        assert events_by_line(lineage.events_for_invoice(connection, NUMBER)) == EXPECTED


def test_an_unknown_invoice_is_an_error(issued: Path) -> None:
    with read_only(issued) as connection, pytest.raises(LookupError, match="no invoice"):
        lineage.events_for_invoice(connection, "MH-2026-999999")


def test_filter_sql_mirrors_the_dbt_event_fields() -> None:
    assert lineage.field_text_sql("model") == "a.model"
    assert lineage.field_text_sql("inputTokenCount") == "cast(a.input_tokens as varchar)"
    assert lineage.field_text_sql("units.pages") == "json_extract_string(a.units_json, '$.pages')"
    assert lineage.field_text_sql("metadata.team") == "json_extract_string(r.attributes_json, '$.metadata.team')"
    assert lineage.element_value_sql("requests") == "cast(1 as decimal(38, 10))"
    sql, parameters = lineage.filter_sql({"model": ["o3", "gpt-4o"], "isStreamed": ["True"]})
    assert sql == ("json_extract_string(r.attributes_json, '$.isStreamed') in (?) and a.model in (?, ?)")
    assert parameters == ["true", "o3", "gpt-4o"]
    with pytest.raises(ValueError, match="invalid event field name"):
        lineage.field_text_sql("model') or (1=1")
