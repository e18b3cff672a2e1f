"""Set-based validation of metering lines in DuckDB SQL, generated from the pydantic contract.

``contracts.events.MeteringEvent`` is the source of truth. This module walks its fields
(type, required/optional, ``ge``, ``min_length``/``max_length``, ``max_digits``/``decimal_places``,
enum values, nested models) and turns them into one SQL query that types and checks every line
of a batch at once; nothing here names a field twice. ``tests/ingest/test_loader.py`` feeds the
same lines to pydantic and to this SQL and checks that they agree.

How a line is read (all inside DuckDB, three parses of the line text):

1. ``json_valid(raw)``; invalid lines stop here (``invalid_json``).
2. ``json_type(raw, [paths])``: the JSON type of the root and of every contract field, in one
   parse. This tells a missing field from a ``null``, a number from a numeric string, a boolean
   from a number (a typed read alone cannot).
3. ``from_json(raw, <typed struct>)``: strings as VARCHAR; integers as DECIMAL(38,18); costs as
   DECIMAL(38, 38 - whole digits) i.e. DECIMAL(38,28). DuckDB parses numbers for a DECIMAL target
   from the number's text, never through a double, so ``0.1`` stays 0.1 and a cost with 11
   decimals is seen to have 11 (``json_extract`` would not do: it re-prints numbers from a double,
   e.g. ``1234567890.1234567890`` becomes ``1234567890.1234567``).

Then one CASE expression picks the first failing check (in contract field order) and gives the
line a ``reason`` (``"<code>: <human message>"``) and a ``field`` (dotted path).

The loader runs that (``validation_sql``) only for the lines the fast path (``fast_sql``) cannot
vouch for. The fast path reads the same line with the same json_valid, json_type and from_json
(integers as BIGINT instead of DECIMAL) and, instead of the CASE over every check, evaluates one
conjunction per field that is true only for a field that is absent where allowed or present in
its plain form (``_clean_condition``: e.g. a count that is a plain non-negative integer literal;
``5.0``, ``"5"`` or any ``units``/``payload`` object go to the full validation). Its output
columns for a clean line are the ones ``validation_sql`` gives; ``tests/ingest/test_loader.py``
loads the same lines both ways and compares every stored row.

Rules that are deliberately stricter than pydantic's lax mode (SPEC §1 wins; documented here
and asserted as known divergences in the agreement test):

* ``provider`` and ``model`` are required for AI event types (completion, image, audio, video);
  the model cannot express this cross-field rule.
* booleans are not integers (pydantic accepts ``true`` as 1).
* timestamps must be strings ``YYYY-MM-DD[Tt ]HH:MM[:SS[.fff]](Z|±HH:MM|±HHMM)``; pydantic also
  accepts unix epoch numbers, which are ambiguous (seconds? milliseconds?) and rejected here.
* integer fields must fit a signed 64-bit integer (the warehouse column is BIGINT), and so must
  inputTokenCount + outputTokenCount when totalTokenCount is absent (it becomes total_tokens).
* ``units`` values and the numeric entries of ``payload`` (used as units when ``units`` is
  absent, SPEC §1) must be >= 0 with at most COST_SCALE decimals: they are billed quantities and
  are never rounded silently.
* integer-valued numeric strings are read as decimals, so ``"1e3"`` is 1000 here (pydantic's
  int parser rejects it).

Known limits: DuckDB's JSON parser accepts trailing commas and NaN/Infinity literals (NaN in a
numeric field is still rejected); with duplicate keys the first occurrence wins (Python's json
keeps the last); digits beyond the 28th decimal of a cost or the 18th of a count/unit are rounded
by the DECIMAL reader before the scale check sees them (no exporter writes such numbers; a float
printed by any language has at most 17 significant digits).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from annotated_types import Ge, MaxLen, MinLen
from pydantic import BaseModel

from contracts.events import AI_EVENT_TYPES, COST_SCALE, MAX_FUTURE_SKEW_HOURS, MeteringEvent

# Reason codes (the part of `reason` before the colon).
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NEGATIVE_VALUE = "negative_value"
INVALID_TIMESTAMP = "invalid_timestamp"
FUTURE_REQUEST_TIME = "future_request_time"
INVALID_EVENT_TYPE = "invalid_event_type"
TOO_MANY_DECIMALS = "too_many_decimals"
TRANSACTION_ID_TOO_LONG = "transaction_id_too_long"
DUPLICATE_CONFLICT = "duplicate_conflict"
UNREADABLE_FILE = "unreadable_file"

REASON_CODES = (
    INVALID_UTF8, INVALID_JSON, NOT_AN_OBJECT, MISSING_FIELD, WRONG_TYPE, NEGATIVE_VALUE, INVALID_TIMESTAMP,
    FUTURE_REQUEST_TIME, INVALID_EVENT_TYPE, TOO_MANY_DECIMALS, TRANSACTION_ID_TOO_LONG, DUPLICATE_CONFLICT,
    UNREADABLE_FILE,
)

# Generic events carry their custom quantities in `payload` instead of `units` (SPEC §1).
UNITS_FIELD = "units"
UNITS_FALLBACK_FIELD = "payload"
TRANSACTION_ID_FIELD = "transactionId"
EVENT_TYPE_FIELD = "eventType"
REQUEST_TIME_FIELD = "requestTime"
AI_REQUIRED_FIELDS = ("provider", "model")

# Integer fields are read at this scale so that 5.0 / "5" are seen as integral and 5.5 is not.
INTEGER_READ_SCALE = 18
BIGINT_MAX = 2**63 - 1
# Units have no scale in the contract; they are quantities, held to the cost scale (see docstring).
UNIT_SCALE = COST_SCALE

# RFC 3339 (plus what pydantic also accepts: lower-case t/z, a space, no seconds, ±HHMM).
TIMESTAMP_PATTERN = (
    # RFC 3339 offsets run -23:59..+23:59 (DuckDB would read +24:00 as a day's shift; found by fuzzing)
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])"
)

_NUMBER_TYPES = "('UBIGINT', 'BIGINT', 'DOUBLE', 'VARCHAR')"  # a JSON number or a numeric string


@dataclass(frozen=True)
class FieldRule:
    """One contract field as the SQL sees it, derived from the pydantic model."""

    path: tuple[str, ...]
    kind: str  # string | integer | decimal | timestamp | enum | object | number_map | json_object
    required: bool
    nullable: bool  # JSON null allowed (Optional in the model)
    ge: Any = None
    min_length: int | None = None
    max_length: int | None = None
    max_digits: int | None = None
    decimal_places: int | None = None
    enum_values: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def json_path(self) -> str:
        return "$." + ".".join(self.path)

    @property
    def column(self) -> str:
        """SQL-safe alias of this field's JSON type column."""
        return "t_" + "__".join(self.path)

    @property
    def whole_digits(self) -> int | None:
        if self.max_digits is None or self.decimal_places is None:
            return None
        return self.max_digits - self.decimal_places

    @property
    def read_scale(self) -> int:
        """DECIMAL(38, s) used to read the field: exact for every value the contract allows."""
        if self.kind == "decimal" and self.whole_digits is not None:
            return 38 - self.whole_digits
        return INTEGER_READ_SCALE


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(annotation)):
            return args[0], True
    return annotation, False


