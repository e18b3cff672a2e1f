"""Arrow arrays from buffers (lib/arrow_arrays.py): the same values as pa.array, exact casts into
typed DuckDB columns, and no pandas import."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from dagster_project.lib import arrow_arrays
from tests.conftest import REPO_ROOT


def test_numbers_and_booleans_are_the_values_given() -> None:
    assert arrow_arrays.int32_array(np.array([3, -1, 7])).to_pylist() == [3, -1, 7]
    assert arrow_arrays.int64_array(np.array([2**40, 0])).to_pylist() == [2**40, 0]
    # nine values: the bitmap's second byte, little-endian bits
    flags = [True, False, False, True, True, False, True, False, True]
    assert arrow_arrays.bool_array(np.array(flags)).to_pylist() == flags


@pytest.mark.parametrize("large", [False, True])
def test_texts_keep_nulls_empty_strings_and_non_ascii(large: bool) -> None:
    texts = ["plain", None, "", "Zürich — 東京", None, "last"]
    array = arrow_arrays.text_array(texts, large=large)
    array.validate(full=True)
    assert array.type == (pa.large_string() if large else pa.string())
    assert array.to_pylist() == texts
    assert array.null_count == 2
    assert arrow_arrays.text_array([]).to_pylist() == []


def test_a_text_table_inserts_every_value_exactly_into_typed_columns() -> None:
    paris = timezone(timedelta(hours=2))
    rows = [
        {"name": "a", "amount": Decimal("12345678.123456"), "rate": Decimal("1E-12"), "count": 2**40,
         "flag": True, "seen_at": datetime(2026, 10, 1, 5, 30, 0, 123456), "day": date(2026, 2, 28)},
        # an aware time is stored as its UTC wall time (DuckDB would drop the offset of a text)
        {"name": None, "amount": Decimal("-0.000001"), "rate": None, "count": 0, "flag": False,
         "seen_at": datetime(2026, 10, 1, 2, 0, tzinfo=paris), "day": None},
        {"amount": Decimal("5E+3"), "count": -3, "flag": None, "seen_at": datetime(2026, 10, 1, tzinfo=UTC)},
    ]
    columns = ["name", "amount", "rate", "count", "flag", "seen_at", "day"]
    connection = duckdb.connect()
    connection.execute("""create table t (name varchar, amount decimal(18, 6), rate decimal(17, 12), count bigint,
                                         flag boolean, seen_at timestamp, day date)""")
    connection.from_arrow(arrow_arrays.text_table(rows, columns)).insert_into("t")
    assert connection.execute("select * from t").fetchall() == [
        ("a", Decimal("12345678.123456"), Decimal("0.000000000001"), 2**40, True,
         datetime(2026, 10, 1, 5, 30, 0, 123456), date(2026, 2, 28)),
        (None, Decimal("-0.000001"), None, 0, False, datetime(2026, 10, 1, 0, 0), None),
        (None, Decimal("5000"), None, -3, None, datetime(2026, 10, 1, 0, 0), None),
    ]


def test_a_value_without_an_sql_text_is_an_error_not_a_guess() -> None:
    with pytest.raises(TypeError, match="float"):
        arrow_arrays.sql_text(0.1)


def test_building_arrays_does_not_import_pandas() -> None:
    script = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from decimal import Decimal\n"
        "from dagster_project.lib import arrow_arrays as a\n"
        "t = a.text_table([{'x': Decimal('1.5'), 'y': None}], ['x', 'y'])\n"
        "pa.Table.from_arrays([a.int32_array(np.arange(3)), a.bool_array(np.ones(3, bool)),\n"
        "                      a.text_array(['a', None, 'c'], large=True)], names=['i', 'b', 's'])\n"
        "print('pandas' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
