"""The engine choice and the Parquet lake, without Spark: landing from DuckDB, publishing back."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project import settings
from dagster_project.billing import engines
from dagster_project.warehouse import connect

EVENT_COLUMNS = (
    "transaction_id, payload_sha256, event_type, request_time, input_tokens, output_tokens, reasoning_tokens, "
    "cache_read_tokens, cache_creation_tokens, total_tokens, subscriber_id, attributes_json, source_file, "
    "line_number, load_id, loaded_at"
)


def insert_event(connection: duckdb.DuckDBPyConnection, transaction_id: str, request_time: datetime) -> None:
    connection.execute(
        f"insert into raw.events ({EVENT_COLUMNS}) values (?, 'sha', 'custom', ?, 0, 0, 0, 0, 0, 0, 'u1', '{{}}', "
        "'landing/events/a.jsonl', 1, 'load-1', ?)",
        [transaction_id, request_time, request_time],
    )


def test_the_engine_is_duckdb_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.ENGINE_ENV, raising=False)
    assert settings.engine() == "duckdb"
    monkeypatch.setenv(settings.ENGINE_ENV, " Spark ")
    assert settings.engine() == "spark"
    monkeypatch.setenv(settings.ENGINE_ENV, "postgres")
    with pytest.raises(ValueError, match="METERHOUSE_ENGINE"):
        settings.engine()


def test_the_engine_picks_the_dbt_target_and_its_own_target_path(tmp_path: Path) -> None:
    duck = engines.EngineRun("duckdb", tmp_path)
    spark = engines.EngineRun("spark", tmp_path)
    assert (duck.dbt_args(), spark.dbt_args()) == ([], ["--target", "spark"])
    assert duck.target_path() == tmp_path / ".dbt" / "target"
    assert spark.target_path() == tmp_path / ".dbt" / "target-spark"
    assert duck.publish() == []


def test_raw_events_land_one_folder_per_utc_day_and_every_table_beside(tmp_path: Path) -> None:
    lake = engines.lake_path(tmp_path)
    with connect(tmp_path) as connection:
        insert_event(connection, "t1", datetime(2026, 10, 1, 23, 59, 59, 999999))
        insert_event(connection, "t2", datetime(2026, 10, 2, 0, 0))
        counts = engines.land_parquet(connection, lake)
        landed = connection.execute(
            f"select transaction_id, request_time, event_date from read_parquet('{lake}/raw/events/**/*.parquet', "
            "hive_partitioning = true) order by 1"
        ).fetchall()
    assert counts["raw.events"] == 2 and counts["catalog.products"] == 0
    assert sorted(path.name for path in (lake / "raw" / "events").iterdir()) == [
        "event_date=2026-10-01", "event_date=2026-10-02",
    ]
    assert [(row[0], row[1], str(row[2])) for row in landed] == [
        ("t1", datetime(2026, 10, 1, 23, 59, 59, 999999), "2026-10-01"),
        ("t2", datetime(2026, 10, 2), "2026-10-02"),
    ]
    # every raw and catalog table has its folder (Spark reads the schema even of an empty one)
    assert (lake / "catalog" / "subscription_periods" / "data_0.parquet").exists()
    assert not list(lake.glob("*/.*"))  # no half-written folder left behind


def test_an_empty_event_table_still_lands_a_schema(tmp_path: Path) -> None:
    lake = engines.lake_path(tmp_path)
    with connect(tmp_path) as connection:
        engines.land_parquet(connection, lake)
        columns = connection.execute(
            f"describe select * from read_parquet('{lake}/raw/events/**/*.parquet', hive_partitioning = true)"
        ).fetchall()
    assert (lake / "raw" / "events" / f"event_date={engines.EMPTY_PARTITION}").is_dir()
    assert "transaction_id" in [column[0] for column in columns]


def test_a_second_landing_replaces_the_first(tmp_path: Path) -> None:
    lake = engines.lake_path(tmp_path)
    with connect(tmp_path) as connection:
        insert_event(connection, "t1", datetime(2026, 10, 1))
        engines.land_parquet(connection, lake)
        connection.execute("delete from raw.events")
        insert_event(connection, "t2", datetime(2026, 11, 5))
        engines.land_parquet(connection, lake)
    assert sorted(path.name for path in (lake / "raw" / "events").iterdir()) == ["event_date=2026-11-05"]


def test_published_marts_come_back_with_naive_utc_timestamps(tmp_path: Path) -> None:
    """What Spark writes (instants, exact decimals) replaces the DuckDB marts, views included."""
    lake = engines.lake_path(tmp_path)
    folder = engines.spark_warehouse_path(lake) / "marts.db" / "usage_by_period"
    folder.mkdir(parents=True)
    (engines.spark_warehouse_path(lake) / "marts.db" / "empty_dir").mkdir()
    with connect(tmp_path) as connection:
        connection.execute(
            f"""copy (select 'd1' as draft_key, timestamptz '2026-10-01 00:00:00+00' as period_start,
                    cast('1.0000000001' as decimal(21, 10)) as quantity)
                to '{folder}/part-00000.parquet' (format parquet)"""
        )
        connection.execute("create or replace view marts.rejected_events as select 1 as x")
        (engines.spark_warehouse_path(lake) / "marts.db" / "rejected_events").mkdir()
        connection.execute(
            f"copy (select 2 as x) to '{engines.spark_warehouse_path(lake)}/marts.db/rejected_events/p.parquet'"
            " (format parquet)"
        )
        published = engines.publish_marts(connection, lake)
        rows = connection.execute("select * from marts.usage_by_period").fetchall()
        types = [row[1] for row in connection.execute("describe marts.usage_by_period").fetchall()]
        rejected = connection.execute(
            "select table_type from information_schema.tables where table_schema = 'marts' and table_name = 'rejected_events'"
        ).fetchall()
    assert published == ["marts.rejected_events", "marts.usage_by_period"]
    assert rows == [("d1", datetime(2026, 10, 1), Decimal("1.0000000001"))]
    assert types == ["VARCHAR", "TIMESTAMP", "DECIMAL(21,10)"]
    assert rejected == [("BASE TABLE",)]


def test_a_spark_mart_with_a_null_in_a_not_null_column_is_not_published(tmp_path: Path) -> None:
    """Parquet tables cannot hold dbt's not_null constraints; publishing checks them instead."""
    lake = engines.lake_path(tmp_path)
    folder = engines.spark_warehouse_path(lake) / "marts.db" / "invoice_drafts"
    folder.mkdir(parents=True)
    with connect(tmp_path) as connection:
        connection.execute("create schema if not exists marts")
        connection.execute("create table marts.invoice_drafts as select 'old' as draft_key, 1.00 as total")
        connection.execute(
            f"""copy (select * from (values ('d1', 5.00), ('d2', null), ('d3', null)) as t(draft_key, total))
                to '{folder}/part-00000.parquet' (format parquet)"""
        )
        with pytest.raises(ValueError, match=r"marts\.invoice_drafts .* total \(2 rows\)"):
            engines.publish_marts(connection, lake, {"invoice_drafts": ["draft_key", "total"]})
        assert connection.execute("select * from marts.invoice_drafts").fetchall() == [("old", Decimal("1.00"))]
        assert engines.publish_marts(connection, lake, {"invoice_drafts": ["draft_key"]}) == ["marts.invoice_drafts"]


