"""Hand-worked tests of dagster_project.ingest.loader (SPEC §1, §1.1, §1.2)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pydantic import ValidationError

from contracts.events import AI_EVENT_TYPES, MeteringEvent
from dagster_project.ingest import loader as loader_module
from dagster_project.ingest import validation
from dagster_project.ingest.loader import LoadReport, canonical_json, load_new_files
from dagster_project.warehouse import RAW_EVENTS_COLUMNS, ensure_schema

AS_OF = datetime(2026, 10, 2, 12, 0, tzinfo=UTC)
EVENTS = Path("landing") / "events"
_ABSENT = object()


def event(**fields: Any) -> dict[str, Any]:
    """A good event; a field set to _ABSENT is removed."""
    base: dict[str, Any] = {
        "transactionId": "tx-1",
        "eventType": "completion",
        "requestTime": "2026-10-01T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokenCount": 100,
        "outputTokenCount": 20,
        "totalCost": "0.0001",
        "productName": "DocSum Pro",
        "organizationName": "Acme Corp",
        "subscriber": {"id": "user-123", "email": "ap@acme.example",
                       "credential": {"name": "prod-key", "value": "sk-acme-1"}},
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not _ABSENT}


def line(**fields: Any) -> str:
    return json.dumps(event(**fields), separators=(",", ":"))


def write(data_dir: Path, name: str, lines: list[str] | bytes, newline: str = "\n") -> Path:
    path = data_dir / EVENTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    content = lines if isinstance(lines, bytes) else "".join(text + newline for text in lines).encode()
    if name.endswith(".gz"):
        content = gzip.compress(content, mtime=0)
    path.write_bytes(content)
    return path


@pytest.fixture
def connection() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    yield conn
    conn.close()


def load(connection: duckdb.DuckDBPyConnection, data_dir: Path, as_of: datetime = AS_OF) -> LoadReport:
    report = load_new_files(connection, data_dir, as_of)
    check_invariants(connection, report)
    return report


def check_invariants(connection: duckdb.DuckDBPyConnection, report: LoadReport) -> None:
    """lines_read = accepted + duplicates + rejected, and the raw tables hold exactly those rows."""
    for file_report in report.files:
        assert file_report.lines_read == file_report.accepted + file_report.duplicates + file_report.rejected
    assert report.lines_read == report.accepted + report.duplicates + report.rejected
    assert sum(report.rejected_by_reason.values()) == report.rejected
    for name, column in (("events", "accepted"), ("duplicate_events", "duplicates"), ("rejected_events", "rejected")):
        rows = dict(connection.execute(
            f"select source_file, count(*) from raw.{name} where load_id = ? group by 1", [report.load_id]
        ).fetchall())
        for file_report in report.files:
            if file_report.status != "skipped":
                assert rows.get(file_report.source_file, 0) == getattr(file_report, column), (name, file_report)
    recorded = connection.execute(
        "select source_file, lines_read, accepted, duplicates, rejected from raw.loaded_files where load_id = ?",
        [report.load_id],
    ).fetchall()
    expected = [
        (f.source_file, f.lines_read, f.accepted, f.duplicates, f.rejected) for f in report.files if f.status != "skipped"
    ]
    assert sorted(recorded) == sorted(expected)


def rejected(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, int, str, str | None]]:
    rows = connection.execute(
        "select source_file, line_number, reason, field from raw.rejected_events order by source_file, line_number"
    ).fetchall()
    return [(file, number, reason.split(":", 1)[0], field) for file, number, reason, field in rows]


def events(connection: duckdb.DuckDBPyConnection, columns: str = "transaction_id") -> list[tuple[Any, ...]]:
    return connection.execute(f"select {columns} from raw.events order by source_file, line_number").fetchall()


# --------------------------------------------------------------------------------------------


def test_good_and_bad_lines_exact(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    future = (AS_OF + timedelta(hours=24, seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        line(transactionId="good-1"),                                            # 1
        "",                                                                      # 2 blank: not counted
        "this is not json",                                                      # 3
        "[1, 2, 3]",                                                             # 4
        line(transactionId="b-5", requestTime=_ABSENT),                          # 5
        line(transactionId="b-6", subscriber=_ABSENT),                           # 6
        line(transactionId="b-7", subscriber={"email": "x@y.z"}),                # 7
        line(transactionId="b-8", provider=_ABSENT),                             # 8
        line(transactionId="b-9", inputTokenCount="many"),                       # 9
        line(transactionId="b-10", outputTokenCount=-3),                         # 10
        line(transactionId="b-11", requestTime="2026-10-01T10:00:00"),           # 11 no offset
        line(transactionId="b-12", requestTime=future),                          # 12
        line(transactionId="b-13", eventType="chat"),                            # 13
        line(transactionId="b-14", totalCost="0.12345678901"),                   # 14
        line(transactionId="x" * 129),                                           # 15
        "   \t ",                                                                # 16 whitespace only: not counted
        line(transactionId="good-2", eventType="tool_call", provider=_ABSENT, model=_ABSENT),  # 17
        line(transactionId="b-18", units={"pages": -1}),                         # 18
        line(transactionId="good-3", inputTokenCount="7", outputTokenCount=3.0),  # 19 lax numbers, like pydantic
    ]
    path = write(tmp_path, "batch.jsonl", lines)
    with path.open("ab") as handle:
        handle.write(b'{"transactionId": "b-20", "model": "caf\xe9"}\n')  # 20: latin-1, not UTF-8
    report = load(connection, tmp_path)
    name = "landing/events/batch.jsonl"
    assert (report.files_loaded, report.lines_read, report.accepted, report.duplicates, report.rejected) == (1, 18, 3, 0, 15)
    assert rejected(connection) == [
        (name, 3, "invalid_json", None),
        (name, 4, "not_an_object", None),
        (name, 5, "missing_field", "requestTime"),
        (name, 6, "missing_field", "subscriber"),
        (name, 7, "missing_field", "subscriber.id"),
        (name, 8, "missing_field", "provider"),
        (name, 9, "wrong_type", "inputTokenCount"),
        (name, 10, "negative_value", "outputTokenCount"),
        (name, 11, "invalid_timestamp", "requestTime"),
        (name, 12, "future_request_time", "requestTime"),
        (name, 13, "invalid_event_type", "eventType"),
        (name, 14, "too_many_decimals", "totalCost"),
        (name, 15, "transaction_id_too_long", "transactionId"),
        (name, 18, "negative_value", "units"),
        (name, 20, "invalid_utf8", None),
    ]
    assert report.rejected_by_reason == {
        "future_request_time": 1, "invalid_event_type": 1, "invalid_json": 1, "invalid_timestamp": 1,
        "invalid_utf8": 1, "missing_field": 4, "negative_value": 2, "not_an_object": 1, "too_many_decimals": 1,
        "transaction_id_too_long": 1, "wrong_type": 1,
    }
    assert events(connection, "transaction_id, line_number, input_tokens, output_tokens, total_tokens") == [
        ("good-1", 1, 100, 20, 120), ("good-2", 17, 100, 20, 120), ("good-3", 19, 7, 3, 10),
    ]
    reason, raw = connection.execute(
        "select reason, raw from raw.rejected_events where line_number = 9").fetchone()
    assert reason == "wrong_type: inputTokenCount must be an integer >= 0"
    assert raw == lines[8]
    raw_utf8 = connection.execute("select raw from raw.rejected_events where line_number = 20").fetchone()[0]
    assert raw_utf8 == '{"transactionId": "b-20", "model": "caf\ufffd"}'


def test_event_columns(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    write(tmp_path, "a.jsonl", [
        line(requestTime="2026-10-01T12:30:00.250+02:00", responseTime="2026-10-01T10:30:01-00:00",
             reasoningTokenCount=4, cacheReadTokenCount=5, cacheCreationTokenCount=6, totalTokenCount=999,
             organizationId="acme", productId="docsum-pro", subscriptionId="acme-docsum",
             units={"pages": 12, "images": "2.50"}, metadata={"k": [1, 2]}, traceId="t-1"),
    ])
    load(connection, tmp_path)
    row = connection.execute("select * exclude (load_id, loaded_at) from raw.events").fetchone()
    columns = [d[0] for d in connection.execute("select * exclude (load_id, loaded_at) from raw.events").description]
    got = dict(zip(columns, row, strict=True))
    assert got["request_time"] == datetime(2026, 10, 1, 10, 30, 0, 250000)  # UTC, naive
    assert got["response_time"] == datetime(2026, 10, 1, 10, 30, 1)
    assert (got["reasoning_tokens"], got["cache_read_tokens"], got["cache_creation_tokens"], got["total_tokens"]) == (
        4, 5, 6, 999)
    assert got["reported_cost_usd"] == Decimal("0.0001")
    assert (got["organization_id"], got["organization_name"], got["product_id"], got["product_name"]) == (
        "acme", "Acme Corp", "docsum-pro", "DocSum Pro")
    assert (got["subscriber_id"], got["subscriber_email"], got["credential_name"], got["credential_value"]) == (
        "user-123", "ap@acme.example", "prod-key", "sk-acme-1")
    assert got["subscription_id"] == "acme-docsum"
    assert json.loads(got["units_json"]) == {"pages": 12, "images": 2.5}
    assert json.loads(got["attributes_json"])["traceId"] == "t-1"
    assert got["event_type"] == "completion"
    assert got["source_file"] == "landing/events/a.jsonl" and got["line_number"] == 1


def test_reload_same_file_changes_nothing(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    write(tmp_path, "a.jsonl", [line(transactionId=f"t{i}") for i in range(5)] + ["bad"])
    first = load(connection, tmp_path)
    assert (first.accepted, first.rejected) == (5, 1)
    counts = [connection.execute(f"select count(*) from raw.{t}").fetchone()[0]
              for t in ("events", "rejected_events", "duplicate_events", "loaded_files")]
    second = load(connection, tmp_path)
    assert (second.files_loaded, second.files_skipped, second.lines_read) == (0, 1, 0)
    assert second.files[0].status == "skipped"
    assert counts == [connection.execute(f"select count(*) from raw.{t}").fetchone()[0]
                      for t in ("events", "rejected_events", "duplicate_events", "loaded_files")]


def test_same_content_under_another_path_is_all_duplicates(tmp_path: Path,
                                                           connection: duckdb.DuckDBPyConnection) -> None:
    lines = [line(transactionId=f"t{i}") for i in range(4)] + [line(transactionId=_ABSENT, model="m-idless")]
    write(tmp_path, "2026/a.jsonl", lines)
    load(connection, tmp_path)
    write(tmp_path, "2026/copy/a.jsonl", lines)
    report = load(connection, tmp_path)
    assert (report.files_loaded, report.files_skipped) == (1, 1)
    assert (report.accepted, report.duplicates, report.rejected) == (0, 5, 0)
    assert connection.execute("select count(*) from raw.events").fetchone()[0] == 5
    assert connection.execute(
        "select list(line_number order by line_number) from raw.duplicate_events").fetchone()[0] == [1, 2, 3, 4, 5]


def test_changed_file_loads_only_new_lines(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    lines = [line(transactionId=f"t{i}") for i in range(3)]
    write(tmp_path, "a.jsonl", lines)
    load(connection, tmp_path)
    write(tmp_path, "a.jsonl", lines + [line(transactionId="t3"), line(transactionId="t4")])
    report = load(connection, tmp_path)
    assert (report.files_loaded, report.accepted, report.duplicates, report.rejected) == (1, 2, 3, 0)
    assert [row[0] for row in events(connection)] == ["t0", "t1", "t2", "t3", "t4"]
    assert connection.execute("select count(*) from raw.loaded_files").fetchone()[0] == 2


def test_changed_file_with_the_same_size_and_old_mtime_is_read_again(tmp_path: Path,
                                                                   connection: duckdb.DuckDBPyConnection) -> None:
    path = write(tmp_path, "a.jsonl", [line(transactionId="t1")])
    load(connection, tmp_path)
    old = path.stat()
    write(tmp_path, "a.jsonl", [line(transactionId="t2")])  # same size, other content
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # mtime put back: ctime still moves
    report = load(connection, tmp_path)
    assert (report.files_loaded, report.accepted) == (1, 1)
    assert [row[0] for row in events(connection)] == ["t1", "t2"]


def spy_on_file_hashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the names of the files the loader hashes apart from reading them, in order."""
    hashed: list[str] = []
    original = loader_module._file_sha256

    def spy(path: Path) -> str:
        hashed.append(path.name)
        return original(path)

    monkeypatch.setattr(loader_module, "_file_sha256", spy)
    return hashed


