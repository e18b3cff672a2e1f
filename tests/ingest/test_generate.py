"""Tests of dagster_project.generate: deterministic, realistic, loadable synthetic events."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pytest
from pydantic import ValidationError

from contracts.catalog import Catalog
from contracts.events import MeteringEvent
from dagster_project import generate
from dagster_project.generate import BAD_KINDS, MODEL_PRICES_HEADER, generate_events
from dagster_project.ingest.loader import load_new_files

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)


def _tiers() -> list[dict]:
    return [{"name": "all", "up_to": None, "unit_rate": "0.01"}]


def make_catalog(extra_subscribers: int = 0) -> Catalog:
    subscribers = [
        {"id": "user-123", "email": "ap@acme.example", "organization": "acme"},
        {"id": "user-456", "email": "billing@globex.example", "organization": "globex"},
        {"id": "user-789", "organization": "globex"},
    ]
    subscriptions = [
        {"id": "acme-docsum", "subscriber": "user-123", "product": "docsum-pro", "start": "2026-10-01T00:00:00Z",
         "credentials": [{"name": "prod-key", "value": "sk-acme-1"}, {"name": "dev-key", "value": "sk-acme-2"}],
         "changes": [{"at": "2026-10-15T00:00:00Z", "product": "agent-platform"}]},
        {"id": "globex-agents", "subscriber": "user-456", "product": "agent-platform",
         "start": "2026-09-01T00:00:00Z", "end": "2026-10-20T00:00:00Z",
         "credentials": [{"name": "main", "value": "sk-globex"}]},
        {"id": "globex-docsum", "subscriber": "user-789", "product": "docsum-pro", "start": "2026-10-05T12:00:00Z"},
        {"id": "old", "subscriber": "user-789", "product": "agent-platform", "start": "2026-01-01T00:00:00Z",
         "end": "2026-09-01T00:00:00Z"},
    ]
    for number in range(extra_subscribers):
        subscribers.append({"id": f"extra-{number}", "email": f"e{number}@x.example"})
        subscriptions.append({"id": f"extra-{number}", "subscriber": f"extra-{number}", "product": "agent-platform",
                              "start": "2026-09-01T00:00:00Z"})
    return Catalog.model_validate({
        "products": [
            {"id": "docsum-pro", "name": "DocSum Pro", "metrics": [
                {"name": "Summaries", "element": "requests", "filter": {"model": ["gpt-4o-mini"]}, "tiers": _tiers()}]},
            {"id": "agent-platform", "name": "Agent Platform", "metrics": [
                {"name": "Tokens", "element": "total_tokens", "tiers": _tiers()},
                {"name": "Pages", "element": "units.pages", "filter": {"taskType": ["ocr", "parse"]},
                 "tiers": _tiers()},
                {"name": "Agents", "element": "requests", "aggregation": "count_unique", "aggregation_field": "agent",
                 "tiers": _tiers()},
            ]},
        ],
        "organizations": [{"id": "acme", "name": "Acme Corp"}, {"id": "globex", "name": 'Globex "Intl"'}],
        "subscribers": subscribers,
        "subscriptions": subscriptions,
    })


def read_lines(files: list[Path]) -> list[str]:
    lines = []
    for path in files:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        assert data.endswith(b"\n")
        lines.extend(data.decode("utf-8").splitlines())
    return lines


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    catalog = make_catalog()
    contents = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        report = generate_events(catalog, tmp_path / name / "landing", 3_000, START, END, seed=seed,
                                 bad_fraction=0.05, duplicate_fraction=0.05)
        base = tmp_path / name / "landing"
        contents.append({path.relative_to(base).as_posix(): path.read_bytes() for path in report.files})
    assert contents[0] == contents[1]
    assert contents[0] != contents[2]
    assert all(name.startswith("events/generated/3/") for name in contents[0])
    gz = [generate_events(catalog, tmp_path / f"gz{i}" / "landing", 500, START, END, seed=1, compress=True)
          for i in range(2)]
    assert [p.read_bytes() for p in gz[0].files] == [p.read_bytes() for p in gz[1].files]
    assert all(p.name.endswith(".jsonl.gz") for p in gz[0].files)
    plain = generate_events(catalog, tmp_path / "plain" / "landing", 500, START, END, seed=1)
    assert [gzip.decompress(p.read_bytes()) for p in gz[0].files] == [p.read_bytes() for p in plain.files]


def test_counts_bad_lines_and_contract(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    report = generate_events(make_catalog(), landing, 4_000, START, END, seed=11, bad_fraction=0.05,
                             duplicate_fraction=0.02)
    assert report.bad_lines == 200 and report.events == 3_800 and report.duplicate_lines == 80
    assert report.bad_by_kind == {kind: 40 for kind in BAD_KINDS}
    assert report.lines_written == 4_080
    lines = read_lines(report.files)
    assert len(lines) == 4_080
    good, bad = [], 0
    for text in lines:
        try:
            good.append(MeteringEvent.model_validate(json.loads(text, parse_float=Decimal)))
        except (ValueError, ValidationError):
            bad += 1
    assert bad == 200
    ids = Counter(event.transactionId for event in good)
    assert len(ids) == 3_800 and sum(count - 1 for count in ids.values()) == 80
    for event in good:
        assert START <= event.requestTime < END
        assert event.provider and event.model and event.subscriber.id
        assert event.requestTime.utcoffset().total_seconds() == 0
    # each file holds one UTC day
    for path in report.files:
        day = path.name.removesuffix(".jsonl")
        for text in path.read_text().splitlines():
            try:
                assert json.loads(text)["requestTime"].startswith(day)
            except (ValueError, KeyError):
                pass  # a bad line


def test_events_fit_catalog_and_prices(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    report = generate_events(make_catalog(), landing, 3_000, START, END, seed=5)
    assert report.model_prices_written
    with (landing / "model_prices.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == MODEL_PRICES_HEADER
    prices = {row[1]: [Decimal(value) for value in row[2:6]] for row in rows[1:]}
    events = [MeteringEvent.model_validate(json.loads(t, parse_float=Decimal)) for t in read_lines(report.files)]
    with_total = 0
    for event in events:
        assert event.subscriber.id in {"user-123", "user-456", "user-789"}  # "old" is not active
        extra = event.model_extra or {}
        if event.productName == "DocSum Pro":
            assert event.model == "gpt-4o-mini"
        if event.subscriber.id == "user-123":
            switched = event.requestTime >= datetime(2026, 10, 15, tzinfo=UTC)
            assert event.productName == ("Agent Platform" if switched else "DocSum Pro")
            assert event.subscriber.credential.value in {"sk-acme-1", "sk-acme-2"}
            assert event.organizationName == "Acme Corp"
        if event.subscriber.id == "user-456":
            assert event.requestTime < datetime(2026, 10, 20, tzinfo=UTC)
        if event.subscriber.id == "user-789":
            assert event.requestTime >= datetime(2026, 10, 5, 12, tzinfo=UTC)
            assert event.subscriber.credential is None
        if event.productName == "Agent Platform":
            assert set(event.units or {}) == {"pages"}
            assert extra.get("taskType", "ocr") in {"ocr", "parse"}
        in_price, out_price, read_price, creation_price = prices[event.model]
        expected = (event.inputTokenCount * in_price + (event.outputTokenCount + event.reasoningTokenCount) * out_price
                    + event.cacheReadTokenCount * read_price
                    + event.cacheCreationTokenCount * creation_price) / Decimal(1_000_000)
        parts = [event.inputTokenCost, event.outputTokenCost, event.cacheReadTokenCost, event.cacheCreationTokenCost]
        if event.totalCost is not None:
            with_total += 1
            assert event.totalCost == expected
        elif any(part is not None for part in parts):
            assert sum(part or 0 for part in parts) == expected
        assert event.totalTokenCount == event.inputTokenCount + event.outputTokenCount
    assert with_total > 0.9 * len(events)
    models = Counter(event.model for event in events)
    assert {"gpt-4o-mini", "claude-sonnet-4", "o3"} <= set(models)
    assert any(event.reasoningTokenCount > 0 for event in events if event.model == "o3")
    # an existing price file is left alone
    (landing / "model_prices.csv").write_text("custom\n")
    again = generate_events(make_catalog(), landing, 10, START, END, seed=6)
    assert not again.model_prices_written and (landing / "model_prices.csv").read_text() == "custom\n"


def test_usage_is_skewed_and_diurnal(tmp_path: Path) -> None:
    report = generate_events(make_catalog(extra_subscribers=30), tmp_path / "landing", 6_000, START, END, seed=9)
    events = [json.loads(text) for text in read_lines(report.files)]
    per_subscriber = sorted(Counter(e["subscriber"]["id"] for e in events).values(), reverse=True)
    assert per_subscriber[0] > 5 * per_subscriber[len(per_subscriber) // 2]
    hours = Counter(int(e["requestTime"][11:13]) for e in events)
    assert hours[15] > 2 * hours[3]


def test_generated_files_load_with_expected_counts(tmp_path: Path) -> None:
    report = generate_events(make_catalog(), tmp_path / "landing", 2_000, START, END, seed=2, bad_fraction=0.1,
                             duplicate_fraction=0.05)
    connection = duckdb.connect()
    loaded = load_new_files(connection, tmp_path, datetime(2026, 11, 2, tzinfo=UTC))
    assert (loaded.accepted, loaded.rejected, loaded.duplicates) == (
        report.events, report.bad_lines, report.duplicate_lines)
    assert set(loaded.rejected_by_reason) == {
        "invalid_json", "missing_field", "negative_value", "invalid_timestamp", "wrong_type"}
    assert connection.execute("select count(*) from raw.events where reported_cost_usd is null").fetchone()[0] > 0


def test_arguments_are_checked(tmp_path: Path) -> None:
    catalog = make_catalog()
    with pytest.raises(ValueError, match="end must be after start"):
        generate_events(catalog, tmp_path, 10, END, START)
    with pytest.raises(ValueError, match="bad_fraction"):
        generate_events(catalog, tmp_path, 10, START, END, bad_fraction=2)
    with pytest.raises(ValueError, match="no subscription"):
        generate_events(catalog, tmp_path, 10, datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC))
    assert generate_events(catalog, tmp_path, 0, START, END).files == []
    assert generate_events(catalog, tmp_path, 20, START, END, progress=True).lines_written == 20


def _contents(report, base: Path) -> dict[str, bytes]:
    return {path.relative_to(base).as_posix(): path.read_bytes() for path in report.files}


def test_bytes_do_not_depend_on_threads_or_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events are drawn in blocks on a thread pool and rendered in chunks on it: the bytes are the same
    with one thread or two and with any chunk size (blocks of events are a fixed split of the random
    streams, so a small block size is a different, equally deterministic data set)."""
    catalog = make_catalog(extra_subscribers=5)
    monkeypatch.setattr(generate, "BLOCK_EVENTS", 1_000)  # several blocks, so several random streams
    arguments = dict(n_events=6_000, start=START, end=END, seed=21, bad_fraction=0.1, duplicate_fraction=0.1)
    reference = generate_events(catalog, tmp_path / "a", **arguments)
    expected = _contents(reference, tmp_path / "a")
    for name, threads, chunk, take in (("b", 2, 700, 128), ("c", 1, 100_000, 100_000), ("d", 2, 333, 7)):
        monkeypatch.setattr(generate, "THREADS", threads)
        monkeypatch.setattr(generate, "CHUNK_LINES", chunk)
        monkeypatch.setattr(generate, "TAKE_LINES", take)
        assert _contents(generate_events(catalog, tmp_path / name, **arguments), tmp_path / name) == expected
    compressed = generate_events(catalog, tmp_path / "gz", **arguments, compress=True)  # chunks of 333 lines
    assert {name.removesuffix(".gz"): gzip.decompress(data)
            for name, data in _contents(compressed, tmp_path / "gz").items()} == expected
    monkeypatch.setattr(generate, "BLOCK_EVENTS", 2_000)
    assert _contents(generate_events(catalog, tmp_path / "e", **arguments), tmp_path / "e") != expected
    assert reference.lines_written == 6_600 and reference.bad_lines == 600 and reference.duplicate_lines == 600


