{#
    `unique` for an append-only, load-stamped table, without rescanning the history: the values of
    the loads not rated yet (macros/rated_loads.sql) must be unique among themselves and absent
    from every rated load. The rated loads passed this test when they were new and never change
    (rows are only appended; a rebuild empties the list of rated loads), so together that is
    uniqueness over the whole table. With no load rated it is dbt's `unique`. Reports each
    offending value once. A rated load that has since gained or lost rows counts as not rated.
#}
{% test unique_across_loads(model, column_name) %}

    {% set rated = rated_loads_relation() %}
    {% if rated is none %}

        -- no load rated: every value is new
        select {{ column_name }} as unique_value
        from {{ model }}
        group by {{ column_name }}
        having count(*) > 1

    {% else %}

        -- no CTE: DuckDB materialises a CTE read twice, and a semi-join on a materialised CTE reads
        -- every id of the history (2 s at 20 M events instead of 0.4 s)
        select distinct unique_value
        from (

            select {{ column_name }} as unique_value
            from {{ model }}
            where {{ load_not_rated('load_id', model, rated) }}
            group by {{ column_name }}
            having count(*) > 1

            union all

            select {{ column_name }} as unique_value
            from {{ model }}
            where
                {{ load_rated('load_id', model, rated) }}
                and {{ column_name }} in (
                    select {{ column_name }}
                    from {{ model }}
                    where {{ load_not_rated('load_id', model, rated) }}
                )

        ) as offending

    {% endif %}

{% endtest %}
