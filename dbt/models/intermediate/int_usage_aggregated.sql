{{ config(
    materialized=('incremental' if target.type == 'duckdb' else 'table'),
    incremental_strategy='delete+insert',
    unique_key=['subscription_id', 'period_start', 'period_end'],
) }}

-- Metric quantities (SPEC §3.3) per subscription, period and metric, over the billed events,
-- as a 'total' row and one 'credential' row per credential. The SQL is generated from the
-- catalog's metrics (macros/metric_definitions.sql): one branch per metric reading only its
-- product's events, with the metric's filter, element and aggregation as constant SQL.
-- Events inside the free trial are aggregated apart (trial_*): they never reach the tiers.
-- Incremental on DuckDB: only the periods that events of loads not rated yet fall in are
-- aggregated again, over all their events (macros/rated_loads.sql).
-- Each branch scans the event table itself (column scans are cheap): a CTE shared by all
-- branches would be materialized, copying the whole event table once per run.
-- Layout is not linted here: without a catalog the metric loop renders empty.
-- noqa: disable=LT02

{%- set definitions = metric_definitions(ref('stg_catalog__metrics'), ref('stg_catalog__metric_filters')) %}
{#- rendered once: it looks up the rated loads (a query), the same for every branch #}
{%- set billed_events = billed_events_of_periods_to_rate() %}

with

{%- for metric in definitions %}
{%- set aggregation = metric.aggregation %}

-- metric {{ loop.index }}: {{ aggregation }} of {{ metric.aggregation_field if aggregation in ('count_unique', 'match') else metric.element }}
measured_{{ loop.index }} as (

    select
        subscription_id,
        product_id,
        period_start,
        period_end,
        credential_name,
        is_trial,
        {{ event_element_value(metric.element) }} as element_value,
        {% if aggregation in ('count_unique', 'match') -%}
        {{ event_field_text(metric.aggregation_field) }}
        {%- else -%}
        cast(null as {{ dbt.type_string() }})
        {%- endif %} as field_value

    from {{ billed_events }} as billed_events
    where
        product_id = {{ sql_literal(metric.product_id) }}
        and ({{ metric_filter_predicate(metric.filters) }})

),

aggregated_{{ loop.index }} as (

    select
        subscription_id,
        product_id,
        period_start,
        period_end,
        {{ sql_literal(metric.metric_name) }} as metric_name,
        case when grouping(credential_name) = 1 then 'total' else 'credential' end as breakdown,
        credential_name,
        {%- for part, condition in [('billable', 'not is_trial'), ('trial', 'is_trial')] %}
        {%- if aggregation in ('sum', 'average') %}
        sum(case when {{ condition }} then element_value end) as {{ part }}_value,
        {%- elif aggregation == 'max' %}
        max(case when {{ condition }} then element_value end) as {{ part }}_value,
        {%- elif aggregation == 'count' %}
        count(case when {{ condition }} then element_value end) as {{ part }}_value,
        {%- elif aggregation == 'count_unique' %}
        count(distinct case when {{ condition }} then field_value end) as {{ part }}_value,
        {%- elif aggregation == 'match' %}
        sum(
            case when {{ condition }} and field_value = {{ sql_literal(comparable_value(metric.match_value)) }} then 1 else 0 end
        ) as {{ part }}_value,
        {%- endif %}
        count(case when {{ condition }} then element_value end) as {{ part }}_value_count,
        sum(case when {{ condition }} then 1 else 0 end) as {{ part }}_event_count
        {%- if not loop.last %},{% endif %}
        {%- endfor %}

    from measured_{{ loop.index }}
    group by grouping sets (
        (subscription_id, product_id, period_start, period_end),
        (subscription_id, product_id, period_start, period_end, credential_name)
    )

),

quantified_{{ loop.index }} as (

    select
        subscription_id,
        product_id,
        period_start,
        period_end,
        metric_name,
        breakdown,
        case when breakdown = 'credential' then credential_name end as credential_name,
        {%- for part in ['billable', 'trial'] %}
        {%- if aggregation == 'average' %}
        cast(
            case
                when {{ part }}_value_count > 0
                    then {{ divide_half_even(part ~ '_value', part ~ '_value_count', 10) }}
                else 0
            end
            as decimal(21, 10)
        ) as {{ part }}_quantity,
        {%- else %}
        cast(coalesce({{ part }}_value, 0) as decimal(21, 10)) as {{ part }}_quantity,
        {%- endif %}
        cast({{ part }}_event_count as {{ dbt.type_bigint() }}) as {{ part }}_event_count,
        {%- endfor %}
        {{ sql_literal(aggregation) }} as aggregation

    from aggregated_{{ loop.index }}

),
{%- endfor %}

unioned as (

    {%- if definitions %}
    {%- for metric in definitions %}
    select * from quantified_{{ loop.index }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
    {%- else %}
    -- no metric in the catalog: an empty result with the same columns
    select
        cast(null as {{ dbt.type_string() }}) as subscription_id,
        cast(null as {{ dbt.type_string() }}) as product_id,
        cast(null as {{ dbt.type_timestamp() }}) as period_start,
        cast(null as {{ dbt.type_timestamp() }}) as period_end,
        cast(null as {{ dbt.type_string() }}) as metric_name,
        cast(null as {{ dbt.type_string() }}) as breakdown,
        cast(null as {{ dbt.type_string() }}) as credential_name,
        cast(null as decimal(21, 10)) as billable_quantity,
        cast(null as {{ dbt.type_bigint() }}) as billable_event_count,
        cast(null as decimal(21, 10)) as trial_quantity,
        cast(null as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(null as {{ dbt.type_string() }}) as aggregation
    from {{ ref('int_events_attributed') }}
    where 1 = 0
    {%- endif %}

)

select * from unioned
