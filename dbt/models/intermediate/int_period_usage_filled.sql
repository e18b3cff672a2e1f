-- One row per invoice draft with a usage period and metric of the draft's product, with the
-- quantity the tiers apply to: zero when no event was metered (a zero quantity still gets its
-- invoice line, SPEC §3.4), trial usage beside it.

with

periods as (

    select * from {{ ref('stg_catalog__subscription_periods') }}
    where has_usage_period

),

metrics as (

    select * from {{ ref('stg_catalog__metrics') }}

),

totals as (

    select * from {{ ref('int_usage_aggregated') }}
    where breakdown = 'total'

),

filled as (

    select
        periods.draft_key,
        periods.subscription_id,
        periods.product_id,
        periods.period_start,
        periods.period_end,
        periods.currency,
        periods.minor_units,
        metrics.metric_name,
        metrics.metric_position,
        metrics.aggregation,
        metrics.tier_mode,
        cast(coalesce(totals.billable_quantity, 0) as decimal(21, 10)) as quantity,
        cast(coalesce(totals.billable_event_count, 0) as {{ dbt.type_bigint() }}) as event_count,
        cast(coalesce(totals.trial_quantity, 0) as decimal(21, 10)) as trial_quantity,
        cast(coalesce(totals.trial_event_count, 0) as {{ dbt.type_bigint() }}) as trial_event_count

    from periods
    inner join metrics
        on periods.product_id = metrics.product_id
    left join totals
        on periods.subscription_id = totals.subscription_id
        and periods.product_id = totals.product_id
        and periods.period_start = totals.period_start
        and periods.period_end = totals.period_end
        and metrics.metric_name = totals.metric_name

)

select * from filled
