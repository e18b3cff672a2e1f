{#
    Incremental rating on DuckDB (dbt/DECISIONS.md, "Performance"): `billing.rated_loads` lists
    the loads a successful rating has taken in whole (attributed, tested, aggregated), with the
    number of events each had then. Python owns it (dagster_project/billing/rating_state.py): it
    is written only after a rating succeeded and emptied whenever the incremental tables are
    dropped. So the loads not in it are the ones the incremental models and data tests have to
    look at. A load that has since gained or lost rows (raw.events is append-only; only a hand
    edit does that) counts as not rated again, so it is tested and aggregated anew.

    On Spark, in a warehouse without the table, or while it is empty (a first rating, or one
    after the tables were dropped), no load counts as rated: everything is rated and tested
    whole, with the plain SQL (filtering by an empty list still costs a scan: at 20 M events the
    uniqueness test took 6.0 s that way, 3.4 s plain).
#}
{% macro rated_loads_relation() -%}
    {%- if not execute or target.type != 'duckdb' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='billing', identifier='rated_loads') -%}
    {%- if relation is none or run_query('select count(*) from ' ~ relation).columns[0].values()[0] == 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}

{#-
    Predicates on `load_id_column` of `relation`'s rows, given `rated` = rated_loads_relation()
    (looked up once by the caller, which takes the plain path when it is none): a load not rated
    as it is now, and its complement. Both are `in` a short list of loads, never `not in` or
    `not (...)`: DuckDB then filters the scan by load_id before it reads the other columns (at
    20 M events, selecting a day's rows 0.14 s instead of 2.5 s; tests/generic/
    unique_across_loads.sql 0.4 s, not 1.6 s).
-#}
{% macro load_not_rated(load_id_column, relation, rated) -%}
    {{ load_id_column }} in (
        select loads.load_id
        from (select distinct load_id from {{ relation }}) as loads
        where loads.load_id not in {{ rated_loads_as_they_are(relation, rated) }}
    )
{%- endmacro %}

{% macro load_rated(load_id_column, relation, rated) -%}
    {{ load_id_column }} in {{ rated_loads_as_they_are(relation, rated) }}
{%- endmacro %}

{#- The rated loads whose event count in `relation` is still the one recorded. -#}
{% macro rated_loads_as_they_are(relation, rated) -%}
    (
        select rated_loads.load_id
        from {{ rated }} as rated_loads
        inner join (
            select
                load_id,
                count(*) as event_count
            from {{ relation }}
            group by load_id
        ) as current_loads
            on
                rated_loads.load_id = current_loads.load_id
                and rated_loads.event_count = current_loads.event_count
    )
{%- endmacro %}

{#-
    The billed events of `int_events_attributed` an aggregate per usage period has to read: all
    of them when the model is built whole; in an incremental run, every event of the periods
    (subscription_id, period_start, period_end) that events of loads not rated yet fall in, so
    a re-aggregated period is complete and every other period keeps its rows. Renders a
    relation or a parenthesised subquery, for a `from`.
-#}
{% macro billed_events_of_periods_to_rate() -%}
    {%- set events = ref('int_events_attributed') -%}
    {%- set rated = rated_loads_relation() if is_incremental() else none -%}
    {%- if rated is none -%}
        (select * from {{ events }} where billing_status = 'billed')
    {%- else -%}
        (
            select events.*
            from {{ events }} as events
            inner join (
                select distinct
                    subscription_id,
                    period_start,
                    period_end
                from {{ events }}
                where billing_status = 'billed' and {{ load_not_rated('load_id', events, rated) }}
            ) as periods_to_rate
                on
                    events.subscription_id = periods_to_rate.subscription_id
                    and events.period_start = periods_to_rate.period_start
                    and events.period_end = periods_to_rate.period_end
            where events.billing_status = 'billed'
        )
    {%- endif -%}
{%- endmacro %}
