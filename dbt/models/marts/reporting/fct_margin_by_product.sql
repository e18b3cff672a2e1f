{{ config(alias='margin_by_product', tags=['reporting']) }}

-- marts.margin_by_customer's measures per product and period (a product has one currency).

with

drafts as (

    select * from {{ ref('int_drafts_margined') }}

),

aggregated as (

    select
        product_id,
        product_name,
        period_start,
        period_end,
        currency,
        max(usd_per_unit) as usd_per_unit,
        count(distinct subscription_id) as subscription_count,
        {{ margin_aggregates() }}

    from drafts
    group by product_id, product_name, period_start, period_end, currency

),

final as (

    select
        cast(product_id as {{ dbt.type_string() }}) as product_id,
        cast(product_name as {{ dbt.type_string() }}) as product_name,
        cast(period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(subscription_count as {{ dbt.type_int() }}) as subscription_count,
        cast(revenue as decimal(18, 3)) as revenue,
        cast(invoiced_revenue as decimal(18, 3)) as invoiced_revenue,
        cast(late_revenue as decimal(18, 3)) as late_revenue,
        cast(pending_revenue as decimal(18, 3)) as pending_revenue,
        cast(usd_per_unit as decimal(20, 10)) as usd_per_unit,
        {{ margin_columns() }}

    from aggregated

)

select * from final