def contract_rules(model: type[BaseModel] = MeteringEvent, prefix: tuple[str, ...] = ()) -> list[FieldRule]:
    """Flatten a pydantic model into FieldRules (nested models become dotted paths)."""
    rules: list[FieldRule] = []
    for name, info in model.model_fields.items():
        annotation, nullable = _unwrap_optional(info.annotation)
        path = (*prefix, info.alias or name)
        ge = min_length = max_length = max_digits = decimal_places = None
        for item in info.metadata:
            if isinstance(item, Ge):
                ge = item.ge
            elif isinstance(item, MinLen):
                min_length = item.min_length
            elif isinstance(item, MaxLen):
                max_length = item.max_length
            else:
                max_digits = getattr(item, "max_digits", None) or max_digits
                decimal_places = getattr(item, "decimal_places", None) or decimal_places
        enum_values: tuple[str, ...] = ()
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            kind = "object"
        elif isinstance(annotation, type) and issubclass(annotation, Enum):
            kind = "enum"
            enum_values = tuple(str(member.value) for member in annotation)
        elif annotation is str:
            kind = "string"
        elif annotation is bool:
            raise TypeError(f"{name}: boolean fields are not supported by the SQL validation yet")
        elif annotation is int:
            kind = "integer"
        elif annotation is Decimal:
            kind = "decimal"
        elif annotation is datetime:
            kind = "timestamp"
        elif origin is dict:
            _key, value = typing.get_args(annotation)
            kind = "number_map" if value is Decimal else "json_object"
        else:
            raise TypeError(f"{name}: annotation {annotation!r} has no SQL validation rule")
        rules.append(
            FieldRule(
                path=path, kind=kind, required=info.is_required(), nullable=nullable, ge=ge,
                min_length=min_length, max_length=max_length, max_digits=max_digits,
                decimal_places=decimal_places, enum_values=enum_values,
            )
        )
        if kind == "object":
            rules.extend(contract_rules(annotation, path))
    return rules


