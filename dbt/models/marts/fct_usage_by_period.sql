{{ config(alias='usage_by_period') }}

-- Metered usage per subscription, period and metric (SPEC §4). breakdown 'total': one row per
-- draft with a usage period and metric of its product, the quantity the tiers apply to (zero
-- when nothing was metered); breakdown 'credential': the same aggregation per credential.
-- Free-trial usage is beside it in trial_quantity / trial_event_count, never in quantity.

with

totals as (

    select * from {{ ref('int_period_usage_filled') }}

),

per_credential as (

    select * from {{ ref('int_usage_aggregated') }}
    where breakdown = 'credential'

),

periods as (

    select * from {{ ref('stg_catalog__subscription_periods') }}

),

subscriptions as (

    select * from {{ ref('stg_catalog__subscriptions') }}

),

subscribers as (

    select * from {{ ref('stg_catalog__subscribers') }}

),

metrics as (

    select * from {{ ref('stg_catalog__metrics') }}

),

total_rows as (

    select
        draft_key,
        subscription_id,
        product_id,
        period_start,
        period_end,
        metric_name as metric,
        metric_position,
        aggregation,
        'total' as breakdown,
        cast(null as {{ dbt.type_string() }}) as credential_name,
        quantity,
        event_count,
        trial_quantity,
        trial_event_count

    from totals

),

credential_rows as (

    select
        periods.draft_key,
        per_credential.subscription_id,
        per_credential.product_id,
        per_credential.period_start,
        per_credential.period_end,
        per_credential.metric_name as metric,
        metrics.metric_position,
        metrics.aggregation,
        'credential' as breakdown,
        per_credential.credential_name,
        per_credential.billable_quantity as quantity,
        per_credential.billable_event_count as event_count,
        per_credential.trial_quantity,
        per_credential.trial_event_count

    from per_credential
    inner join periods
        on per_credential.subscription_id = periods.subscription_id
        and per_credential.period_start = periods.period_start
        and per_credential.period_end = periods.period_end
    inner join metrics
        on per_credential.product_id = metrics.product_id
        and per_credential.metric_name = metrics.metric_name

),

unioned as (

    select * from total_rows
    union all
    select * from credential_rows

),

final as (

    select
        cast(unioned.draft_key as {{ dbt.type_string() }}) as draft_key,
        cast(unioned.subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(unioned.product_id as {{ dbt.type_string() }}) as product_id,
        cast(subscribers.organization_id as {{ dbt.type_string() }}) as organization_id,
        cast(unioned.period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(unioned.period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(unioned.metric as {{ dbt.type_string() }}) as metric,
        cast(unioned.metric_position as {{ dbt.type_int() }}) as metric_position,
        cast(unioned.aggregation as {{ dbt.type_string() }}) as aggregation,
        cast(unioned.breakdown as {{ dbt.type_string() }}) as breakdown,
        cast(unioned.credential_name as {{ dbt.type_string() }}) as credential_name,
        cast(unioned.quantity as decimal(21, 10)) as quantity,
        cast(unioned.event_count as {{ dbt.type_bigint() }}) as event_count,
        cast(unioned.trial_quantity as decimal(21, 10)) as trial_quantity,
        cast(unioned.trial_event_count as {{ dbt.type_bigint() }}) as trial_event_count

    from unioned
    inner join subscriptions
        on unioned.subscription_id = subscriptions.subscription_id
    left join subscribers
        on subscriptions.subscriber_id = subscribers.subscriber_id

)

select * from final
