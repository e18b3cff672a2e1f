{#
    Join each left row to the right row of the same key whose [start, end) range holds the left
    timestamp. Ranges of one key must not overlap. The caller still checks `time < end`.

    DuckDB: an ASOF join (sort-merge, one candidate per row). A plain range join probes every
    right row of the key, and a subscription on 5-minute periods has thousands of them.
    Elsewhere: an equi-join with the range in the ON clause (Spark: add a range-join hint there).
#}
{% macro asof_left_join(relation, alias, left_key, right_key, left_time, right_start, right_end) -%}
    {{ return(adapter.dispatch('asof_left_join', 'meterhouse')(relation, alias, left_key, right_key, left_time, right_start, right_end)) }}
{%- endmacro %}

{% macro duckdb__asof_left_join(relation, alias, left_key, right_key, left_time, right_start, right_end) -%}
    asof left join {{ relation }} as {{ alias }}
        on {{ left_key }} = {{ alias }}.{{ right_key }}
        and {{ left_time }} >= {{ alias }}.{{ right_start }}
{%- endmacro %}

{% macro default__asof_left_join(relation, alias, left_key, right_key, left_time, right_start, right_end) -%}
    left join {{ relation }} as {{ alias }}
        on {{ left_key }} = {{ alias }}.{{ right_key }}
        and {{ left_time }} >= {{ alias }}.{{ right_start }}
        and {{ left_time }} < {{ alias }}.{{ right_end }}
{%- endmacro %}