RULES: list[FieldRule] = contract_rules()
RULES_BY_NAME: dict[str, FieldRule] = {rule.name: rule for rule in RULES}
RULE_COLUMNS: dict[tuple[str, ...], str] = {rule.path: rule.column for rule in RULES}


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _typed_structure(rules: list[FieldRule], fast: bool = False) -> dict[str, Any]:
    """The from_json structure: what DuckDB should read each field as.

    ``fast``: the fast path's structure, where integers are BIGINT (it takes only plain non-negative
    integer literals, for which that read is exact; see ``fast_sql``).
    """
    structure: dict[str, Any] = {}
    for rule in rules:
        node = structure
        for part in rule.path[:-1]:
            node = node.setdefault(part, {})
        leaf = rule.path[-1]
        if rule.kind == "object":
            node.setdefault(leaf, {})
        elif rule.kind in ("string", "enum", "timestamp"):
            node[leaf] = "VARCHAR"
        elif rule.kind == "integer" and fast:
            node[leaf] = "BIGINT"
        elif rule.kind in ("integer", "decimal"):
            node[leaf] = f"DECIMAL(38,{rule.read_scale})"
        # maps (units, payload) are read separately, only for the lines that have them: a MAP in
        # this struct costs every line ~40 % more parse time
    return structure


def _value(rule: FieldRule) -> str:
    """The column holding the field's typed value (see ``_read_columns``)."""
    return "v_" + "__".join(rule.path)


def _read_columns(rules: list[FieldRule], fast: bool = False) -> list[str]:
    """Flatten the from_json struct ``v`` into one column per readable field (read once)."""
    columns = []
    readable = _typed_structure(rules, fast)
    for rule in rules:
        node: Any = readable
        for part in rule.path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or isinstance(node, dict):
            continue
        expression = "v"
        for part in rule.path:
            expression = f"struct_extract({expression}, {_sql_string(part)})"
        columns.append(f"{expression} as {_value(rule)}")
    return columns


@dataclass(frozen=True)
class Check:
    condition: str
    code: str
    message: str
    field: str


def _describe(rule: FieldRule) -> str:
    if rule.kind == "integer":
        return f"an integer >= {rule.ge}" if rule.ge is not None else "an integer"
    if rule.kind == "decimal":
        text = "a decimal number (JSON number or numeric string)"
        if rule.ge is not None:
            text += f" >= {rule.ge}"
        if rule.whole_digits is not None:
            text += f" with at most {rule.whole_digits} digits before the decimal point"
        return text
    if rule.kind == "string":
        return "a non-empty string" if rule.min_length else "a string"
    if rule.kind == "timestamp":
        return "an RFC 3339 timestamp string with an offset or Z"
    if rule.kind == "enum":
        return "one of " + ", ".join(rule.enum_values)
    if rule.kind == "number_map":
        return "an object of numbers >= 0"
    return "an object"