def test_duplicates_are_later_copies_in_the_same_day_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate, "CHUNK_LINES", 50)  # copies land in other chunks than their originals
    report = generate_events(make_catalog(), tmp_path / "landing", 5_000, START, END, seed=4, bad_fraction=0.05,
                             duplicate_fraction=0.1)
    seen: dict[str, tuple[str, int, str]] = {}
    copies = 0
    for path in report.files:
        for number, text in enumerate(path.read_text().splitlines()):
            try:
                transaction = json.loads(text)["transactionId"]
            except ValueError:
                continue  # a truncated line
            if transaction in seen:
                first_file, first_number, first_text = seen[transaction]
                assert (first_file, first_text) == (path.name, text) and first_number < number
                copies += 1
            else:
                seen[transaction] = (path.name, number, text)
    assert copies == report.duplicate_lines == 500


def test_not_json_lines_are_truncated_lines(tmp_path: Path) -> None:
    report = generate_events(make_catalog(), tmp_path / "landing", 2_000, START, END, seed=8, bad_fraction=0.5)
    truncated = []
    for text in read_lines(report.files):
        try:
            json.loads(text)
        except ValueError:
            truncated.append(text)
    assert len(truncated) == report.bad_by_kind["not_json"] == 200
    assert all(text.startswith('{"transactionId":"') and not text.endswith("}") for text in truncated)
    assert 150 < sum(len(text) for text in truncated) / len(truncated) < 400  # about half a line


