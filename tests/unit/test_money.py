"""dagster_project.lib.money: one rounding, half to even, to the currency's minor unit (SPEC §3.7)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagster_project.lib.money import format_money, minor_units, round_money, to_minor_units


@pytest.mark.parametrize(
    ("currency", "units"),
    [("USD", 2), ("usd", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3)],
)
def test_minor_units_follow_iso_4217(currency, units):
    assert minor_units(currency) == units


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        # JPY, 0 decimals: exact halves go to the even neighbour
        ("2.5", "JPY", "2"),      # 2 is even -> down
        ("3.5", "JPY", "4"),      # 3 is odd  -> up
        ("0.5", "JPY", "0"),      # 0 is even -> down
        ("1.5", "JPY", "2"),      # 1 is odd  -> up
        ("2.51", "JPY", "3"),     # above the half -> up regardless of parity
        ("1500", "JPY", "1500"),
        # USD, 2 decimals
        ("0.125", "USD", "0.12"),   # 12 even -> down
        ("0.135", "USD", "0.14"),   # 13 odd  -> up
        ("0.145", "USD", "0.14"),   # 14 even -> down
        ("0.1250001", "USD", "0.13"),  # just above the half -> up
        ("0.1249999", "USD", "0.12"),  # just below the half -> down
        ("199", "USD", "199.00"),
        ("-0.125", "USD", "-0.12"),  # credit notes: symmetric, -12.5 -> -12 (even)
        ("-0.135", "USD", "-0.14"),
        # KWD, 3 decimals
        ("1.0005", "KWD", "1.000"),  # 1000 even -> down
        ("1.0015", "KWD", "1.002"),  # 1001 odd  -> up
        ("1.0025", "KWD", "1.002"),  # 1002 even -> down
    ],
)
def test_round_money_half_even_decimal(amount, currency, expected):
    rounded = round_money(Decimal(amount), currency)
    assert rounded == Decimal(expected)
    # the result carries exactly the currency's minor unit as its exponent (2.00, not 2)
    assert str(rounded) == expected


def test_round_money_accepts_minor_units_as_int_and_ints():
    assert str(round_money(Decimal("0.135"), 2)) == "0.14"
    assert str(round_money(7, "USD")) == "7.00"
    assert str(round_money(7, "KWD")) == "7.000"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        # 199 * 22 / 31 = 4378 / 31 = 141 + 7/31 = 141.2258... -> 141.23
        (Fraction(199 * 22, 31), "USD", "141.23"),
        # 199 * 21 / 31 = 4179 / 31 = 134 + 25/31 = 134.80645... -> 134.81
        (Fraction(199 * 21, 31), "USD", "134.81"),
        # 1/8 = 0.125 exactly: 12.5 cents, 12 is even -> 0.12
        (Fraction(1, 8), "USD", "0.12"),
        # 3/8 = 0.375 exactly: 37.5 cents, 37 is odd -> 0.38
        (Fraction(3, 8), "USD", "0.38"),
        # 1/3 = 0.333... -> 0.33 ; 2/3 = 0.666... -> 0.67
        (Fraction(1, 3), "USD", "0.33"),
        (Fraction(2, 3), "USD", "0.67"),
        # negative halves: -1/8 = -12.5 cents -> -12 ; -3/8 = -37.5 cents -> -38
        (Fraction(-1, 8), "USD", "-0.12"),
        (Fraction(-3, 8), "USD", "-0.38"),
        # JPY: 1001/2 = 500.5 -> 500 (even) ; 1003/2 = 501.5 -> 502 (even)
        (Fraction(1001, 2), "JPY", "500"),
        (Fraction(1003, 2), "JPY", "502"),
        # KWD: 1/16 = 0.0625 exactly: 62.5 fils, 62 even -> 0.062
        (Fraction(1, 16), "KWD", "0.062"),
        # KWD: 3/16 = 0.1875 exactly: 187.5 fils, 187 odd -> 0.188
        (Fraction(3, 16), "KWD", "0.188"),
    ],
)
def test_round_money_fraction_exact(amount, currency, expected):
    rounded = round_money(amount, currency)
    assert rounded == Decimal(expected)
    assert str(rounded) == expected


def test_fraction_is_rounded_exactly_not_through_a_finite_decimal():
    # 0.125 + 1e-40: a Decimal with 28-digit context would lose the 1e-40 and round the half
    # down to 0.12; the exact fraction is above the half, so it must round up to 0.13.
    amount = Fraction(1, 8) + Fraction(1, 10**40)
    assert round_money(amount, "USD") == Decimal("0.13")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1500", "JPY", 1500),     # 0 decimals: 1500 yen is 1500 minor units
        ("12.34", "USD", 1234),    # 12.34 * 100
        ("1.234", "KWD", 1234),    # 1.234 * 1000
        ("0.125", "USD", 12),      # rounded half-even first: 0.12 -> 12
        ("0.135", "USD", 14),      # 0.14 -> 14
        ("2.5", "JPY", 2),         # 2.5 -> 2 (even)
        ("0", "USD", 0),
    ],
)
def test_to_minor_units(amount, currency, expected):
    value = to_minor_units(Decimal(amount), currency)
    assert value == expected
    assert isinstance(value, int)


def test_format_money():
    # 1234.5 -> "1,234.50 USD" ; JPY has no decimals ; KWD three
    assert format_money(Decimal("1234.5"), "usd") == "1,234.50 USD"
    assert format_money(Decimal("1500"), "JPY") == "1,500 JPY"
    assert format_money(Decimal("1.0005"), "KWD") == "1.000 KWD"


# --- the SQL twin: DuckDB round_even must agree with round_money -----------------------------


@pytest.fixture(scope="module")
def duck():
    connection = duckdb.connect()
    yield connection
    connection.close()


def _sql_round_even(connection, value: Decimal, scale: int) -> Decimal:
    return connection.execute(
        "select round_even(cast(? as decimal(38, 10)), ?)", [str(value), scale]
    ).fetchone()[0]


def test_duckdb_round_differs_from_round_even_on_halves(duck):
    # 2.5 -> round() gives 3 (half away from zero), round_even() gives 2; round_money gives 2.
    plain, even = duck.execute(
        "select round(cast('2.5' as decimal(38, 10)), 0), round_even(cast('2.5' as decimal(38, 10)), 0)"
    ).fetchone()
    assert plain == Decimal("3")
    assert even == Decimal("2")
    assert round_money(Decimal("2.5"), 0) == even
    # 0.125 USD: round() -> 0.13, round_even() -> 0.12 == round_money
    plain, even = duck.execute(
        "select round(cast('0.125' as decimal(38, 10)), 2), round_even(cast('0.125' as decimal(38, 10)), 2)"
    ).fetchone()
    assert plain == Decimal("0.13")
    assert even == Decimal("0.12") == round_money(Decimal("0.125"), "USD")
    # a cast also rounds half away from zero: 0.125 -> decimal(18,2) = 0.13
    assert duck.execute("select cast(cast('0.125' as decimal(38, 10)) as decimal(18, 2))").fetchone()[0] == Decimal(
        "0.13"
    )


# decimal(38,10) values in a realistic money range (|x| < 10^15), plus exact halves at each scale
_ten_decimals = st.integers(min_value=-(10**25), max_value=10**25).map(lambda n: Decimal(n).scaleb(-10))


@st.composite
def _exact_halves(draw):
    scale = draw(st.sampled_from([0, 2, 3]))
    whole = draw(st.integers(min_value=-(10**12), max_value=10**12))
    # whole + 0.5 units of the last kept digit: e.g. scale 2 -> 12345 * 0.01 + 0.005
    return Decimal(whole).scaleb(-scale) + Decimal(5).scaleb(-scale - 1)


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(_ten_decimals, _exact_halves()), scale=st.sampled_from([0, 2, 3]))
def test_duckdb_round_even_agrees_with_round_money(duck, value, scale):
    assert _sql_round_even(duck, value, scale) == round_money(value, scale)
