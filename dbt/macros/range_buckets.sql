{#
    The engine-specific pieces of a bucketed range join (int_events_attributed's billing period):
    whole microseconds since the epoch, integer division, and one output row per value of an
    integer series. Any monotonic integer division does: rows and ranges are bucketed alike.
#}
{% macro epoch_microseconds(expression) -%}
    {{ return(adapter.dispatch('epoch_microseconds', 'meterhouse')(expression)) }}
{%- endmacro %}

{% macro duckdb__epoch_microseconds(expression) -%}
    epoch_us({{ expression }})
{%- endmacro %}

{% macro spark__epoch_microseconds(expression) -%}
    unix_micros({{ expression }})
{%- endmacro %}

{% macro default__epoch_microseconds(expression) -%}
    cast(extract(epoch from {{ expression }}) * 1000000 as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro integer_divide(numerator, denominator) -%}
    {{ return(adapter.dispatch('integer_divide', 'meterhouse')(numerator, denominator)) }}
{%- endmacro %}

{% macro duckdb__integer_divide(numerator, denominator) -%}
    ({{ numerator }}) // ({{ denominator }})
{%- endmacro %}

{% macro spark__integer_divide(numerator, denominator) -%}
    ({{ numerator }}) div ({{ denominator }})
{%- endmacro %}

{% macro default__integer_divide(numerator, denominator) -%}
    cast(floor(({{ numerator }}) / ({{ denominator }})) as {{ dbt.type_bigint() }})
{%- endmacro %}

{#- In a select list: the row repeated once per integer from start to stop, both included. -#}
{% macro series_values(start, stop) -%}
    {{ return(adapter.dispatch('series_values', 'meterhouse')(start, stop)) }}
{%- endmacro %}

{% macro duckdb__series_values(start, stop) -%}
    unnest(generate_series({{ start }}, {{ stop }}))
{%- endmacro %}

{% macro spark__series_values(start, stop) -%}
    explode(sequence({{ start }}, {{ stop }}))
{%- endmacro %}

{% macro default__series_values(start, stop) -%}
    generate_series({{ start }}, {{ stop }})
{%- endmacro %}