def _checks_for(rule: FieldRule) -> list[Check]:
    t = rule.column
    v = _value(rule)
    name = rule.name
    desc = _describe(rule)
    wrong = WRONG_TYPE
    if rule.kind == "timestamp":
        wrong = INVALID_TIMESTAMP
    elif rule.kind == "enum" and name == EVENT_TYPE_FIELD:
        wrong = INVALID_EVENT_TYPE
    checks: list[Check] = []
    if rule.required:
        # a required field of a nested object is only required when that object is given
        parent = f"{RULE_COLUMNS[rule.path[:-1]]} = 'OBJECT' and " if len(rule.path) > 1 else ""
        checks.append(Check(f"{parent}({t} is null or {t} = 'NULL')", MISSING_FIELD, f"{name} is required", name))
    elif not rule.nullable:
        checks.append(Check(f"{t} = 'NULL'", wrong, f"{name} must be {desc}, not null", name))
    present = f"{t} is not null and {t} <> 'NULL'"
    if rule.kind == "string":
        checks.append(Check(f"{present} and {t} <> 'VARCHAR'", WRONG_TYPE, f"{name} must be {desc}", name))
        if rule.min_length:
            checks.append(Check(f"{t} = 'VARCHAR' and length({v}) < {rule.min_length}", WRONG_TYPE,
                                f"{name} must be {desc}", name))
        if rule.max_length is not None:
            code = TRANSACTION_ID_TOO_LONG if name == TRANSACTION_ID_FIELD else WRONG_TYPE
            checks.append(Check(f"{t} = 'VARCHAR' and length({v}) > {rule.max_length}", code,
                                f"{name} must be at most {rule.max_length} characters", name))
    elif rule.kind == "enum":
        values = ", ".join(_sql_string(value) for value in rule.enum_values)
        checks.append(Check(f"{present} and ({t} <> 'VARCHAR' or {v} not in ({values}))", wrong,
                            f"{name} must be {desc}", name))
    elif rule.kind == "timestamp":
        checks.append(Check(f"{present} and ({t} <> 'VARCHAR' or ts_{rule.path[-1]} is null)", wrong,
                            f"{name} must be {desc}", name))
    elif rule.kind in ("integer", "decimal"):
        checks.append(Check(f"{present} and ({t} not in {_NUMBER_TYPES} or {v} is null)", WRONG_TYPE,
                            f"{name} must be {desc}", name))
        if rule.kind == "integer":
            checks.append(Check(f"{present} and {v} <> trunc({v})", WRONG_TYPE, f"{name} must be {desc}", name))
        if rule.ge is not None:
            checks.append(Check(f"{present} and {v} < {rule.ge}", NEGATIVE_VALUE, f"{name} must be >= {rule.ge}",
                                name))
        if rule.kind == "integer":
            checks.append(Check(f"{present} and {v} > {BIGINT_MAX}", WRONG_TYPE,
                                f"{name} must be {desc} that fits in 64 bits", name))
        if rule.decimal_places is not None:
            checks.append(Check(f"{present} and {v} <> round({v}, {rule.decimal_places})", TOO_MANY_DECIMALS,
                                f"{name} has more than {rule.decimal_places} decimal places", name))
    elif rule.kind == "object":
        checks.append(Check(f"{present} and {t} <> 'OBJECT'", WRONG_TYPE, f"{name} must be an object", name))
    elif rule.kind == "json_object":
        checks.append(Check(f"{present} and {t} <> 'OBJECT'", WRONG_TYPE, f"{name} must be an object", name))
    elif rule.kind == "number_map":
        checks.append(Check(f"{present} and {t} <> 'OBJECT'", WRONG_TYPE, f"{name} must be {desc}", name))
        checks.extend(_unit_checks(name, f"{t} = 'OBJECT'", strings_allowed=True))
    if name == UNITS_FALLBACK_FIELD:
        units_t = RULES_BY_NAME[UNITS_FIELD].column
        checks.extend(_unit_checks(name, f"{t} = 'OBJECT' and ({units_t} is null or {units_t} = 'NULL')",
                                   strings_allowed=False))
    return checks


def _unit_checks(name: str, applies: str, strings_allowed: bool) -> list[Check]:
    """`units` (numbers or numeric strings) and the numbers in `payload` are billed quantities."""
    typed, texts = f"{name}_d", f"{name}_j"
    if strings_allowed:
        # every value must be a number or a numeric string; duplicate keys make the map NULL
        bad = (
            f"{typed} is null or {texts} is null or cardinality({typed}) <> cardinality({texts}) or "
            f"list_bool_or(list_transform(range(1, len(map_values({texts})) + 1), lambda i: "
            f"map_values({texts})[i] is null or left(map_values({texts})[i], 1) not in "
            f"('-','0','1','2','3','4','5','6','7','8','9','\"') or map_values({typed})[i] is null))"
        )
        wrong = [Check(f"{applies} and ({bad})", WRONG_TYPE, f"{name} must be an object of numbers >= 0", name)]
    else:
        bad = f"{typed} is null or {texts} is null"
        wrong = [Check(f"{applies} and ({bad})", WRONG_TYPE, f"{name} must be an object with unique keys", name)]
    numbers = f"mh_unit_numbers({texts}, {typed}, {str(strings_allowed).lower()})"
    return [
        *wrong,
        Check(f"{applies} and list_bool_or(list_transform({numbers}, lambda x: x < 0))", NEGATIVE_VALUE,
              f"{name} values must be >= 0", name),
        Check(f"{applies} and list_bool_or(list_transform({numbers}, lambda x: x <> round(x, {UNIT_SCALE})))",
              TOO_MANY_DECIMALS, f"{name} values have more than {UNIT_SCALE} decimal places", name),
    ]


