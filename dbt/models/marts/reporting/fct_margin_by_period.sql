{{ config(alias='margin_by_period', tags=['reporting']) }}

-- Revenue, cost and margin per calendar month (of the usage period's start), all in USD, with
-- the provider cost of unbilled events (by month of their request time) shown apart: it is cost
-- no invoice will ever recover until the catalog or the events are fixed.

with

drafts as (

    select * from {{ ref('int_drafts_margined') }}

),

unbilled as (

    select
        request_month as reporting_month,
        sum(provider_cost_usd) as unbilled_cost_usd,
        sum(event_count) as unbilled_event_count

    from {{ ref('int_event_costs_aggregated') }}
    where billing_status = 'unbilled'
    group by request_month

),

aggregated as (

    select
        reporting_month,
        {{ margin_aggregates() }}

    from drafts
    group by reporting_month

),

months as (

    select reporting_month from aggregated
    union
    select reporting_month from unbilled

),

final as (

    select
        cast(months.reporting_month as {{ dbt.type_timestamp() }}) as reporting_month,
        cast(coalesce(aggregated.revenue_usd, 0) as decimal(28, 10)) as revenue_usd,
        cast(coalesce(aggregated.pending_revenue_usd, 0) as decimal(28, 10)) as pending_revenue_usd,
        cast(coalesce(aggregated.provider_cost_usd, 0) as decimal(28, 10)) as provider_cost_usd,
        cast(coalesce(aggregated.trial_cost_usd, 0) as decimal(28, 10)) as trial_cost_usd,
        cast(coalesce(unbilled.unbilled_cost_usd, 0) as decimal(28, 10)) as unbilled_cost_usd,
        cast(
            coalesce(aggregated.revenue_usd, 0) - coalesce(aggregated.provider_cost_usd, 0)
            as decimal(28, 10)
        ) as margin,
        cast(
            case
                when aggregated.revenue_usd <> 0
                    then {{ divide_half_even(
                        'aggregated.revenue_usd - coalesce(aggregated.provider_cost_usd, 0)',
                        'aggregated.revenue_usd', 10) }}
            end
            as decimal(28, 10)
        ) as margin_pct,
        -- drafts whose currency has no FX rate for the period are left out of revenue_usd
        cast(coalesce(aggregated.drafts_without_fx_rate, 0) as {{ dbt.type_int() }}) as drafts_without_fx_rate,
        cast(coalesce(aggregated.billable_event_count, 0) as {{ dbt.type_bigint() }}) as billable_event_count,
        cast(coalesce(aggregated.trial_event_count, 0) as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(coalesce(unbilled.unbilled_event_count, 0) as {{ dbt.type_bigint() }}) as unbilled_event_count,
        cast(coalesce(aggregated.draft_count, 0) as {{ dbt.type_int() }}) as draft_count,
        cast(coalesce(aggregated.invoiced_draft_count, 0) as {{ dbt.type_int() }}) as invoiced_draft_count

    from months
    left join aggregated
        on months.reporting_month = aggregated.reporting_month
    left join unbilled
        on months.reporting_month = unbilled.reporting_month

)

select * from final
