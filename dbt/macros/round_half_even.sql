{#
    Round a DECIMAL expression half-even (banker's rounding), the same rule as Python's
    ROUND_HALF_EVEN in dagster_project.lib.money.round_money.

    DuckDB's round() and its casts round half away from zero, so an amount must never be cast to
    a smaller scale before it went through this macro.

    `scale` is either a Python int (a literal scale) or a SQL expression (a column such as
    minor_units, varying per row). Rounding functions need a literal scale to keep a DECIMAL result,
    so a per-row scale becomes a CASE over the scales currencies use (0..4). Every branch is cast to
    decimal(38, 4): without it DuckDB unifies the branches' types to the smallest scale and silently
    drops digits. The cast only widens the scale of an already rounded value, so it is exact.
    An unsupported scale gives null, which the not_null tests on amounts turn into a failure.
#}
{% macro round_half_even(expression, scale) -%}
    {{ return(adapter.dispatch('round_half_even', 'meterhouse')(expression, scale)) }}
{%- endmacro %}

{% macro default__round_half_even(expression, scale) -%}
    {{ round_half_even_with('bround', expression, scale) }}
{%- endmacro %}

{% macro spark__round_half_even(expression, scale) -%}
    {{ round_half_even_with('bround', expression, scale) }}
{%- endmacro %}

{% macro duckdb__round_half_even(expression, scale) -%}
    {{ round_half_even_with('round_even', expression, scale) }}
{%- endmacro %}

{% macro round_half_even_with(function_name, expression, scale) -%}
    {%- if scale is number -%}
        {{ function_name }}({{ expression }}, {{ scale }})
    {%- else -%}
        case {{ scale }}
            {%- for literal_scale in range(0, 5) %}
            when {{ literal_scale }} then cast({{ function_name }}({{ expression }}, {{ literal_scale }}) as decimal(38, 4))
            {%- endfor %}
        end
    {%- endif -%}
{%- endmacro %}
