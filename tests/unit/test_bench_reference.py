"""The benchmark's pandas reference rates a hand-made month the way docs/billing-rules.md says;
the benchmark compares it with the warehouse, so it must be right on its own."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import yaml

from dagster_project.bench.pandas_reference import rate
from dagster_project.bench.run import bench_catalog, documents_written_after


def _line(tid: str, subscriber: str, product: str, **fields) -> str:
    data = {"transactionId": tid, "requestTime": "2026-10-05T12:00:00Z", "provider": "openai", "model": "gpt-4o",
            "inputTokenCount": 1000, "outputTokenCount": 500, "productName": product,
            "subscriber": {"id": subscriber}, **fields}
    return json.dumps(data)


def test_bench_catalog_spreads_customers_over_both_products_and_pays_by_invoice():
    catalog = bench_catalog(6)
    assert [s["product"] for s in catalog["subscriptions"]] == ["docsum-summaries", "docsum-research"] * 3
    assert {p["payment"] for p in catalog["products"]} == {"invoice_only"}
    assert len(catalog["organizations"]) == 2  # four subscribers each: cust-00000..3, cust-00004..5


def test_reference_rates_summaries_research_and_pass_through_cost(tmp_path):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(bench_catalog(2)))
    (tmp_path / "landing" / "events").mkdir(parents=True)
    (tmp_path / "landing" / "model_prices.csv").write_text(
        "provider,model,input_per_million,output_per_million,cache_read_per_million,cache_creation_per_million,"
        "valid_from\nopenai,gpt-4o,2.50,10.00,1.25,0,2024-01-01T00:00:00Z\n"
    )
    summaries = [_line(f"s{n}", "cust-00000", "DocSum Summaries", totalCost=0.01) for n in range(1500)]
    research = [
        _line("r1", "cust-00001", "docsum-research", model="o3", totalCost=0.4),
        _line("r2", "cust-00001", "docsum-research", model="o3", inputTokenCost=0.1, outputTokenCost=0.0003),
        # no cost at all: 1,000 x 2.50 + 500 x 10.00 per million = 0.0025 + 0.005 = 0.0075
        _line("r3", "cust-00001", "docsum-research"),
    ]
    bad = [
        "not json",
        _line("b1", "cust-00000", "DocSum Summaries", inputTokenCount=-1),
        _line("b2", "cust-00000", "DocSum Summaries", requestTime="2026-10-05T12:00:00"),
        _line("s1", "cust-00000", "DocSum Summaries", totalCost=0.01),  # a duplicate id
        _line("late", "cust-00000", "DocSum Summaries", requestTime="2026-11-01T00:00:00Z"),
    ]
    (tmp_path / "landing" / "events" / "october.jsonl").write_text("\n".join(summaries + research + bad) + "\n")

    amounts = rate(tmp_path)

    # summaries: 1,000 x 1.50 + 500 x 1.35 = 1,500.00 + 675.00
    # research: 2 o3 reports x 1.50 = 3.00; cost 0.4 + 0.1003 + 0.0075 = 0.5078 x 1.25 = 0.63475 -> 0.63
    assert amounts == {"sub-00000": Decimal("2175.00"), "sub-00001": Decimal("3.63")}


def test_invoices_written_is_the_newest_document_after_the_start(tmp_path):
    started_at = 1_800_000_000.0
    invoices = tmp_path / "invoices"
    assert documents_written_after(invoices, started_at) is None  # no run wrote any
    invoices.mkdir()
    assert documents_written_after(invoices, started_at) is None
    for name, seconds in (("MH-1.html", 6.25), ("MH-1.pdf", 6.5), ("MH-2.html", 6.75), ("MH-2.pdf", 7.0)):
        (invoices / name).write_text("x")
        os.utime(invoices / name, (started_at + seconds, started_at + seconds))
    assert documents_written_after(invoices, started_at) == 7.0


def test_the_results_keep_each_rows_note_and_the_invoices_written(tmp_path, monkeypatch):
    from dagster_project.bench import run as bench

    monkeypatch.setattr(bench, "prepare_source", lambda cache, events: (tmp_path / "src", None))
    monkeypatch.setattr(bench, "run_baseline", lambda source: (0.25, 70.0))
    pipeline_runs = iter([(12.0, 850.0, 10.5), (13.0, 860.0, 11.5), (14.0, 840.0, 9.5)])
    monkeypatch.setattr(bench, "run_pipeline", lambda source, work: next(pipeline_runs))
    monkeypatch.setattr(bench, "run_pandas", lambda source, work: (0.5, 108.0, "usage amounts equal for 5 subscriptions"))
    results = bench.run_bench([1000], repeats=3, cache=tmp_path / "cache", incremental=False)
    rows = {row["label"]: row for row in results["rows"]}
    assert rows["meterhouse bill"]["walls"] == [12.0, 13.0, 14.0]
    assert rows["meterhouse bill"]["median"] == 13.0
    assert rows["meterhouse bill"]["invoices_written"] == [10.5, 11.5, 9.5]
    assert rows["meterhouse bill"]["note"] == "invoices written at 10.50 s (9.50–11.50)"
    assert rows["pandas (analyst's script)"]["note"] == "usage amounts equal for 5 subscriptions"
    assert rows["pandas (analyst's script)"]["invoices_written"] == []
    assert rows["DuckDB read_json + group by"]["invoices_written"] == []
