{{ config(alias='margin_by_model', tags=['reporting']) }}

-- Provider cost per month, provider and model, against the revenue those calls earned. Revenue is
-- billed per metric, not per model, so each draft's issued revenue (USD) is allocated to models
-- in proportion to the draft's billable (non-trial) events; a draft with no billable event keeps
-- its revenue (recurring fees) on provider '(none)', model '(no usage)'. Summed over models, the
-- allocation gives back marts.margin_by_period's revenue (to 10 decimals).

with

drafts as (

    select * from {{ ref('int_drafts_margined') }}

),

event_costs as (

    select * from {{ ref('int_event_costs_aggregated') }}

),

billed as (

    select
        drafts.reporting_month,
        event_costs.provider,
        event_costs.model,
        drafts.revenue_usd as draft_revenue_usd,
        drafts.billable_event_count as draft_billable_events,
        sum(case when event_costs.is_trial then 0 else event_costs.event_count end) as billable_event_count,
        sum(case when event_costs.is_trial then event_costs.event_count else 0 end) as trial_event_count,
        sum(event_costs.provider_cost_usd) as provider_cost_usd,
        sum(case when event_costs.is_trial then event_costs.provider_cost_usd else 0 end) as trial_cost_usd

    from event_costs
    inner join drafts
        on event_costs.subscription_id = drafts.subscription_id
        and event_costs.period_start = drafts.period_start
        and event_costs.period_end = drafts.period_end
    where event_costs.billing_status = 'billed'
    group by
        drafts.draft_key,
        drafts.reporting_month,
        event_costs.provider,
        event_costs.model,
        drafts.revenue_usd,
        drafts.billable_event_count

),

allocated as (

    select
        reporting_month,
        provider,
        model,
        billable_event_count,
        trial_event_count,
        provider_cost_usd,
        trial_cost_usd,
        cast(0 as decimal(28, 10)) as unbilled_cost_usd,
        cast(0 as {{ dbt.type_bigint() }}) as unbilled_event_count,
        case
            when draft_billable_events > 0 and draft_revenue_usd is not null
                then {{ divide_half_even(
                    'cast(draft_revenue_usd as decimal(28, 10)) * billable_event_count',
                    'draft_billable_events', 10) }}
            else 0
        end as allocated_revenue_usd

    from billed

),

-- revenue of drafts that had no billable event (a recurring fee alone) stays unallocated
unallocated as (

    select
        reporting_month,
        '(none)' as provider,
        '(no usage)' as model,
        cast(0 as {{ dbt.type_bigint() }}) as billable_event_count,
        cast(0 as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(0 as decimal(28, 10)) as provider_cost_usd,
        cast(0 as decimal(28, 10)) as trial_cost_usd,
        cast(0 as decimal(28, 10)) as unbilled_cost_usd,
        cast(0 as {{ dbt.type_bigint() }}) as unbilled_event_count,
        revenue_usd as allocated_revenue_usd

    from drafts
    where billable_event_count = 0 and revenue_usd <> 0

),

unbilled as (

    select
        request_month as reporting_month,
        provider,
        model,
        cast(0 as {{ dbt.type_bigint() }}) as billable_event_count,
        cast(0 as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(0 as decimal(28, 10)) as provider_cost_usd,
        cast(0 as decimal(28, 10)) as trial_cost_usd,
        provider_cost_usd as unbilled_cost_usd,
        event_count as unbilled_event_count,
        cast(0 as decimal(28, 10)) as allocated_revenue_usd

    from event_costs
    where billing_status = 'unbilled'

),

unioned as (

    select * from allocated
    union all
    select * from unallocated
    union all
    select * from unbilled

),

aggregated as (

    select
        reporting_month,
        provider,
        model,
        sum(billable_event_count) as billable_event_count,
        sum(trial_event_count) as trial_event_count,
        sum(unbilled_event_count) as unbilled_event_count,
        sum(allocated_revenue_usd) as allocated_revenue_usd,
        sum(provider_cost_usd) as provider_cost_usd,
        sum(trial_cost_usd) as trial_cost_usd,
        sum(unbilled_cost_usd) as unbilled_cost_usd

    from unioned
    group by reporting_month, provider, model

),

final as (

    select
        cast(reporting_month as {{ dbt.type_timestamp() }}) as reporting_month,
        cast(provider as {{ dbt.type_string() }}) as provider,
        cast(model as {{ dbt.type_string() }}) as model,
        cast(billable_event_count as {{ dbt.type_bigint() }}) as billable_event_count,
        cast(trial_event_count as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(unbilled_event_count as {{ dbt.type_bigint() }}) as unbilled_event_count,
        cast(allocated_revenue_usd as decimal(28, 10)) as allocated_revenue_usd,
        cast(provider_cost_usd as decimal(28, 10)) as provider_cost_usd,
        cast(trial_cost_usd as decimal(28, 10)) as trial_cost_usd,
        cast(unbilled_cost_usd as decimal(28, 10)) as unbilled_cost_usd,
        cast(allocated_revenue_usd - provider_cost_usd as decimal(28, 10)) as margin,
        cast(
            case
                when allocated_revenue_usd <> 0
                    then {{ divide_half_even(
                        'allocated_revenue_usd - provider_cost_usd', 'allocated_revenue_usd', 10) }}
            end
            as decimal(28, 10)
        ) as margin_pct

    from aggregated

)

select * from final