def test_cost_texts_are_exact_decimals() -> None:
    """Amounts in 1e-10 USD rendered by table lookups: the decimal text, trailing zeros dropped."""
    amounts = [0, 1, 9, 10, 99_999, 100_000, 100_001, 123_450_000, 9_999_999_999, 10**10, 10**10 + 1,
               10**10 + 10**5, 37 * 10**10 + 5, 2 * 10**10 + 1_234_500_000]
    table = generate._Table()
    texts = generate._CostTexts(table, ',"totalCost":', max(amounts) // 10**10)
    index = np.empty((len(amounts), 3), dtype=np.int32)
    texts.indexes(np.array(amounts, dtype=np.int64), np.ones(len(amounts), dtype=bool), index)
    values = table.texts().to_pylist()
    rendered = ["".join(values[i] for i in row) for row in index]
    expected = [',"totalCost":' + format(Decimal(amount).scaleb(-10).normalize(), "f") for amount in amounts]
    assert rendered == expected


def test_plan_change_of_a_subscription_from_long_ago(tmp_path: Path) -> None:
    """A plan change is found per subscription also when the subscription started centuries ago."""
    catalog = make_catalog()
    catalog.subscriptions[0].start = datetime(1850, 1, 1, tzinfo=UTC)
    report = generate_events(catalog, tmp_path / "landing", 2_000, START, END, seed=5)
    events = [json.loads(text) for text in read_lines(report.files)]
    acme = [e for e in events if e["subscriber"]["id"] == "user-123"]
    assert acme and all(
        e["productName"] == ("Agent Platform" if e["requestTime"] >= "2026-10-15" else "DocSum Pro") for e in acme)
