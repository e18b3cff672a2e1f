{{ config(materialized='table', tags=['reporting']) }}

-- Provider cost of every accepted event, aggregated once for the finance reports: billed events
-- per draft period, model and trial flag; unbilled events per month of their request time. The
-- cost is the one rating computed (reported, else the model price in force at request_time).

with

events as (

    select * from {{ ref('int_events_attributed') }}

),

aggregated as (

    select
        billing_status,
        unbilled_reason,
        subscription_id,
        period_start,
        period_end,
        is_trial,
        coalesce(provider, '(none)') as provider,
        coalesce(model, '(none)') as model,
        {{ dbt.date_trunc('month', 'request_time') }} as request_month,
        cast(count(*) as {{ dbt.type_bigint() }}) as event_count,
        cast(sum(case when provider_cost_usd is null then 1 else 0 end) as {{ dbt.type_bigint() }})
            as events_without_cost,
        cast(coalesce(sum(provider_cost_usd), 0) as decimal(28, 10)) as provider_cost_usd

    from events
    group by
        billing_status,
        unbilled_reason,
        subscription_id,
        period_start,
        period_end,
        is_trial,
        coalesce(provider, '(none)'),
        coalesce(model, '(none)'),
        {{ dbt.date_trunc('month', 'request_time') }}

)

select * from aggregated
