{{ config(alias='margin_by_customer') }}

-- Revenue against provider cost per organization, period and currency (SPEC §4). Revenue is
-- the sum of the totals of the organization's drafts for the period; cost is the provider cost
-- of the events billed to those drafts, in USD. Margin is only computed for USD revenue (no FX
-- conversion); margin_pct = margin / revenue, rounded half-even to 10 decimals.

with

drafts as (

    select * from {{ ref('fct_invoice_drafts') }}

),

aggregated as (

    select
        organization_id,
        period_start,
        period_end,
        currency,
        sum(total) as revenue,
        sum(provider_cost_usd) as provider_cost_usd,
        sum(events_without_cost) as events_without_cost,
        sum(event_count) as event_count,
        count(*) as draft_count

    from drafts
    group by organization_id, period_start, period_end, currency

),

final as (

    select
        cast(organization_id as {{ dbt.type_string() }}) as organization_id,
        cast(period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(revenue as decimal(18, 3)) as revenue,
        cast(provider_cost_usd as decimal(28, 10)) as provider_cost_usd,
        cast(case when currency = 'USD' then revenue - provider_cost_usd end as decimal(28, 10)) as margin,
        cast(
            case
                when currency = 'USD' and revenue <> 0
                    then {{ divide_half_even('revenue - provider_cost_usd', 'revenue', 10) }}
            end
            as decimal(28, 10)
        ) as margin_pct,
        cast(events_without_cost as {{ dbt.type_bigint() }}) as events_without_cost,
        cast(event_count as {{ dbt.type_bigint() }}) as event_count,
        cast(draft_count as {{ dbt.type_int() }}) as draft_count

    from aggregated

)

select * from final