MACROS = f"""
create or replace temp macro mh_unit_numbers(texts, typed, strings_allowed) as
    list_transform(
        list_filter(range(1, coalesce(len(map_values(texts)), 0) + 1), lambda i:
            map_values(texts)[i] is not null and map_values(typed)[i] is not null
            and (left(map_values(texts)[i], 1) in ('-','0','1','2','3','4','5','6','7','8','9')
                 or (strings_allowed and left(map_values(texts)[i], 1) = '"'))),
        lambda i: map_values(typed)[i]);
create or replace temp macro mh_unit_keys(texts, typed, strings_allowed) as
    list_transform(
        list_filter(range(1, coalesce(len(map_values(texts)), 0) + 1), lambda i:
            map_values(texts)[i] is not null and map_values(typed)[i] is not null
            and (left(map_values(texts)[i], 1) in ('-','0','1','2','3','4','5','6','7','8','9')
                 or (strings_allowed and left(map_values(texts)[i], 1) = '"'))),
        lambda i: map_keys(texts)[i]);
create or replace temp macro mh_decimal_text(d) as
    case when d = trunc(d) then trunc(d)::hugeint::varchar else rtrim(d::varchar, '0') end;
create or replace temp macro mh_units_json(texts, typed, strings_allowed) as
    '{{' || array_to_string(list_transform(
        list_zip(mh_unit_keys(texts, typed, strings_allowed), mh_unit_numbers(texts, typed, strings_allowed)),
        lambda e: to_json(e[1]) || ':' || mh_decimal_text(e[2])), ',') || '}}';
create or replace temp macro mh_utc(ts_text) as
    case when regexp_full_match(ts_text, '{TIMESTAMP_PATTERN}')
              and substr(ts_text, 12, 2) < '24'
         then make_timestamp(epoch_us(try_cast(upper(ts_text) as timestamptz))) end;
"""


def install_macros(connection: Any) -> None:
    connection.execute(MACROS).fetchall()


def all_checks() -> list[Check]:
    checks: list[Check] = []
    for rule in RULES:
        checks.extend(_checks_for(rule))
    return checks + _cross_field_checks(_value)


def _cross_field_checks(value: Any) -> list[Check]:
    """Rules from SPEC §1 that the model does not express; ``value(rule)`` is the SQL of a field's value."""
    checks: list[Check] = []
    ai_types = ", ".join(sorted(_sql_string(event_type.value) for event_type in AI_EVENT_TYPES))
    event_type = value(RULES_BY_NAME[EVENT_TYPE_FIELD])
    for name in AI_REQUIRED_FIELDS:
        rule = RULES_BY_NAME[name]
        checks.append(
            Check(
                f"coalesce({event_type}, 'completion') in ({ai_types}) and ({rule.column} is null "
                f"or {rule.column} = 'NULL')",
                MISSING_FIELD, f"{name} is required for AI event types (completion, image, audio, video)", name,
            )
        )
    input_rule, output_rule = RULES_BY_NAME["inputTokenCount"], RULES_BY_NAME["outputTokenCount"]
    total_rule = RULES_BY_NAME["totalTokenCount"]
    checks.append(
        Check(
            f"({total_rule.column} is null or {total_rule.column} = 'NULL') and "
            f"coalesce({value(input_rule)}, 0) + coalesce({value(output_rule)}, 0) > {BIGINT_MAX}",
            WRONG_TYPE, "inputTokenCount + outputTokenCount must fit in 64 bits", "totalTokenCount",
        )
    )
    # the parts have passed their own checks here (< 10^whole digits, <= COST_SCALE decimals)
    cost_parts = [value(RULES_BY_NAME[name]) for name in _cost_part_names()]
    total_cost = RULES_BY_NAME["totalCost"]
    limit = 10 ** (total_cost.whole_digits or 10)
    checks.append(
        Check(
            f"{value(total_cost)} is null and "
            + " + ".join(f"coalesce({part}::decimal(38, {COST_SCALE}), 0)" for part in cost_parts)
            + f" >= {limit}",
            WRONG_TYPE, f"the sum of the cost parts must be below {limit}", "totalCost",
        )
    )
    checks.append(
        Check(
            f"ts_{REQUEST_TIME_FIELD} > as_of_limit", FUTURE_REQUEST_TIME,
            f"requestTime is more than {MAX_FUTURE_SKEW_HOURS} hours after the load's as-of time",
            REQUEST_TIME_FIELD,
        )
    )
    return checks


def _cost_part_names() -> tuple[str, ...]:
    from contracts.events import COST_PART_FIELDS

    return COST_PART_FIELDS


PRE_REASON_INDEX = -3  # reason computed before SQL (invalid UTF-8), in column pre_reason
INVALID_JSON_INDEX = -2
NOT_AN_OBJECT_INDEX = -1


def reason_table(checks: list[Check] | None = None) -> list[tuple[int, str, str | None]]:
    """(check_index, reason text, field) of every way a line can fail validation."""
    rows: list[tuple[int, str, str | None]] = [
        (INVALID_JSON_INDEX, f"{INVALID_JSON}: line is not valid JSON", None),
        (NOT_AN_OBJECT_INDEX, f"{NOT_AN_OBJECT}: line is JSON but not an object", None),
    ]
    for index, check in enumerate(checks if checks is not None else all_checks()):
        rows.append((index + 1, f"{check.code}: {check.message}", check.field))
    return rows


