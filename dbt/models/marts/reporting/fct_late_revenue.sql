{{ config(alias='late_revenue', tags=['reporting']) }}

-- Late-arriving revenue: per issued invoice whose period was re-rated after it closed (late
-- events, docs/DECISIONS.md), what the period was invoiced at and the adjustments since: applied
-- ones (an adjustment line on a later invoice, or a credit note) and those still waiting for the
-- subscription's next invoice.

with

drafts as (

    select * from {{ ref('int_drafts_margined') }}
    where adjustment_count > 0

),

adjustments as (

    select
        draft_key,
        min(detected_at) as first_detected_at,
        max(detected_at) as last_detected_at

    from {{ source('billing', 'adjustments') }}
    group by draft_key

),

final as (

    select
        cast(drafts.invoice_number as {{ dbt.type_string() }}) as original_invoice_number,
        cast(drafts.subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(drafts.organization_id as {{ dbt.type_string() }}) as organization_id,
        cast(drafts.product_id as {{ dbt.type_string() }}) as product_id,
        cast(drafts.currency as {{ dbt.type_string() }}) as currency,
        cast(drafts.period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(drafts.period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(drafts.reporting_month as {{ dbt.type_timestamp() }}) as reporting_month,
        cast(drafts.invoiced_revenue as decimal(18, 3)) as invoiced_revenue,
        cast(drafts.late_revenue as decimal(18, 3)) as late_revenue,
        cast(drafts.pending_revenue as decimal(18, 3)) as pending_late_revenue,
        cast(drafts.late_revenue_usd as decimal(28, 10)) as late_revenue_usd,
        cast(drafts.adjustment_count as {{ dbt.type_bigint() }}) as adjustment_count,
        cast(adjustments.first_detected_at as {{ dbt.type_timestamp() }}) as first_detected_at,
        cast(adjustments.last_detected_at as {{ dbt.type_timestamp() }}) as last_detected_at

    from drafts
    left join adjustments
        on drafts.draft_key = adjustments.draft_key

)

select * from final