def test_unchanged_files_are_not_read_again(tmp_path: Path, connection: duckdb.DuckDBPyConnection,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "a.jsonl", [line(transactionId="t1")])
    write(tmp_path, "b.jsonl", [line(transactionId="t2")])
    first = load(connection, tmp_path)
    # as if a.jsonl had last changed a while before that load read it (not within the margin)
    connection.execute("update raw.loaded_files set loaded_at = loaded_at + interval 1 hour "
                       "where source_file = 'landing/events/a.jsonl'")
    write(tmp_path, "b.jsonl", [line(transactionId="t3")])  # same size, changed since its load: hashed again

    hashed = spy_on_file_hashing(monkeypatch)
    report = load(connection, tmp_path)
    assert hashed == ["b.jsonl"]
    assert [(f.source_file, f.status) for f in report.files] == [
        ("landing/events/a.jsonl", "skipped"), ("landing/events/b.jsonl", "loaded")]
    assert report.files[0].content_sha256 == first.files[0].content_sha256
    assert [row[0] for row in events(connection)] == ["t1", "t2", "t3"]


def test_a_file_hashed_again_and_found_unchanged_is_not_hashed_at_every_load(
        tmp_path: Path, connection: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written just before the load that read it (within the margin) is hashed again by the
    next load; that load records it found the same content, so later loads skip it unread."""
    write(tmp_path, "a.jsonl", [line(transactionId="t1")])
    load(connection, tmp_path)
    hashed = spy_on_file_hashing(monkeypatch)
    second = load(connection, tmp_path)
    assert hashed == ["a.jsonl"] and second.files[0].status == "skipped"
    loaded_at, verified_at = connection.execute("select loaded_at, verified_at from raw.loaded_files").fetchone()
    assert verified_at > loaded_at
    # as if the file had last changed well before that second load (outside the margin)
    connection.execute("update raw.loaded_files set verified_at = verified_at + interval 1 hour")
    third = load(connection, tmp_path)
    assert hashed == ["a.jsonl"] and third.files[0].status == "skipped"
    assert third.files[0].content_sha256 == second.files[0].content_sha256
    assert [row[0] for row in events(connection)] == ["t1"]


def test_ids_loaded_before_are_found_in_every_batch_and_block(tmp_path: Path, connection: duckdb.DuckDBPyConnection,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch and every block of a big file looks its ids up in raw.events, old ids included."""
    write(tmp_path, "a.jsonl", [line(transactionId=f"t{i}") for i in range(10)])
    load(connection, tmp_path)
    monkeypatch.setattr(loader_module, "BLOCK_BYTES", 1_500)
    monkeypatch.setattr(loader_module, "BATCH_BYTES", 1_500)
    # a big file (several blocks) whose late block repeats an old id; small files around it
    big = [line(transactionId=f"n{i}") for i in range(12)] + [line(transactionId="t3"),
                                                               line(transactionId="t4", inputTokenCount=9)]
    write(tmp_path, "b-big.jsonl", big)
    write(tmp_path, "c.jsonl", [line(transactionId="n1"), line(transactionId="c1")])
    write(tmp_path, "d.jsonl", [line(transactionId="t5")])
    report = load(connection, tmp_path)
    by_file = {f.source_file.rsplit("/", 1)[1]: (f.lines_read, f.accepted, f.duplicates, f.rejected)
               for f in report.files if f.status != "skipped"}
    assert by_file == {"b-big.jsonl": (14, 12, 1, 1), "c.jsonl": (2, 1, 1, 0), "d.jsonl": (1, 0, 1, 0)}
    assert report.rejected_by_reason == {"duplicate_conflict": 1}
    assert connection.execute("select count(*), count(distinct transaction_id) from raw.events").fetchone() == (23, 23)
    assert connection.execute("select source_file from raw.events where transaction_id = 'n1'").fetchone()[0] == (
        "landing/events/b-big.jsonl")


def test_ids_of_rows_loaded_before_the_id_hash_existed_are_found(tmp_path: Path,
                                                                  connection: duckdb.DuckDBPyConnection) -> None:
    """raw.events rows without transaction_id_hash (an older warehouse, another tool) get it at the
    next load, so their ids are found: a byte-identical repeat is a duplicate, another payload a
    conflict."""
    write(tmp_path, "a.jsonl", [line(transactionId="t1"), line(transactionId="t2")])
    load(connection, tmp_path)
    connection.execute("update raw.events set transaction_id_hash = null")  # as an older version left them
    write(tmp_path, "b.jsonl", [line(transactionId="t1"), line(transactionId="t2", inputTokenCount=7),
                                line(transactionId="t3")])
    report = load(connection, tmp_path)
    assert (report.accepted, report.duplicates, report.rejected) == (1, 1, 1)
    assert report.rejected_by_reason == {"duplicate_conflict": 1}
    assert connection.execute(
        "select count(*) from raw.events where transaction_id_hash is null").fetchone()[0] == 0


def test_ids_are_compared_whole_when_their_hashes_collide(tmp_path: Path, connection: duckdb.DuckDBPyConnection,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash only narrows the lookup: every id hashed to the same value (a collision for every
    pair) still finds exactly its own earlier row."""
    monkeypatch.setattr(loader_module, "_ID_HASH", "42::bigint")
    write(tmp_path, "a.jsonl", [line(transactionId="t1"), line(transactionId="t2")])
    load(connection, tmp_path)
    write(tmp_path, "b.jsonl", [line(transactionId="t2"), line(transactionId="t3"),
                                line(transactionId="t1", inputTokenCount=7)])
    report = load(connection, tmp_path)
    by_file = {f.source_file.rsplit("/", 1)[1]: (f.lines_read, f.accepted, f.duplicates, f.rejected)
               for f in report.files if f.status != "skipped"}
    assert by_file == {"b.jsonl": (3, 1, 1, 1)}
    assert rejected(connection) == [("landing/events/b.jsonl", 3, "duplicate_conflict", "transactionId")]
    assert events(connection) == [("t1",), ("t2",), ("t3",)]


def test_repeats_are_found_in_blocks_written_to_disk_before_the_commit(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A file-backed warehouse with small row groups, so that each block's insert is written to the
    file before its transaction commits (DuckDB's optimistic writes): a later block of the same
    file still finds the ids of the earlier ones (they are looked up by row id)."""
    connection = duckdb.connect()
    connection.execute(f"attach '{tmp_path / 'warehouse.duckdb'}' as warehouse (row_group_size 2048)")
    connection.execute("use warehouse")
    write(tmp_path, "a-old.jsonl", [line(transactionId="old-1")])
    load(connection, tmp_path)
    monkeypatch.setattr(loader_module, "BLOCK_BYTES", 1_500_000)
    lines = [line(transactionId=f"n{i}") for i in range(12_000)]  # ~4 MB: three blocks of ~4,500 lines
    lines += [lines[7], line(transactionId="n8", inputTokenCount=9), line(transactionId="old-1")]
    write(tmp_path, "b-big.jsonl", lines)
    report = load(connection, tmp_path)
    big = report.files[1]
    assert (big.lines_read, big.accepted, big.duplicates, big.rejected) == (12_003, 12_000, 2, 1)
    assert rejected(connection) == [("landing/events/b-big.jsonl", 12_002, "duplicate_conflict", "transactionId")]
    assert connection.execute("select count(*), count(distinct transaction_id) from raw.events").fetchone() == (
        12_001, 12_001)
    connection.close()


def test_first_wins_across_batches(tmp_path: Path, connection: duckdb.DuckDBPyConnection,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches are validated ahead (in the background) but written in file order."""
    monkeypatch.setattr(loader_module, "BATCH_BYTES", 1)  # every file a batch of its own
    for index in range(6):
        write(tmp_path, f"{index}.jsonl", [line(transactionId="same", inputTokenCount=index),
                                           line(transactionId=f"own-{index}")])
    report = load(connection, tmp_path)
    assert (report.accepted, report.duplicates, report.rejected) == (7, 0, 5)
    assert events(connection, "transaction_id, input_tokens")[0] == ("same", 0)
    assert [r[:2] for r in rejected(connection)] == [(f"landing/events/{i}.jsonl", 1) for i in range(1, 6)]


def test_duplicate_with_different_payload_is_a_conflict(tmp_path: Path,
                                                        connection: duckdb.DuckDBPyConnection) -> None:
    write(tmp_path, "a.jsonl", [
        line(transactionId="t1"),
        line(transactionId="t1"),                      # same bytes: duplicate
        line(transactionId="t1", inputTokenCount=5),   # same id, other payload: conflict
        line(transactionId="t2", inputTokenCount=-1),  # invalid first ...
        line(transactionId="t2"),                      # ... so the first *valid* one wins
    ])
    report = load(connection, tmp_path)
    assert (report.accepted, report.duplicates, report.rejected) == (2, 1, 2)
    assert [row[:2] for row in events(connection, "transaction_id, line_number")] == [("t1", 1), ("t2", 5)]
    write(tmp_path, "b.jsonl", [line(transactionId="t2", outputTokenCount=1), line(transactionId="t1")])
    report = load(connection, tmp_path)
    assert (report.accepted, report.duplicates, report.rejected) == (0, 1, 1)
    assert report.rejected_by_reason == {"duplicate_conflict": 1}
    conflicts = connection.execute(
        "select source_file, line_number, reason, field from raw.rejected_events "
        "where reason like 'duplicate_conflict%' order by source_file, line_number").fetchall()
    assert conflicts == [
        ("landing/events/a.jsonl", 3, "duplicate_conflict: transactionId t1 was first loaded from "
                                      "landing/events/a.jsonl:1 with a different payload", "transactionId"),
        ("landing/events/b.jsonl", 1, "duplicate_conflict: transactionId t2 was first loaded from "
                                      "landing/events/a.jsonl:5 with a different payload", "transactionId"),
    ]


def test_first_wins_across_files_in_path_order(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    write(tmp_path, "b.jsonl", [line(transactionId="t1", inputTokenCount=2)])
    write(tmp_path, "a.jsonl", [line(transactionId="t1", inputTokenCount=1)])
    report = load(connection, tmp_path)
    assert [f.source_file for f in report.files] == ["landing/events/a.jsonl", "landing/events/b.jsonl"]
    assert events(connection, "source_file, input_tokens") == [("landing/events/a.jsonl", 1)]
    assert rejected(connection) == [("landing/events/b.jsonl", 1, "duplicate_conflict", "transactionId")]


def test_costs_are_exact(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    cases = {
        "s": ('"0.1"', Decimal("0.1")),
        "n": ("0.1", Decimal("0.1")),
        "e": ("1e-7", Decimal("0.0000001")),
        "e2": ('"1E+2"', Decimal("100")),
        "ten": ('"12.3456789012"', Decimal("12.3456789012")),  # 10 decimals: the maximum
        "ten-n": ("12.3456789012", Decimal("12.3456789012")),
        "big": ("1234567890.1234567891", Decimal("1234567890.1234567891")),  # 20 digits, a double has 17
        "zeros": ('"0.10000000000"', Decimal("0.1")),  # 11 decimals but the value has 1 (as pydantic)
        "neg0": ('"-0"', Decimal("0")),
        "eleven": ('"12.34567890123"', None),
        "eleven-n": ("12.34567890123", None),
        "float": ("0.30000000000000004", None),
        "tiny": ("1.5e-11", None),
        "huge": ("12345678901", None),
        "nan": ('"NaN"', None),
        "bool": ("true", None),
    }
    lines = [
        f'{{"transactionId":"{key}","requestTime":"2026-10-01T10:00:00Z","provider":"p","model":"m",'
        f'"totalCost":{text},"subscriber":{{"id":"u"}}}}'
        for key, (text, _) in cases.items()
    ]
    lines.append('{"transactionId":"parts","requestTime":"2026-10-01T10:00:00Z","provider":"p","model":"m",'
                 '"inputTokenCost":0.1,"outputTokenCost":"0.2","cacheReadTokenCost":1e-10,"subscriber":{"id":"u"}}')
    lines.append('{"transactionId":"none","requestTime":"2026-10-01T10:00:00Z","provider":"p","model":"m",'
                 '"subscriber":{"id":"u"}}')
    write(tmp_path, "costs.jsonl", lines)
    load(connection, tmp_path)
    got = dict(events(connection, "transaction_id, reported_cost_usd"))
    for key, (_, expected) in cases.items():
        assert got.get(key) == expected, key
    assert got["parts"] == Decimal("0.3000000001")
    assert got["none"] is None
    reasons = {number: (reason, field) for _, number, reason, field in rejected(connection)}
    keys = list(cases)
    assert reasons[keys.index("eleven") + 1] == ("too_many_decimals", "totalCost")
    assert reasons[keys.index("float") + 1] == ("too_many_decimals", "totalCost")
    assert reasons[keys.index("tiny") + 1] == ("too_many_decimals", "totalCost")
    assert reasons[keys.index("huge") + 1] == ("wrong_type", "totalCost")
    assert reasons[keys.index("bool") + 1] == ("wrong_type", "totalCost")


def test_gzip_and_truncated_gzip(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    write(tmp_path, "a.jsonl.gz", [line(transactionId=f"g{i}") for i in range(3)])
    whole = gzip.compress(b"".join((line(transactionId=f"h{i}") + "\n").encode() for i in range(50)), mtime=0)
    (tmp_path / EVENTS / "b.jsonl.gz").write_bytes(whole[: len(whole) - 20])
    (tmp_path / EVENTS / "c.jsonl.gz").write_bytes(b"not gzip at all\n")
    report = load(connection, tmp_path)
    assert [(f.status, f.accepted, f.rejected) for f in report.files] == [
        ("loaded", 3, 0), ("unreadable", 0, 1), ("unreadable", 0, 1)]
    assert report.files_unreadable == 2
    rows = connection.execute(
        "select source_file, line_number, reason, raw from raw.rejected_events order by source_file").fetchall()
    assert rows[0][:2] == ("landing/events/b.jsonl.gz", 0)
    assert rows[0][2].startswith("unreadable_file: truncated gzip file")
    assert rows[0][3] is None
    assert rows[1][2].startswith("unreadable_file: ")
    assert [row[0] for row in events(connection)] == ["g0", "g1", "g2"]
    again = load(connection, tmp_path)  # recorded: not retried until the file changes
    assert again.files_skipped == 3
    (tmp_path / EVENTS / "b.jsonl.gz").write_bytes(whole)
    fixed = load(connection, tmp_path)
    assert (fixed.files_loaded, fixed.accepted) == (1, 50)


def test_bom_crlf_and_missing_final_newline(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    content = ("\ufeff" + line(transactionId="a") + "\r\n" + line(transactionId="b") + "\r\n\r\n"
               + line(transactionId="c")).encode()
    write(tmp_path, "crlf.jsonl", content)
    report = load(connection, tmp_path)
    assert (report.lines_read, report.accepted, report.rejected) == (3, 3, 0)
    assert events(connection, "transaction_id, line_number") == [("a", 1), ("b", 2), ("c", 4)]
    attributes = connection.execute("select attributes_json from raw.events order by line_number").fetchall()
    assert all(not text.endswith("\r") and not text.startswith("\ufeff") for (text,) in attributes)
    # same lines with LF endings under another path: identical payloads, so duplicates, not conflicts
    write(tmp_path, "lf.jsonl", [line(transactionId=x) for x in "abc"])
    report = load(connection, tmp_path)
    assert (report.duplicates, report.rejected) == (3, 0)


def test_offsets_are_converted_to_utc(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    write(tmp_path, "tz.jsonl", [
        line(transactionId="plus", requestTime="2026-10-01T10:00:00+02:00"),
        line(transactionId="minus", requestTime="2026-09-30T23:30:00-05:30"),
        line(transactionId="z", requestTime="2026-10-01t08:00:00.123456z"),
        line(transactionId="compact", requestTime="2026-10-01T10:00:00+0200"),
    ])
    load(connection, tmp_path)
    assert dict(events(connection, "transaction_id, request_time")) == {
        "plus": datetime(2026, 10, 1, 8, 0),
        "minus": datetime(2026, 10, 1, 5, 0),
        "z": datetime(2026, 10, 1, 8, 0, 0, 123456),
        "compact": datetime(2026, 10, 1, 8, 0),
    }


def test_session_time_zone_does_not_matter(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("set TimeZone = 'America/New_York'")
    write(tmp_path, "tz.jsonl", [line(transactionId="plus", requestTime="2026-10-01T10:00:00+02:00")])
    load(connection, tmp_path)
    assert events(connection, "request_time") == [(datetime(2026, 10, 1, 8, 0),)]


def test_future_limit_is_relative_to_as_of(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    limit = AS_OF + timedelta(hours=24)
    write(tmp_path, "f.jsonl", [
        line(transactionId="at-limit", requestTime=limit.strftime("%Y-%m-%dT%H:%M:%SZ")),
        line(transactionId="past-limit", requestTime=(limit + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")),
        line(transactionId="offset", requestTime=(limit + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+02:00")),
    ])
    load(connection, tmp_path)
    assert [row[0] for row in events(connection)] == ["at-limit", "offset"]
    assert rejected(connection) == [("landing/events/f.jsonl", 2, "future_request_time", "requestTime")]


def test_idless_lines_are_idempotent(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    first = line(transactionId=_ABSENT, totalCost=0.10, inputTokenCount=1)
    other = line(transactionId=_ABSENT, totalCost=0.10, inputTokenCount=2)
    write(tmp_path, "a.jsonl", [first, other, first])
    report = load(connection, tmp_path)
    assert (report.accepted, report.duplicates) == (2, 1)
    # the same event re-exported with other key order, whitespace and number spelling: still one event
    reordered = json.dumps(dict(reversed(list(json.loads(first).items()))), indent=None).replace(
        '"totalCost": 0.1', '"totalCost": 0.100')
    assert canonical_json(reordered) == canonical_json(first)
    write(tmp_path, "b.jsonl", [reordered])
    report = load(connection, tmp_path)
    assert (report.accepted, report.duplicates, report.rejected) == (0, 1, 0)
    ids = [row[0] for row in events(connection)]
    assert all(len(value) == 64 for value in ids)


def test_units_and_payload(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    write(tmp_path, "u.jsonl", [
        line(transactionId="u1", units={"pages": 3, "mb": "1.50"}),
        line(transactionId="u2", eventType="custom", provider=_ABSENT, model=_ABSENT,
             payload={"pages": 4, "note": "text", "ok": True}),
        line(transactionId="u3", units={"pages": True}),
        line(transactionId="u4", units={"pages": 0.12345678901}),
        line(transactionId="u5", eventType="custom", payload={"pages": -2}),
        line(transactionId="u6", units=[1]),
        line(transactionId="u7", units={}),
    ])
    load(connection, tmp_path)
    assert dict(events(connection, "transaction_id, units_json")) == {
        "u1": '{"pages":3,"mb":1.5}', "u2": '{"pages":4}', "u7": "{}"}
    assert [(n, r, f) for _, n, r, f in rejected(connection)] == [
        (3, "wrong_type", "units"), (4, "too_many_decimals", "units"), (5, "negative_value", "payload"),
        (6, "wrong_type", "units")]


# a file larger than a block on disk is known to be big before it is read; a gzip file smaller
# than a block on disk is known to be big when its second block shows
@pytest.mark.parametrize("big_name", ["big.jsonl", "big.jsonl.gz"])
def test_large_file_is_loaded_in_blocks_in_one_transaction(tmp_path: Path, connection: duckdb.DuckDBPyConnection,
                                                           monkeypatch: pytest.MonkeyPatch, big_name: str) -> None:
    monkeypatch.setattr(loader_module, "BLOCK_BYTES", 2_000)
    monkeypatch.setattr(loader_module, "BATCH_BYTES", 2_000)
    lines = [line(transactionId=f"t{i % 40}") for i in range(60)] + ["oops"]
    write(tmp_path, "a-small.jsonl", [line(transactionId="a1")])
    size_on_disk = write(tmp_path, big_name, lines).stat().st_size
    assert (size_on_disk > 2_000) == (big_name == "big.jsonl")
    write(tmp_path, "small-1.jsonl", [line(transactionId="s1")])
    write(tmp_path, "small-2.jsonl.gz", [line(transactionId="s2"), line(transactionId="t0")])
    report = load(connection, tmp_path)
    assert [f.source_file for f in report.files][:2] == ["landing/events/a-small.jsonl", f"landing/events/{big_name}"]
    big = report.files[1]
    assert (big.lines_read, big.accepted, big.duplicates, big.rejected) == (61, 40, 20, 1)
    assert rejected(connection) == [(f"landing/events/{big_name}", 61, "invalid_json", None)]
    assert connection.execute("select min(line_number), max(line_number) from raw.duplicate_events "
                              "where source_file like '%big%'").fetchone() == (41, 60)
    assert report.accepted == 43 and report.duplicates == 21

    # a truncated big gzip: nothing of it is loaded, one unreadable row
    whole = gzip.compress("".join(line(transactionId=f"z{i}") + "\n" for i in range(200)).encode(), mtime=0)
    (tmp_path / EVENTS / "z.jsonl.gz").write_bytes(whole[:-30])
    report = load(connection, tmp_path)
    assert [(f.status, f.lines_read, f.rejected) for f in report.files if f.status != "skipped"] == [
        ("unreadable", 1, 1)]
    assert connection.execute("select count(*) from raw.events where transaction_id like 'z%'").fetchone()[0] == 0


def _mixed_lines(tag: str) -> list[str]:
    """Blank, clean, valid-but-unusual (the full validation), id-less and bad lines, interleaved."""
    return [
        line(transactionId=f"{tag}-clean-1"),
        "",
        line(transactionId=f"{tag}-string-count", inputTokenCount="7"),  # valid, not the plain form
        "   \t",
        line(transactionId=_ABSENT, model=f"{tag}-idless"),
        '{"transactionId": "' + tag + '-broken"',  # invalid JSON
        line(transactionId=f"{tag}-units", units={"pages": 3}),
        line(transactionId=f"{tag}-negative", inputTokenCount=-1),
        "",
        line(transactionId=f"{tag}-clean-2", model="gpt-4o"),
    ]


@pytest.mark.parametrize("block_bytes", [loader_module.BLOCK_BYTES, 700])
def test_every_row_keeps_the_exact_text_of_its_own_line(tmp_path: Path, connection: duckdb.DuckDBPyConnection,
                                                       monkeypatch: pytest.MonkeyPatch, block_bytes: int) -> None:
    # the raw text is put back on the validated rows by position: blank lines, lines read again by
    # the full validation and rejected lines must not shift it, in one batch of several files and
    # in a file read in blocks
    monkeypatch.setattr(loader_module, "BLOCK_BYTES", block_bytes)
    files = {f"landing/events/{name}.jsonl": [text for copy in range(3) for text in _mixed_lines(f"{name}{copy}")]
             for name in ("a", "b", "c")}
    for name, lines in files.items():
        write(tmp_path, name.removeprefix("landing/events/"), lines)
    report = load(connection, tmp_path)
    # per file and copy: 5 accepted (two clean, string count, id-less, units), 2 rejected, 3 blank
    assert (report.lines_read, report.accepted, report.duplicates, report.rejected) == (63, 45, 0, 18)
    stored = connection.execute(
        "select source_file, line_number, attributes_json from raw.events "
        "union all select source_file, line_number, raw from raw.rejected_events"
    ).fetchall()
    assert len(stored) == 63
    for source_file, line_number, text in stored:
        assert text == files[source_file][line_number - 1], (source_file, line_number)


def test_a_crash_leaves_no_half_loaded_file(tmp_path: Path, connection: duckdb.DuckDBPyConnection,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "a.jsonl", [line(transactionId="a1")])
    original = loader_module._Loader.record_files

    def crash(self: Any, files: Any) -> None:
        original(self, files)
        raise RuntimeError("power cut")

    monkeypatch.setattr(loader_module._Loader, "record_files", crash)
    with pytest.raises(RuntimeError):
        load_new_files(connection, tmp_path, AS_OF)
    for table in ("events", "rejected_events", "duplicate_events", "loaded_files"):
        assert connection.execute(f"select count(*) from raw.{table}").fetchone()[0] == 0
    monkeypatch.setattr(loader_module._Loader, "record_files", original)
    assert load(connection, tmp_path).accepted == 1


def test_no_landing_dir(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    report = load(connection, tmp_path)
    assert (report.files_loaded, report.lines_read) == (0, 0)


def test_progress_bar_runs(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    write(tmp_path, "a.jsonl", [line()])
    report = load_new_files(connection, tmp_path, AS_OF, progress=True)
    assert report.accepted == 1


# --------------------------------------------------------------------------------------------
# the SQL validation agrees with the pydantic contract


def _pydantic_accepts(text: str) -> bool:
    try:
        parsed = json.loads(text, parse_float=Decimal)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    try:
        MeteringEvent.model_validate(parsed)
    except ValidationError:
        return False
    return True


def _stricter_in_sql(text: str) -> bool:
    """The documented rules where the SQL rejects what pydantic's lax mode accepts (validation.py)."""
    try:
        parsed = json.loads(text, parse_float=Decimal)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    event_type = parsed.get("eventType", "completion")
    if event_type in {t.value for t in AI_EVENT_TYPES} and (parsed.get("provider") is None
                                                            or parsed.get("model") is None):
        return True
    for name in ("inputTokenCount", "outputTokenCount", "reasoningTokenCount", "cacheReadTokenCount",
                 "cacheCreationTokenCount", "totalTokenCount"):
        value = parsed.get(name)
        if isinstance(value, bool) or (isinstance(value, int) and value > 2**63 - 1):
            return True
    counts = [parsed.get(name, 0) for name in ("inputTokenCount", "outputTokenCount")]
    if parsed.get("totalTokenCount") is None and all(isinstance(c, int) for c in counts) and sum(counts) > 2**63 - 1:
        return True
    for name in ("requestTime", "responseTime"):
        if isinstance(parsed.get(name), int | Decimal) and not isinstance(parsed.get(name), bool):
            return True
    units = parsed.get("units")
    if isinstance(units, dict):
        for value in units.values():
            try:
                number = Decimal(str(value).strip())
            except Exception:
                continue
            if number.is_finite() and number != round(number, 10):
                return True
    payload = parsed.get("payload")
    if units is None and isinstance(payload, dict):
        for value in payload.values():
            if isinstance(value, int | Decimal) and not isinstance(value, bool) and (
                    value < 0 or value != round(value, 10)):
                return True
    return False


POOLS: dict[str, list[Any]] = {
    "transactionId": [_ABSENT, None, "t", "", 5, "x" * 128, "x" * 129, "ünïcødé-✓"],
    "eventType": [_ABSENT, "completion", "custom", "tool_call", "image", "COMPLETION", 5, None],
    "requestTime": [
        _ABSENT, None, "2026-10-01T10:00:00Z", "2026-10-01T10:00:00+02:00", "2026-10-01 10:00:00Z",
        "2026-10-01t10:00:00z", "2026-10-01T10:00Z", "2026-10-01T10:00:00.123456+05:30", "2026-10-01T10:00:00",
        "2026-10-01", "garbage", 1790812800, "2026-13-01T00:00:00Z", "2026-10-01T24:00:00Z",
        "2026-02-30T00:00:00Z", "2026-10-01T10:00:00+0200", "2026-10-01T10:00:60Z", "",
    ],
    "responseTime": [_ABSENT, None, "2026-10-01T10:00:01Z", "2026-10-01T10:00:01", 5, "x"],
    "provider": [_ABSENT, None, "openai", "", 5, True],
    "model": [_ABSENT, None, "gpt-4o-mini", 5],
    "inputTokenCount": [_ABSENT, 0, 5, -1, 5.0, 5.5, "5", " 7 ", "5.0", "abc", True, None, 2**63, 1e3, {}, [],
                        -0.0, "-3", 2**63 - 1],
    "outputTokenCount": [_ABSENT, 3, -2, "x", None, 0.5],
    "totalTokenCount": [_ABSENT, None, 10, -1, "10", 10.5],
    "totalCost": [_ABSENT, None, "0.1", 0.1, 1e-7, "12.3456789012", "12.34567890123", -0.5, "-0", "abc", True,
                  "NaN", 12345678901, "1234567890.1234567891", 0.30000000000000004, "1E+2", [], " 0.5 ", "",
                  "Infinity", 9999999999.9999999999],
    "inputTokenCost": [_ABSENT, None, 0.25, -1, "x", 1e-11],
    "organizationName": [_ABSENT, "Acme", 5, None, ""],
    "productId": [_ABSENT, "docsum", 5, None],
    "subscriber": [
        _ABSENT, None, "u", {"id": "u"}, {"id": ""}, {"id": 5}, {}, {"id": None}, {"id": "u", "email": 5},
        {"id": "u", "email": None}, {"id": "u", "credential": {"value": "k"}}, {"id": "u", "credential": {"name": "k"}},
        {"id": "u", "credential": "k"}, {"id": "u", "credential": None}, {"id": "u", "credential": {"value": ""}},
        {"id": "u", "credential": {"name": 5, "value": "k"}}, {"id": "u", "extra": [1]},
    ],
    "subscriptionId": [_ABSENT, "s", 5],
    "units": [_ABSENT, None, {"pages": 3}, {"pages": -1}, {"pages": "2.5"}, {"pages": True}, {"pages": None}, [], 5,
              {"pages": 0.12345678901}, {}, {"pages": "x"}, {"a": 1, "b": {"c": 1}}, {"pages": 1e3}],
    "payload": [_ABSENT, None, {"a": 1}, {"a": -1}, {"a": "x"}, 5, {"a": 1.5e-12}, []],
    "metadata": [_ABSENT, None, {"a": [1]}, 5, "x"],
}


def _random_lines(count: int, seed: int) -> list[str]:
    generator = random.Random(seed)
    fields = list(POOLS)
    lines = []
    for number in range(count):
        overrides = {name: generator.choice(POOLS[name]) for name in generator.sample(fields, generator.randint(0, 3))}
        lines.append(json.dumps(event(**{"transactionId": f"r{number}", **overrides}), ensure_ascii=False))
    # whole-line shapes
    lines += ["[1]", '"text"', "5", "null", "{", "", '{"a":1} {"b":2}', "{'single': 'quotes'}"]
    return lines


def test_sql_validation_agrees_with_pydantic(tmp_path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    lines = _random_lines(700, seed=20261001)
    write(tmp_path, "agree.jsonl", lines)
    load(connection, tmp_path)
    # repeated ids (from the transactionId pool) are duplicates/conflicts: valid as far as validation goes
    rejected_lines = {number for _, number, reason, _ in rejected(connection) if reason != "duplicate_conflict"}
    accepted_lines = {row[0] for row in events(connection, "line_number")}
    disagreements = []
    strict_cases = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        pydantic_ok = _pydantic_accepts(text)
        stricter = _stricter_in_sql(text)
        strict_cases += pydantic_ok and stricter
        expected_sql_ok = pydantic_ok and not stricter
        sql_ok = number not in rejected_lines
        if sql_ok != expected_sql_ok:
            disagreements.append((number, text, pydantic_ok, sql_ok))
    assert not disagreements, disagreements[:5]
    # the sample exercises both outcomes and the documented divergences
    assert len(accepted_lines) > 100 and len(rejected_lines) > 200 and strict_cases > 10


# --------------------------------------------------------------------------------------------
# the fast path (validation.fast_sql) agrees with the full validation, line for line

FAST_PATH_LINES = [
    line(transactionId="x" * 128), line(transactionId="ünïcødé-✓"), line(transactionId=_ABSENT), line(transactionId=None),
    line(transactionId="quote\"in-id"), line(provider="open\u00e9ai"),
    line(eventType=_ABSENT), line(eventType=None), line(eventType="tool_call", provider=None, model=None),
    line(eventType="custom", provider=_ABSENT), line(eventType="image", model=None),
    line(inputTokenCount=2**63 - 1, outputTokenCount=0), line(inputTokenCount=2**63 - 1, outputTokenCount=1),
    line(inputTokenCount=2**63 - 1, outputTokenCount=1, totalTokenCount=5), line(inputTokenCount=2**63),
    line(inputTokenCount=2**64), line(inputTokenCount=5.0), line(inputTokenCount="5"), line(inputTokenCount=True),
    line(reasoningTokenCount=0, cacheReadTokenCount=None), line(totalTokenCount=None), line(totalTokenCount=2**63),
    line(totalCost=0), line(totalCost=1), line(totalCost=True), line(totalCost=False), line(totalCost="0.5"),
    line(totalCost=9999999999.9999999999), line(totalCost="9999999999.9999999999"), line(totalCost=10**10),
    line(totalCost="1e-10"), line(totalCost="1e-11"), line(totalCost="0.1234567891"), line(totalCost="0.12345678912"),
    line(totalCost="1.50"), line(totalCost=None), line(totalCost={}), line(totalCost=[1]),
    line(totalCost=_ABSENT, inputTokenCost=9999999999, outputTokenCost=1),
    line(totalCost=_ABSENT, inputTokenCost="0.25", cacheCreationTokenCost=0.5),
    line(totalCost=_ABSENT, cacheReadTokenCost=None),
    line(subscriber={"id": "u", "credential": {"name": "k", "value": "v"}}),
    line(subscriber={"id": "u", "credential": {"value": "v"}}),
    line(subscriber={"id": "u", "credential": {"name": None, "value": "v"}}),
    line(subscriber={"id": "u", "credential": {"name": "k", "value": ""}}),
    line(subscriber={"id": "u", "credential": {"name": "k"}}), line(subscriber={"id": "u", "credential": None}),
    line(subscriber={"id": "u", "credential": []}), line(subscriber={"id": "u", "email": None, "x": {"id": 5}}),
    line(subscriber={"id": ""}), line(subscriber={"id": "u", "email": ["a"]}), line(subscriber=[{"id": "u"}]),
    line(units={"pages": 2}), line(units=None, payload={"a": 1}), line(payload={"a": "x"}), line(metadata=None),
    line(metadata={"totalCost": "abc"}), line(metadata=[]), line(responseTime=None), line(responseTime=""),
    line(requestTime=(AS_OF + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")),
    line(requestTime=(AS_OF + timedelta(hours=24, microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    line(requestTime="2026-10-01T10:00:00.5+05:30"), line(requestTime="2026-10-01T10:00:00+24:00"),
    line(organizationName=None, organizationId=5), line(productName=""), line(subscriptionId=None),
    '{"transactionId":"dup-key","inputTokenCount":5,"inputTokenCount":-1,' + line()[1:].split(",", 1)[1],
    ' ' + line(transactionId="leading-space") + ' \t', '{"transactionId":"trailing-comma",' + line()[1:-1] + ',}',
    line(totalCost="NaN"), line().replace('"totalCost":"0.0001"', '"totalCost":NaN'),
    line().replace('"totalCost":"0.0001"', '"totalCost":0.00010000000000000000000001'),
    line().replace('"totalCost":"0.0001"', '"totalCost":1E-4'),
    # keys written with escapes: a missing key is told from a null one by the key's text
    line().replace('"inputTokenCount":100', '"\\u0069nputTokenCount":null'),
    line().replace('"totalCost":"0.0001"', '"\\u0074otalCost":"abc"'),
    line().replace('"eventType":"completion"', '"event\\u0054ype":null'),
]


def _stored(connection: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "events": connection.execute(
            "select * exclude (load_id, loaded_at) from raw.events order by source_file, line_number").fetchall(),
        "rejected": connection.execute("select * exclude (load_id, rejected_at) from raw.rejected_events "
                                       "order by source_file, line_number").fetchall(),
        "duplicates": connection.execute(
            "select * exclude (load_id) from raw.duplicate_events order by source_file, line_number").fetchall(),
    }


def test_fast_path_agrees_with_the_full_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an id of its own for each line, so that every accepted line's columns are compared
    own = [text.replace('"transactionId":"tx-1"', f'"transactionId":"fp-{i}"') for i, text in enumerate(FAST_PATH_LINES)]
    lines = own + _random_lines(1500, seed=20261127)
    write(tmp_path, "a.jsonl", lines)
    # how many lines the fast path vouches for by itself
    table, _count = loader_module._lines_table((tmp_path / EVENTS / "a.jsonl").read_bytes(), 0, 1, True)
    probe = duckdb.connect()
    validation.install_macros(probe)
    probe.register("lines", table)
    clean = probe.execute(f"select count(*) filter (where clean), count(*) from ({validation.fast_sql('lines', AS_OF.replace(tzinfo=None))})").fetchone()
    fast = duckdb.connect()
    load(fast, tmp_path)
    monkeypatch.setattr(validation, "_clean_condition", lambda rule: "false")  # every line: the full validation
    full = duckdb.connect()
    load(full, tmp_path)
    got, expected = _stored(fast), _stored(full)
    for name in expected:
        assert got[name] == expected[name], name
    assert len(expected["events"]) > 200 and len(expected["rejected"]) > 500
    assert clean[0] > 300, clean  # the comparison covers many lines the fast path took


def test_a_warehouse_with_the_old_primary_key_on_raw_events_loses_only_the_key(tmp_path: Path) -> None:
    """Warehouses made before raw.events lost its primary key are copied once into the new table:
    the same rows, column types and NOT NULLs."""
    path = tmp_path / "old.duckdb"
    keyed = RAW_EVENTS_COLUMNS.replace("transaction_id          varchar   not null,",
                                       "transaction_id          varchar   not null primary key,")
    assert keyed != RAW_EVENTS_COLUMNS
    with duckdb.connect(str(path)) as old:
        old.execute("create schema raw")
        old.execute(f"create table raw.events (\n{keyed}\n)")
        old.execute("""insert into raw.events (transaction_id, payload_sha256, event_type, request_time, input_tokens,
                           output_tokens, reasoning_tokens, cache_read_tokens, cache_creation_tokens, total_tokens,
                           reported_cost_usd, subscriber_id, attributes_json, source_file, line_number, load_id,
                           loaded_at)
                       values ('tx-old', 'sha', 'ai_call', '2026-10-01 00:00:00', 1, 2, 0, 0, 0, 3, 0.1234567891,
                               'cust-1', '{}', 'landing/events/a.jsonl', 1, 'load-1', '2026-10-02 00:00:00')""")
    with duckdb.connect(str(path)) as connection:
        ensure_schema(connection)
        keys = connection.execute("""select count(*) from duckdb_constraints() where schema_name = 'raw'
                                     and table_name = 'events' and constraint_type = 'PRIMARY KEY'""").fetchone()[0]
        assert keys == 0
        assert connection.execute("select transaction_id, reported_cost_usd, total_tokens from raw.events").fetchall() \
            == [("tx-old", Decimal("0.1234567891"), 3)]
        not_null = {column for (column,) in connection.execute("""
            select unnest(constraint_column_names) from duckdb_constraints()
            where schema_name = 'raw' and table_name = 'events' and constraint_type = 'NOT NULL'""").fetchall()}
        assert {"transaction_id", "attributes_json", "loaded_at"} <= not_null
        assert "payload_sha256" not in not_null  # required before 2026-11-29; null now for events with an id
        ensure_schema(connection)  # again: nothing left to do
        assert connection.execute("select count(*) from raw.events").fetchone()[0] == 1


def test_events_with_an_id_are_compared_by_text_also_against_hashes_of_older_warehouses(
        tmp_path: Path) -> None:
    """Before 2026-11-29 every event stored the sha256 of its text (payload_sha256, NOT NULL); now
    only id-less events store a hash (their canonical one), and a repeat of an id compares the
    line's text with the first one's. A warehouse of either kind decides alike."""
    path = tmp_path / "warehouse.duckdb"
    required = RAW_EVENTS_COLUMNS.replace("payload_sha256          varchar,", "payload_sha256          varchar not null,")
    assert required != RAW_EVENTS_COLUMNS
    old_text = line(transactionId="old-1")
    idless = line(transactionId=_ABSENT, inputTokenCount=7)
    with duckdb.connect(str(path)) as old:
        old.execute("create schema raw")
        old.execute(f"create table raw.events (\n{required}\n)")
        old.execute("""insert into raw.events (transaction_id, payload_sha256, event_type, request_time, input_tokens,
                           output_tokens, reasoning_tokens, cache_read_tokens, cache_creation_tokens, total_tokens,
                           subscriber_id, attributes_json, source_file, line_number, load_id, loaded_at)
                       values ('old-1', ?, 'completion', '2026-10-01 10:00:00', 100, 20, 0, 0, 0, 120,
                               'user-123', ?, 'landing/events/old.jsonl', 1, 'load-0', '2026-10-01 12:00:00')""",
                    [hashlib.sha256(old_text.encode()).hexdigest(), old_text])
    write(tmp_path, "a.jsonl", [
        old_text,                                   # the old event's text again: a duplicate
        line(transactionId="old-1", inputTokenCount=5),  # its id with other text: a conflict
        line(transactionId="new-1"),
        idless,
        line(transactionId="new-1"),                # same text in the same batch: a duplicate
        " " + line(transactionId="new-1"),          # same event, other text: a conflict
        json.dumps(json.loads(idless), indent=1).replace("\n", ""),  # id-less, reformatted: a duplicate
    ])
    with duckdb.connect(str(path)) as connection:
        report = load(connection, tmp_path)
        assert (report.accepted, report.duplicates, report.rejected) == (2, 3, 2)
        assert [line_number for _, line_number, _, _ in rejected(connection)] == [2, 6]
        assert connection.execute("select line_number from raw.duplicate_events order by 1").fetchall() == \
            [(1,), (5,), (7,)]
        stored = dict(connection.execute("select transaction_id, payload_sha256 from raw.events").fetchall())
        idless_id = hashlib.sha256(canonical_json(idless).encode()).hexdigest()
        assert stored == {"old-1": hashlib.sha256(old_text.encode()).hexdigest(), "new-1": None,
                          idless_id: idless_id}


def test_no_writer_of_the_warehouse_vacuums_row_groups(tmp_path: Path) -> None:
    """Each load batch ends in a partial row group; DuckDB's checkpoint vacuum merged those runs
    by rewriting every event loaded since the last checkpoint (12 s after 5 M lines). Our
    connections and dbt's (its profile) both turn it off."""
    import yaml

    from dagster_project import warehouse

    with warehouse.connect(tmp_path) as connection:
        assert connection.execute("select current_setting('max_vacuum_tasks')").fetchone()[0] == 0
    profile = yaml.safe_load((Path(__file__).parents[2] / "dbt" / "profiles.yml").read_text(encoding="utf-8"))
    settings = profile["meterhouse"]["outputs"]["duckdb"]["settings"]
    assert settings["max_vacuum_tasks"] == warehouse.MAX_VACUUM_TASKS == 0
    assert warehouse.MEMORY_LIMIT_ENV in settings["memory_limit"]