def _timestamp_literal(value: datetime) -> str:
    return f"timestamp '{value.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


# raw.events columns both validation queries (full and fast) select the same way from the
# contract: (column, field, read as a token count rather than a plain value)
_MODEL_AND_TOKEN_COLUMNS = (
    ("provider", "provider", False), ("model", "model", False),
    ("input_tokens", "inputTokenCount", True), ("output_tokens", "outputTokenCount", True),
    ("reasoning_tokens", "reasoningTokenCount", True), ("cache_read_tokens", "cacheReadTokenCount", True),
    ("cache_creation_tokens", "cacheCreationTokenCount", True),
)
_WHO_COLUMNS = tuple((column, field, False) for column, field in (
    ("organization_id", "organizationId"), ("organization_name", "organizationName"),
    ("product_id", "productId"), ("product_name", "productName"), ("subscriber_id", "subscriber.id"),
    ("subscriber_email", "subscriber.email"), ("credential_name", "subscriber.credential.name"),
    ("credential_value", "subscriber.credential.value"), ("subscription_id", "subscriptionId"),
))


def _select_list(columns: tuple[tuple[str, str, bool], ...], val: Any, count: Any) -> str:
    return ",\n    ".join(f"{(count if is_count else val)(field)} as {column}" for column, field, is_count in columns)


def _parse_ctes(source: str, structure: dict[str, Any]) -> str:
    """The CTEs both queries start with: the non-blank lines, then
    json_valid, json_type over the contract's paths and from_json into ``structure``."""
    paths = ", ".join(_sql_string(rule.json_path) for rule in RULES)
    return f"""
with lines as (
    select file_order, line_number, raw, pre_reason from {source} where not blank
), parsed as (
    select *, pre_reason is null and json_valid(raw) as is_json from lines
), typed as (
    select *,
        case when is_json then json_type(raw, ['$', {paths}]) end as t,
        case when is_json then from_json(raw, '{json.dumps(structure, separators=(",", ":"))}') end as v
    from parsed
)"""  # noqa: S608 - generated from the contract


def _type_columns() -> str:
    """Each field's JSON type as a column (``t[1]`` is the root's)."""
    return ",\n        ".join(f"t[{index + 2}] as {rule.column}" for index, rule in enumerate(RULES))


def _timestamp_columns() -> str:
    """Each timestamp field parsed to naive UTC (null when it is not a string or not a time)."""
    return ",\n        ".join(
        f"case when {rule.column} = 'VARCHAR' then mh_utc({_value(rule)}) end as ts_{rule.path[-1]}"
        for rule in RULES if rule.kind == "timestamp"
    )