def test_not_null_columns_come_from_the_marts_constraints_in_the_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    model = {"resource_type": "model", "alias": "invoice_drafts", "config": {"schema": "marts"}, "columns": {
        "draft_key": {"constraints": [{"type": "not_null"}]}, "note": {"constraints": []},
        "total": {"constraints": [{"type": "check"}, {"type": "not_null"}]},
    }}
    staging = {**model, "alias": "stg", "config": {"schema": "staging"}}
    manifest.write_text(json.dumps({"nodes": {"model.a": model, "model.b": staging, "test.c": {"resource_type": "test"}}}))
    assert engines.not_null_columns(manifest) == {"invoice_drafts": ["draft_key", "total"]}


def test_event_level_tables_stay_in_the_lake_as_views(tmp_path: Path) -> None:
    lake = engines.lake_path(tmp_path)
    folder = engines.spark_warehouse_path(lake) / "intermediate.db" / "int_events_attributed"
    folder.mkdir(parents=True)
    with connect(tmp_path) as connection:
        connection.execute(f"copy (select 't1' as transaction_id) to '{folder}/part-0.parquet' (format parquet)")
        # left by an earlier run on DuckDB
        connection.execute("create schema intermediate")
        connection.execute("create table intermediate.int_events_attributed as select 'old' as transaction_id")
        published = engines.publish_marts(connection, lake)
        kind = connection.execute(
            "select table_type from information_schema.tables where table_schema = 'intermediate'"
        ).fetchall()
        rows = connection.execute("select * from intermediate.int_events_attributed").fetchall()
    assert published == ["intermediate.int_events_attributed"]
    assert (kind, rows) == ([("VIEW",)], [("t1",)])


def test_without_java_the_parity_suite_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.spark import test_parity

    monkeypatch.setattr(test_parity.shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no `java`"):
        test_parity.require_spark()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        test_parity.require_spark()
