"""Stand-ins for dbt's ``dbt`` and ``adapter`` Jinja objects, for sqlfluff only.

sqlfluff lints the models with its plain jinja templater (dbt/.sqlfluff: no database, no dbt
compile). These objects render the DuckDB flavour of each cross-database and dispatched macro
closely enough for the SQL to parse; dbt itself always renders the real macros.
"""

from __future__ import annotations

from typing import Any


class _Dbt:
    def type_string(self) -> str:
        return "varchar"

    def type_timestamp(self) -> str:
        return "timestamp"

    def type_bigint(self) -> str:
        return "bigint"

    def type_int(self) -> str:
        return "integer"

    def concat(self, fields: list[str]) -> str:
        return " || ".join(fields)

    def right(self, string_text: str, length_expression: Any) -> str:
        return f"right({string_text}, {length_expression})"

    def safe_cast(self, field: str, type_: str) -> str:
        return f"try_cast({field} as {type_})"

    def datediff(self, first_date: str, second_date: str, datepart: str) -> str:
        return f"date_diff('{datepart}', {first_date}, {second_date})"

    def date_trunc(self, datepart: str, date: str) -> str:
        return f"date_trunc('{datepart}', {date})"


def _round_half_even(expression: str, scale: Any) -> str:
    if isinstance(scale, int):
        return f"round_even({expression}, {scale})"
    return f"case {scale} when 2 then cast(round_even({expression}, 2) as decimal(38, 4)) end"


def _sql_literal(value: Any) -> str:
    return "null" if value is None else "'" + str(value).replace("'", "''") + "'"


_DISPATCHED = {
    "round_half_even": _round_half_even,
    "divide_half_even": lambda n, d, s: f"round_even(cast({n} as decimal(38, 10)) / cast({d} as decimal(38, 10)), {s})",
    "json_extract_text": lambda column, field: f"json_extract_string({column}, '$.{field}')",
    "format_timestamp": lambda expression: f"strftime({expression}, '%Y-%m-%dT%H:%M:%S')",
    "sql_literal": _sql_literal,
    "charge_product": lambda quantity, rate: f"cast({quantity} as decimal(21, 10)) * cast({rate} as decimal(17, 12))",
    "register_lake_sources": lambda: "",
    "epoch_microseconds": lambda expression: f"epoch_us({expression})",
    "integer_divide": lambda numerator, denominator: f"({numerator}) // ({denominator})",
    "series_values": lambda start, stop: f"unnest(generate_series({start}, {stop}))",
}


class _Adapter:
    def dispatch(self, macro_name: str, macro_namespace: str | None = None) -> Any:
        return _DISPATCHED[macro_name]


dbt = _Dbt()
adapter = _Adapter()


class _Target:
    type = "duckdb"


target = _Target()
