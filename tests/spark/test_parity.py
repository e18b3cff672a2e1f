"""DuckDB and Spark rate the same data to the same drafts, to the last decimal (issue 9).

The golden table's data (tests/golden: 52 hand-worked scenarios: graduated and volume tiers,
fixed fees, trials, proration, plan changes, JPY and KWD, half-even cases, filters and every
aggregation) plus the parity extras in ``tests/spark/extra`` (where naive Spark SQL differs: a
product past 38 digits, decimal division, token counts past 2^31, JSON numbers and booleans as
text, quotes and backslashes in catalog names) go through the real loaders into
DuckDB once. Then ONE ``dbt build`` on DuckDB (models and data tests), the landing of raw and
catalog as Parquet (``dagster_project.billing.engines``), and ONE ``dbt run`` on Spark (dbt-spark's
``session`` method, one SparkSession in this process; the data tests already passed on DuckDB on
the same data, and running them again on Spark would double the test's time). Spark's marts are read back into DuckDB from their Parquet files, and
every mart the invoicing step reads is compared with ``except all`` both ways, every column, with
the DuckDB mart's exact types.

Drafts, not invoices: ``marts.invoices`` / ``invoice_lines`` are written by Python from
``invoice_drafts`` / ``invoice_line_drafts`` whichever engine rated them, so equal drafts are
equal invoices.

Without Java or pyspark the suite skips on a workstation and FAILS under CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dagster_project.billing import engines
from dagster_project.catalog.loader import load_catalog_into
from dagster_project.ingest.loader import load_new_files
from dagster_project.warehouse import connect, warehouse_path
from tests.golden.test_golden import AS_OF, GOLDEN, release_warehouse

pytestmark = pytest.mark.spark

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"
EXTRA = Path(__file__).resolve().parent / "extra"
# the marts the invoicing step, the CLI and the reports read: every one must agree
COMPARED = (
    "usage_by_period",
    "invoice_line_drafts",
    "invoice_drafts",
    "unbilled_usage",
    "discovered_products",
    "auto_created_credentials",
    "rejected_events",
)
# the reports (issue 6) are built after invoicing, from the DuckDB ledger: not a rating model
DBT_SELECTION = ["--exclude", "tag:reporting"]
# Spark for a few hundred rows: a fresh in-memory catalog (no Derby metastore to create), few
# shuffle partitions, no whole-stage code generation (compiling it costs more than it saves here)
SPARK_ENVIRONMENT = {
    "METERHOUSE_SPARK_CATALOG": "in-memory",
    "METERHOUSE_SPARK_SHUFFLE_PARTITIONS": "1",
    "METERHOUSE_SPARK_CODEGEN": "false",
    "METERHOUSE_SPARK_DRIVER_MEMORY": "1g",
}


def _spark_missing() -> str | None:
    try:
        import pyspark  # noqa: F401
        from dbt.adapters.spark import SparkAdapter  # noqa: F401
    except ImportError as error:
        return f"pyspark / dbt-spark not installed ({error}): `uv sync --extra spark`"
    java = shutil.which("java", path=os.environ.get("JAVA_HOME", "") + "/bin") or shutil.which("java")
    if java is None:
        return "no `java` on PATH (Spark 4 needs Java 17 or 21)"
    probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`java -version` failed: {probe.stderr.strip()[:200]}"
    return None


def require_spark() -> None:
    missing = _spark_missing()
    if missing is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"Spark parity cannot run in CI: {missing}", pytrace=False)
    pytest.skip(missing)


def run_dbt(args: list[str], environment: dict[str, str], target: Path) -> list[str]:
    """One in-process dbt invocation; returns the failures (models, tests, hooks)."""
    from dbt.cli.main import dbtRunner

    previous = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        result = dbtRunner().invoke([
            *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
            "--target-path", str(target), "--log-path", str(target / "logs"), "--quiet",
        ])
    finally:
        release_warehouse()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    failures = [f"{r.node.unique_id}: {r.status} {r.message}" for r in (result.result or [])
                if str(r.status) not in ("success", "pass")]
    if result.exception is not None:
        failures.append(f"dbt: {result.exception}")
    if not result.success and not failures:
        failures.append("dbt reported failure")
    return failures


def stop_spark() -> None:
    """The session method leaves its SparkSession (and JVM) running in this process: stop it."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


@dataclass
class Parity:
    data_dir: Path
    lake: Path
    seconds: dict[str, float]
    duckdb_failures: list[str]
    spark_failures: list[str]


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parity]:
    require_spark()
    root = tmp_path_factory.mktemp("parity")
    data_dir = root / "data"
    shutil.copytree(GOLDEN / "catalog", data_dir / "catalog")
    shutil.copytree(GOLDEN / "events", data_dir / "landing" / "events")
    shutil.copyfile(GOLDEN / "model_prices.csv", data_dir / "landing" / "model_prices.csv")
    if EXTRA.is_dir():
        shutil.copytree(EXTRA / "catalog", data_dir / "catalog", dirs_exist_ok=True)
        shutil.copytree(EXTRA / "events", data_dir / "landing" / "events" / "parity", dirs_exist_ok=True)
    with connect(data_dir) as connection:
        load_catalog_into(connection, data_dir, AS_OF)
        load_new_files(connection, data_dir, AS_OF)

    seconds: dict[str, float] = {}
    started = time.monotonic()
    duckdb_failures = run_dbt(["build", *DBT_SELECTION], {"METERHOUSE_WAREHOUSE": str(warehouse_path(data_dir))},
                              root / "target-duckdb")
    seconds["dbt build on DuckDB"] = time.monotonic() - started

    started = time.monotonic()
    lake = engines.lake_path(data_dir)
    with connect(data_dir) as connection:
        engines.land_parquet(connection, lake)
    seconds["landing as Parquet"] = time.monotonic() - started

    started = time.monotonic()
    try:
        spark_failures = run_dbt(["run", "--target", "spark", *DBT_SELECTION], SPARK_ENVIRONMENT | {
            "METERHOUSE_LAKE": str(lake),
        }, root / "target-spark")
    finally:
        stop_spark()
    seconds["dbt build on Spark"] = time.monotonic() - started
    yield Parity(data_dir, lake, seconds, duckdb_failures, spark_failures)


