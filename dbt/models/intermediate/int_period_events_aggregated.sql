{{ config(
    materialized=('incremental' if target.type == 'duckdb' else 'table'),
    incremental_strategy='delete+insert',
    unique_key=['subscription_id', 'period_start', 'period_end'],
) }}

-- Per invoice draft's usage period: how many events were billed to it, how many of them fell in
-- the free trial, and what they cost the provider (null cost = no reported cost and no price).
-- Incremental on DuckDB: only the periods that events of loads not rated yet fall in are
-- aggregated again, over all their events (macros/rated_loads.sql).

with

billed as (

    select * from {{ billed_events_of_periods_to_rate() }}

),

aggregated as (

    select
        subscription_id,
        period_start,
        period_end,
        cast(count(*) as {{ dbt.type_bigint() }}) as event_count,
        cast(sum(case when is_trial then 1 else 0 end) as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(sum(case when provider_cost_usd is null then 1 else 0 end) as {{ dbt.type_bigint() }})
            as events_without_cost,
        cast(coalesce(sum(provider_cost_usd), 0) as decimal(28, 10)) as provider_cost_usd

    from billed
    group by subscription_id, period_start, period_end

)

select * from aggregated