def validation_sql(source: str, as_of_utc: datetime) -> str:
    """A SELECT over ``source`` (columns file_order, line_number, raw, blank, pre_reason) giving,
    for every non-blank line, either ``reason``/``field`` or the typed raw.events columns (the
    event's ``attributes_json`` is ``raw`` itself: exact, nothing re-printed).

    ``as_of_utc`` is a naive UTC datetime. The caller must have run ``install_macros``.
    """
    read_columns = ",\n        ".join(_read_columns(RULES))
    unit_maps = json.dumps({UNITS_FIELD: "MAP(VARCHAR, JSON)", UNITS_FALLBACK_FIELD: "MAP(VARCHAR, JSON)"})
    unit_numbers = json.dumps({name: f"MAP(VARCHAR, DECIMAL(38,{INTEGER_READ_SCALE}))"
                               for name in (UNITS_FIELD, UNITS_FALLBACK_FIELD)})
    units_t = RULES_BY_NAME[UNITS_FIELD].column
    payload_t = RULES_BY_NAME[UNITS_FALLBACK_FIELD].column
    checks = all_checks()
    whens = "\n            ".join(f"when {check.condition} then {index + 1}" for index, check in enumerate(checks))
    reasons = ",\n        ".join(
        f"({index}, {_sql_string(reason)}, {_sql_string(field) if field else 'null'})"
        for index, reason, field in reason_table(checks)
    )
    as_of_limit = _timestamp_literal(as_of_utc) + f" + interval {MAX_FUTURE_SKEW_HOURS} hour"

    # typed outputs only for accepted lines: a rejected line's values may not fit the columns
    def val(name: str) -> str:
        return f"case when check_index is null then {_value(RULES_BY_NAME[name])} end"

    def count(name: str) -> str:
        return f"coalesce({val(name)}, 0)::bigint"

    def cost(name: str) -> str:
        return f"({val(name)})::decimal(20, {COST_SCALE})"

    cost_parts = _cost_part_names()
    part_present = " or ".join(f"{val(name)} is not null" for name in cost_parts)
    part_sum = " + ".join(f"coalesce({cost(name)}, 0)" for name in cost_parts)
    return f"""{_parse_ctes(source, _typed_structure(RULES))}, flat as (
    select *,
        t[1] as t_root,
        {_type_columns()},
        {read_columns}
    from typed
), enriched as (
    select *,
        {_timestamp_columns()},
        {as_of_limit} as as_of_limit,
        case when {units_t} = 'OBJECT' or {payload_t} = 'OBJECT' then from_json(raw, '{unit_maps}') end as unit_maps,
        case when {units_t} = 'OBJECT' or {payload_t} = 'OBJECT' then from_json(raw, '{unit_numbers}') end
            as unit_numbers
    from flat
), checked as (
    select *,
        struct_extract(unit_maps, '{UNITS_FIELD}') as {UNITS_FIELD}_j,
        struct_extract(unit_numbers, '{UNITS_FIELD}') as {UNITS_FIELD}_d,
        struct_extract(unit_maps, '{UNITS_FALLBACK_FIELD}') as {UNITS_FALLBACK_FIELD}_j,
        struct_extract(unit_numbers, '{UNITS_FALLBACK_FIELD}') as {UNITS_FALLBACK_FIELD}_d
    from enriched
), verdict as (
    select *,
        case when pre_reason is not null then {PRE_REASON_INDEX}
            when not is_json then {INVALID_JSON_INDEX}
            when t_root <> 'OBJECT' then {NOT_AN_OBJECT_INDEX}
            {whens}
            else null end as check_index
    from checked
)
select
    file_order,
    line_number,
    raw,
    coalesce(pre_reason, reasons.reason) as reason,
    reasons.field,
    {val(TRANSACTION_ID_FIELD)} as transaction_id,
    coalesce({val(EVENT_TYPE_FIELD)}, 'completion') as event_type,
    case when check_index is null then ts_requestTime end as request_time,
    case when check_index is null then ts_responseTime end as response_time,
    {_select_list(_MODEL_AND_TOKEN_COLUMNS, val, count)},
    coalesce(({val("totalTokenCount")})::bigint, ({count("inputTokenCount")} + {count("outputTokenCount")}))
        as total_tokens,
    coalesce({cost("totalCost")}, case when {part_present} then {part_sum} end) as reported_cost_usd,
    {_select_list(_WHO_COLUMNS, val, count)},
    case when check_index is not null then null
         when {units_t} = 'OBJECT' then mh_units_json({UNITS_FIELD}_j, {UNITS_FIELD}_d, true)
         when {payload_t} = 'OBJECT' then mh_units_json({UNITS_FALLBACK_FIELD}_j, {UNITS_FALLBACK_FIELD}_d, false)
    end as units_json
from verdict
left join (values
        {reasons}
    ) reasons(reason_index, reason, field) on reasons.reason_index = verdict.check_index
"""  # noqa: S608 - every interpolated piece is generated from the contract or formatted here


# ---------------------------------------------------------------------------------------------
# the fast path: most lines are clean, and a clean line needs far less than the checks above


def _cost_column(rule: FieldRule) -> str:
    """The fast path's column holding a decimal field at its contract scale."""
    return "c_" + "__".join(rule.path)


def _fast_value(rule: FieldRule) -> str:
    """A field's value in the fast path's columns, for the cross-field checks."""
    if rule.kind == "integer":
        return f"{_value(rule)}::hugeint"  # a sum of two BIGINTs must not overflow while it is checked
    if rule.kind == "decimal" and rule.decimal_places is not None:
        return _cost_column(rule)
    return _value(rule)