@pytest.fixture(scope="module")
def db(parity: Parity) -> Iterator[duckdb.DuckDBPyConnection]:
    """The DuckDB warehouse, with every Spark mart beside it as ``spark.<table>``."""
    connection = duckdb.connect(
        str(warehouse_path(parity.data_dir)), config={"TimeZone": "UTC", "autoinstall_known_extensions": False}
    )
    connection.execute("create schema if not exists spark")
    for table, folder in engines.spark_table_folders(parity.lake).items():
        connection.execute(f"create or replace view spark.{table} as {engines.parquet_select(connection, folder)}")
    yield connection
    connection.close()


def columns_of(db: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind, *_ in db.execute(f"describe {schema}.{table}").fetchall()]


def differences(db: duckdb.DuckDBPyConnection, table: str) -> tuple[list[Any], list[Any]]:
    """Rows only DuckDB has, rows only Spark has (``except all``: duplicates count)."""
    columns = columns_of(db, "marts", table)
    duck = ", ".join(f'"{name}"' for name, _ in columns)
    # Spark's values with DuckDB's declared types: exact for decimals of the same scale
    spark = ", ".join(f'cast("{name}" as {kind}) as "{name}"' for name, kind in columns)
    only_duckdb = db.execute(
        f"select {duck} from marts.{table} except all select {spark} from spark.{table} order by all limit 20"
    ).fetchall()
    only_spark = db.execute(
        f"select {spark} from spark.{table} except all select {duck} from marts.{table} order by all limit 20"
    ).fetchall()
    return only_duckdb, only_spark


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_dbt_builds_on_both_engines(parity: Parity) -> None:
    # the timings are printed, not asserted (speed is checked by benchmarks and by the CI's wall
    # time): a 180 s bound here failed at 181.5 s while another job shared the two cores
    timings = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in parity.seconds.items())
    assert parity.duckdb_failures == [], timings
    assert parity.spark_failures == [], timings
    print(f"\nparity timings: {timings}")


def test_raw_events_land_partitioned_by_day(parity: Parity, db: duckdb.DuckDBPyConnection) -> None:
    folders = sorted(path.name for path in (parity.lake / "raw" / "events").iterdir())
    days = db.execute(
        "select distinct 'event_date=' || strftime(request_time, '%Y-%m-%d') from raw.events order by 1"
    ).fetchall()
    assert folders == [day for (day,) in days]
    landed = db.execute(
        f"select count(*) from read_parquet('{parity.lake}/raw/events/**/*.parquet', hive_partitioning = true)"
    ).fetchone()[0]
    assert landed == db.execute("select count(*) from raw.events").fetchone()[0]


@pytest.mark.parametrize("table", COMPARED)
def test_spark_mart_has_the_duckdb_columns_and_types(table: str, db: duckdb.DuckDBPyConnection) -> None:
    assert columns_of(db, "spark", table) == columns_of(db, "marts", table)


@pytest.mark.parametrize("table", COMPARED)
def test_spark_mart_equals_duckdb_mart(table: str, db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute(f"select count(*) from marts.{table}").fetchone()[0]
    assert rows > 0, f"marts.{table} is empty: the comparison would prove nothing"
    only_duckdb, only_spark = differences(db, table)
    assert (only_duckdb, only_spark) == ([], []), (
        "\nonly on DuckDB:\n  " + "\n  ".join(map(repr, only_duckdb))
        + "\nonly on Spark:\n  " + "\n  ".join(map(repr, only_spark))
    )


def test_every_golden_draft_is_compared(db: duckdb.DuckDBPyConnection) -> None:
    """The drafts cover every currency and aggregation the golden table has."""
    currencies = {currency for (currency,) in db.execute("select distinct currency from spark.invoice_drafts").fetchall()}
    aggregations = {kind for (kind,) in db.execute("select distinct aggregation from spark.usage_by_period").fetchall()}
    assert {"USD", "JPY", "KWD"} <= currencies
    assert {"sum", "count", "count_unique", "match", "average", "max"} <= aggregations


def test_the_spark_hazards_are_rated_exactly(db: duckdb.DuckDBPyConnection) -> None:
    """The parity extras (tests/spark/extra) where a naive Spark query differs from DuckDB."""
    rows = dict(db.execute("""
        select drafts.subscription_id || ' ' || lines.tier_name, lines.quantity || ' = ' || lines.amount
        from spark.invoice_line_drafts as lines
        inner join spark.invoice_drafts as drafts on lines.draft_key = drafts.draft_key
        where drafts.subscription_id like 'sx%' and lines.kind = 'usage' and lines.tier_name is not null
    """).fetchall())
    # quantity x rate = 1554.6149999999999999999995: a naive Spark product says 1554.62
    assert rows["sx1 All"] == "1259239069.2445205485 = 1554.610"
    # average of 1, 0, 0: Spark's decimal division alone keeps 0.333333
    assert rows["sx2 All"] == "0.3333333333 = 3333.330"
    # 3 x 3,000,000,000 tokens: past 2^31, where an int wraps
    assert rows["sx4 Beyond"] == "8000000000.0000000000 = 12000.000"
    assert rows["sx4 Beyond (fixed fee)"] == "1.0000000000 = 2.000"
