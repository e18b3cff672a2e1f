"""Property tests (hypothesis) of the real tier SQL: the compiled ``int_usage_lines_rated``.

The model turns per-metric quantities (``int_period_usage_filled``) and the catalog's tiers
(``stg_catalog__tiers``) into usage lines. Its SQL is compiled once per module with an
in-process ``dbt compile --select int_usage_lines_rated`` into a tmp target dir, and executed
in an in-memory DuckDB where the two upstream relations are plain tables that hypothesis fills
with tiers and quantities. The relation names keep their schema (``intermediate``/``staging``);
only the database prefix (the warehouse file's name) is dropped.

Properties (SPEC §3.4, §3.7):
* graduated: the charge is monotone non-decreasing in the quantity; the tier quantities add up
  to the quantity; each line is exactly ``round_half_even(tier quantity x rate)``;
* volume: the charge is ``round_half_even(quantity x rate of the containing tier)`` plus that
  tier's fixed fee, nothing else;
* quantity 0 enters no tier: one line, amount 0;
* every amount has the currency's minor-unit scale (an integer number of minor units).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path

import duckdb
import pytest
from dbt.cli.main import dbtRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"
MODEL = "int_usage_lines_rated"

# The columns of the two upstream models as the rating model reads them (types as the models
# cast them: quantity decimal(21,10), bounds decimal(21,10), rate decimal(17,12), fee decimal(18,6)).
UPSTREAM_DDL = """
create schema intermediate;
create schema staging;
create table intermediate.int_period_usage_filled (
    draft_key varchar, subscription_id varchar, product_id varchar, period_start timestamp,
    period_end timestamp, currency varchar, minor_units integer, metric_name varchar,
    metric_position integer, aggregation varchar, tier_mode varchar, quantity decimal(21, 10),
    event_count bigint, trial_quantity decimal(21, 10), trial_event_count bigint
);
create table staging.stg_catalog__tiers (
    product_id varchar, metric_name varchar, tier_position integer, tier_name varchar,
    lower_bound decimal(21, 10), upper_bound decimal(21, 10), unit_rate decimal(17, 12),
    fixed_fee decimal(18, 6), notify_at_percent varchar
);
"""


def _release_dbt_connection() -> None:
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()


@pytest.fixture(scope="module")
def rating_sql(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("tier_sql")
    previous = os.environ.get("METERHOUSE_WAREHOUSE")
    os.environ["METERHOUSE_WAREHOUSE"] = str(root / "warehouse.duckdb")
    try:
        result = dbtRunner().invoke([
            "compile", "--select", MODEL, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
            "--target-path", str(root / "target"), "--log-path", str(root / "logs"), "--quiet",
        ])
    finally:
        _release_dbt_connection()
        if previous is None:
            os.environ.pop("METERHOUSE_WAREHOUSE", None)
        else:
            os.environ["METERHOUSE_WAREHOUSE"] = previous
    assert result.success, result.exception
    (compiled,) = (root / "target" / "compiled").rglob(f"{MODEL}.sql")
    sql = compiled.read_text(encoding="utf-8")
    # "warehouse"."intermediate"."int_period_usage_filled" -> "intermediate"."int_period_usage_filled"
    sql, replaced = re.subn(r'"warehouse"\.("\w+"\."\w+")', r"\1", sql)
    assert replaced == 2, sql
    return sql


@pytest.fixture(scope="module")
def memory_db() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:")
    connection.execute(UPSTREAM_DDL)
    yield connection
    connection.close()


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------

TENTH = Decimal("0.0000000001")  # the quantity and bound scale, decimal(21, 10)


def _decimal(places: int, low: str, high: str) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=places,
                       allow_nan=False, allow_infinity=False)


@st.composite
def tiered_metrics(draw: st.DrawFn) -> dict:
    """Tiers (1-4, increasing bounds, last unbounded) and two quantities q1 <= q2, often on a
    bound or a hair either side of one."""
    bounds = sorted(draw(st.sets(
        st.one_of(_decimal(0, "1", "1000"), _decimal(10, "0.0000000001", "100000")), max_size=3,
    )))
    tiers = []
    lower = Decimal(0)
    for position, upper in enumerate([*bounds, None], start=1):
        tiers.append({
            "position": position, "lower": lower, "upper": upper,
            # short rates and quantities make half-way products (x.xx5) common: rounding must be half-even
            "rate": draw(st.one_of(st.just(Decimal(0)), _decimal(1, "0", "50"), _decimal(2, "0", "50"),
                                   _decimal(3, "0", "50"), _decimal(12, "0", "999"))),
            "fee": draw(st.one_of(st.just(Decimal(0)), _decimal(3, "0", "50"), _decimal(6, "0", "5000"))),
        })
        lower = upper if upper is not None else lower
    near_bound = st.sampled_from(bounds).flatmap(
        lambda b: st.sampled_from([b, b - TENTH, b + TENTH])) if bounds else st.just(Decimal(0))
    quantity = st.one_of(st.just(Decimal(0)), near_bound, _decimal(0, "0", "300000"), _decimal(1, "0", "1000"),
                         _decimal(10, "0", "300000"))
    q1, q2 = sorted([max(Decimal(0), draw(quantity)), max(Decimal(0), draw(quantity))])
    return {"tiers": tiers, "quantities": (q1, q2), "minor_units": draw(st.sampled_from([0, 2, 3]))}


# --------------------------------------------------------------------------------------------
# running the model
# --------------------------------------------------------------------------------------------

DRAFTS = {  # draft_key: (product, tier_mode, which quantity)
    "grad-1": ("G", "graduated", 0), "grad-2": ("G", "graduated", 1),
    "vol-1": ("V", "volume", 0), "vol-2": ("V", "volume", 1),
}


def rate_lines(db: duckdb.DuckDBPyConnection, sql: str, case: dict) -> dict[str, list[tuple]]:
    db.execute("delete from intermediate.int_period_usage_filled")
    db.execute("delete from staging.stg_catalog__tiers")
    # one statement per table: executemany is row-at-a-time and dominates an example's runtime
    tier_rows = [[product, t["position"], f"T{t['position']}", t["lower"], t["upper"], t["rate"], t["fee"]]
                 for product in ("G", "V") for t in case["tiers"]]
    db.execute(
        "insert into staging.stg_catalog__tiers values "
        + ", ".join("(?, 'M', ?, ?, ?, ?, ?, ?, null)" for _ in tier_rows),
        [value for row in tier_rows for value in row],
    )
    usage_rows = [[key, product, case["minor_units"], mode, case["quantities"][which]]
                  for key, (product, mode, which) in DRAFTS.items()]
    db.execute(
        "insert into intermediate.int_period_usage_filled values "
        + ", ".join("(?, 'sub', ?, timestamp '2027-01-01', timestamp '2027-02-01', 'XXX', ?, 'M', 1, 'sum', ?, ?,"
                    " 1, 0, 0)" for _ in usage_rows),
        [value for row in usage_rows for value in row],
    )
    lines: dict[str, list[tuple]] = {key: [] for key in DRAFTS}
    for key, line_type, tier_name, quantity, unit_rate, amount in db.execute(
        f"select draft_key, line_type, tier_name, quantity, unit_rate, amount from ({sql}) as lines "
        "order by draft_key, tier_position, line_rank"
    ).fetchall():
        lines[key].append((line_type, tier_name, quantity, unit_rate, amount))
    return lines


EXACT = Context(prec=80)  # the default 28 digits would round a 38-digit product


def _times(left: Decimal, right: Decimal) -> Decimal:
    return EXACT.multiply(left, right)


def _round(amount: Decimal, minor_units: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units), rounding=ROUND_HALF_EVEN)


def assert_minor_unit_scale(drafted: list[tuple], minor_units: int) -> None:
    """Every amount is a whole number of the currency's minor units."""
    scale = Decimal(10) ** minor_units
    for line in drafted:
        minor_amount = line[4] * scale
        assert minor_amount == minor_amount.to_integral_value(), line


