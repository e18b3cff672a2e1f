{{ config(materialized='table') }}

-- Per invoice draft's usage period: how many events were billed to it, how many of them fell in
-- the free trial, and what they cost the provider (null cost = no reported cost and no price).

with

billed as (

    select * from {{ ref('int_events_attributed') }}
    where billing_status = 'billed'

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