def _clean_condition(rule: FieldRule) -> str:
    """True only when none of ``_checks_for(rule)`` can fire: the field is absent where that is
    allowed, or present in its plain form. Valid but unusual forms (numeric strings or ``5.0`` for
    a count, ``units`` and ``payload`` objects, ...) are left to the full validation: false here."""
    t, v = rule.column, _value(rule)
    if rule.kind == "string":
        valid = [f"{t} = 'VARCHAR'"]
        if rule.min_length:
            valid.append(f"length({v}) >= {rule.min_length}")
        if rule.max_length is not None:
            valid.append(f"length({v}) <= {rule.max_length}")
    elif rule.kind == "enum":
        values = ", ".join(_sql_string(value) for value in rule.enum_values)
        valid = [f"{t} = 'VARCHAR'", f"{v} in ({values})"]
    elif rule.kind == "timestamp":
        valid = [f"{t} = 'VARCHAR'", f"ts_{rule.path[-1]} is not null"]
    elif rule.kind == "integer":
        # a non-negative integer literal: integral and >= 0 by its JSON type; the fast structure
        # reads it as BIGINT, NULL when it does not fit (no 128-bit decimal arithmetic per line)
        valid = [f"{t} = 'UBIGINT'", f"{v} is not null"]
        if rule.ge is not None:
            valid.append(f"{v} >= {rule.ge}")
    elif rule.kind == "decimal":
        valid = [f"{t} in {_NUMBER_TYPES}", f"{v} is not null"]
        if rule.ge is not None:
            valid.append(f"{v} >= {rule.ge}")
        if rule.decimal_places is not None:
            valid.append(f"{v} = {_cost_column(rule)}")  # no digits beyond the contract's scale
    elif rule.kind in ("object", "json_object") and rule.name != UNITS_FALLBACK_FIELD:
        valid = [f"{t} = 'OBJECT'"]
    else:
        valid = ["false"]  # units, and payload (units may come from it): the full validation
    absent: list[str] = []
    if not rule.required:
        absent.append(f"{t} is null")
        if rule.nullable:
            absent.append(f"{t} = 'NULL'")
    elif len(rule.path) > 1:
        absent.append(f"coalesce({RULE_COLUMNS[rule.path[:-1]]}, '') <> 'OBJECT'")  # required only in its object
    return "(" + " or ".join([*absent, "(" + " and ".join(valid) + ")"]) + ")"


def fast_sql(source: str, as_of_utc: datetime) -> str:
    """The fast path over ``source`` (columns file_order, line_number, raw, blank, pre_reason).

    One row per non-blank line with ``clean`` and the raw.events columns. ``clean`` is true only
    when no check of ``validation_sql`` can fail for the line, decided by one conjunction of cheap
    tests per field (``_clean_condition``) instead of the CASE over every check; its typed columns
    are then the ones ``validation_sql`` would give. A line that is not clean is not necessarily
    bad: the caller runs ``validation_sql`` over those lines (few) for their reason or values.
    The caller must have run ``install_macros``.
    """
    read_columns = ",\n        ".join(_read_columns(RULES, fast=True))
    decimal_rules = [rule for rule in RULES if rule.kind == "decimal" and rule.decimal_places is not None]
    cost_columns = ",\n        ".join(
        f"{_value(rule)}::decimal(38, {rule.decimal_places}) as {_cost_column(rule)}" for rule in decimal_rules
    )
    as_of_limit = _timestamp_literal(as_of_utc) + f" + interval {MAX_FUTURE_SKEW_HOURS} hour"
    clean = "\n            and ".join(
        ["t_root = 'OBJECT'"]
        + [_clean_condition(rule) for rule in RULES]
        + [f"not coalesce({check.condition}, false)" for check in _cross_field_checks(_fast_value)]
    )

    def val(name: str) -> str:
        return _value(RULES_BY_NAME[name])

    def count(name: str) -> str:
        return f"coalesce({val(name)}, 0)"

    cost_parts = [RULES_BY_NAME[name] for name in _cost_part_names()]
    part_present = " or ".join(f"{_cost_column(rule)} is not null" for rule in cost_parts)
    part_sum = " + ".join(f"coalesce({_cost_column(rule)}, 0)" for rule in cost_parts)
    return f"""{_parse_ctes(source, _typed_structure(RULES, fast=True))}, flat as (
    select file_order, line_number, raw, pre_reason,
        t[1] as t_root,
        {_type_columns()},
        {read_columns}
    from typed
), enriched as (
    select *,
        {_timestamp_columns()},
        {cost_columns},
        {as_of_limit} as as_of_limit
    from flat
), judged as (
    select *,
        coalesce(
            {clean},
            false) as clean
    from enriched
)
select
    file_order,
    line_number,
    raw,
    pre_reason,
    clean,
    null::varchar as reason,
    null::varchar as field,
    {val(TRANSACTION_ID_FIELD)} as transaction_id,
    coalesce({val(EVENT_TYPE_FIELD)}, 'completion') as event_type,
    ts_requestTime as request_time,
    ts_responseTime as response_time,
    {_select_list(_MODEL_AND_TOKEN_COLUMNS, val, count)},
    case when clean then coalesce({val("totalTokenCount")}, {count("inputTokenCount")} + {count("outputTokenCount")})
        end as total_tokens,
    coalesce({_cost_column(RULES_BY_NAME["totalCost"])}, case when {part_present} then {part_sum} end)
        as reported_cost_usd,
    {_select_list(_WHO_COLUMNS, val, count)},
    null::varchar as units_json
from judged
"""  # noqa: S608 - every interpolated piece is generated from the contract or formatted here