def _charge(lines: list[tuple]) -> Decimal:
    return sum((line[4] for line in lines), Decimal(0))


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(case=tiered_metrics())
def test_graduated_tiers(rating_sql: str, memory_db: duckdb.DuckDBPyConnection, case: dict) -> None:
    lines = rate_lines(memory_db, rating_sql, case)
    minor = case["minor_units"]
    for key, quantity in (("grad-1", case["quantities"][0]), ("grad-2", case["quantities"][1])):
        drafted = lines[key]
        assert_minor_unit_scale(drafted, minor)
        if quantity == 0:
            assert drafted == [("no_tier", None, Decimal(0), None, Decimal(0))]
            continue
        tier_lines = [line for line in drafted if line[0] == "tier"]
        # the parts add up to the quantity
        assert sum(line[2] for line in tier_lines) == quantity
        # each entered tier (quantity above its lower bound) is charged its part, rounded once
        expected = []
        for tier in case["tiers"]:
            if quantity <= tier["lower"]:
                continue
            top = quantity if tier["upper"] is None else min(quantity, tier["upper"])
            part = top - tier["lower"]
            expected.append(("tier", f"T{tier['position']}", part, tier["rate"], _round(_times(part, tier["rate"]), minor)))
            if tier["fee"] > 0:
                expected.append(("fixed_fee", f"T{tier['position']} (fixed fee)", Decimal(1), tier["fee"],
                                 _round(tier["fee"], minor)))
        assert drafted == expected
    # more usage never costs less
    assert _charge(lines["grad-1"]) <= _charge(lines["grad-2"])


@PROPERTY_SETTINGS
@given(case=tiered_metrics())
def test_volume_tiers(rating_sql: str, memory_db: duckdb.DuckDBPyConnection, case: dict) -> None:
    lines = rate_lines(memory_db, rating_sql, case)
    minor = case["minor_units"]
    for key, quantity in (("vol-1", case["quantities"][0]), ("vol-2", case["quantities"][1])):
        drafted = lines[key]
        assert_minor_unit_scale(drafted, minor)
        if quantity == 0:
            assert drafted == [("no_tier", None, Decimal(0), None, Decimal(0))]
            continue
        (tier,) = [t for t in case["tiers"] if t["lower"] < quantity and (t["upper"] is None or quantity <= t["upper"])]
        expected_charge = _round(_times(quantity, tier["rate"]), minor) + _round(tier["fee"], minor)
        assert _charge(drafted) == expected_charge
        assert [line[:3] for line in drafted if line[0] == "tier"] == [("tier", f"T{tier['position']}", quantity)]
        assert [line[1] for line in drafted if line[0] == "fixed_fee"] == (
            [f"T{tier['position']} (fixed fee)"] if tier["fee"] > 0 else []
        )
