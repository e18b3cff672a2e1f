{{ config(alias='margin_by_customer', tags=['reporting']) }}

-- Revenue against provider cost per organization, period and currency (SPEC §4). Revenue is what
-- was issued for the period: the invoices' own lines plus late adjustments applied since
-- (marts.invoices, after the invoicing step; built by the reports' dbt invocation). Drafts not
-- yet issued (open, due, held) are pending_revenue, apart. Cost is the provider cost (USD) of the
-- events billed to the period, free-trial events included (trial_cost_usd shows their part).
-- margin = revenue_usd - cost, with revenue_usd through the FX rate in force at the period's end;
-- margin_pct = margin / revenue_usd, half-even to 10 decimals (docs/finance.md).

with

drafts as (

    select * from {{ ref('int_drafts_margined') }}

),

aggregated as (

    select
        organization_id,
        organization_name,
        period_start,
        period_end,
        currency,
        max(usd_per_unit) as usd_per_unit,
        {{ margin_aggregates() }}

    from drafts
    group by organization_id, organization_name, period_start, period_end, currency

),

final as (

    select
        cast(organization_id as {{ dbt.type_string() }}) as organization_id,
        cast(organization_name as {{ dbt.type_string() }}) as organization_name,
        cast(period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(revenue as decimal(18, 3)) as revenue,
        cast(invoiced_revenue as decimal(18, 3)) as invoiced_revenue,
        cast(late_revenue as decimal(18, 3)) as late_revenue,
        cast(pending_revenue as decimal(18, 3)) as pending_revenue,
        cast(usd_per_unit as decimal(20, 10)) as usd_per_unit,
        {{ margin_columns() }}

    from aggregated

)

select * from final
