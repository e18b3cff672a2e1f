{{ config(materialized='table', tags=['reporting']) }}

-- One row per invoice draft (a subscription's period on one product) with what finance needs:
-- revenue as issued (the ledger's own lines plus late adjustments applied since), what is still
-- pending (open or held drafts, adjustments waiting for the next invoice), the USD value through
-- the FX rate in force at the period's end, and the provider cost of the period's events.

with

drafts as (

    select * from {{ ref('fct_invoice_drafts') }}

),

invoices as (

    select * from {{ source('marts', 'invoices') }}
    where document_type = 'invoice'

),

invoice_lines as (

    select * from {{ source('marts', 'invoice_lines') }}

),

adjustments as (

    select * from {{ source('billing', 'adjustments') }}

),

issued_documents as (

    select invoice_number from {{ source('marts', 'invoices') }}
    where status = 'issued'

),

fx_rates as (

    select * from {{ source('reporting', 'fx_rates') }}

),

run_clock as (

    select max(as_of) as as_of from {{ source('reporting', 'run_clock') }}

),

event_costs as (

    select * from {{ ref('int_event_costs_aggregated') }}
    where billing_status = 'billed'

),

-- the period's own lines: adjustment lines on an invoice belong to the earlier period they correct
own_lines as (

    select
        invoice_number,
        sum(amount) as own_amount

    from invoice_lines
    where kind <> 'adjustment'
    group by invoice_number

),

ledger as (

    select
        invoices.draft_key,
        invoices.invoice_number,
        invoices.status,
        invoices.issued_at,
        coalesce(own_lines.own_amount, 0) as own_amount

    from invoices
    left join own_lines
        on invoices.invoice_number = own_lines.invoice_number

),

-- adjustments of a period: applied ones arrived after it closed; unapplied ones wait for an invoice
late as (

    select
        adjustments.draft_key,
        sum(case when issued_documents.invoice_number is not null then adjustments.amount else 0 end)
            as late_revenue,
        sum(case when adjustments.applied_invoice_number is null then adjustments.amount else 0 end)
            as pending_adjustments,
        count(*) as adjustment_count

    from adjustments
    left join issued_documents
        on adjustments.applied_invoice_number = issued_documents.invoice_number
    group by adjustments.draft_key

),

costs as (

    select
        subscription_id,
        period_start,
        period_end,
        sum(provider_cost_usd) as provider_cost_usd,
        sum(case when is_trial then provider_cost_usd else 0 end) as trial_cost_usd,
        sum(case when is_trial then 0 else event_count end) as billable_event_count,
        sum(case when is_trial then event_count else 0 end) as trial_event_count,
        sum(events_without_cost) as events_without_cost

    from event_costs
    group by subscription_id, period_start, period_end

),

joined as (

    select
        drafts.draft_key,
        drafts.subscription_id,
        drafts.organization_id,
        drafts.organization_name,
        drafts.product_id,
        drafts.product_name,
        drafts.currency,
        drafts.period_start,
        drafts.period_end,
        drafts.due_at,
        drafts.total as draft_total,
        ledger.invoice_number,
        ledger.issued_at,
        case
            when ledger.status in ('issued', 'void', 'held') then ledger.status
            when drafts.due_at <= run_clock.as_of then 'due'
            else 'open'
        end as status,
        case when ledger.status = 'issued' then ledger.own_amount else 0 end as invoiced_revenue,
        case when ledger.status = 'issued' then coalesce(late.late_revenue, 0) else 0 end as late_revenue,
        case
            when ledger.status = 'issued' then coalesce(late.pending_adjustments, 0)
            when ledger.status = 'void' then 0
            else drafts.total
        end as pending_revenue,
        coalesce(late.adjustment_count, 0) as adjustment_count,
        case when drafts.currency = 'USD' then 1 else fx_rates.usd_per_unit end as usd_per_unit,
        coalesce(costs.provider_cost_usd, 0) as provider_cost_usd,
        coalesce(costs.trial_cost_usd, 0) as trial_cost_usd,
        coalesce(costs.billable_event_count, 0) as billable_event_count,
        coalesce(costs.trial_event_count, 0) as trial_event_count,
        coalesce(costs.events_without_cost, 0) as events_without_cost

    from drafts
    cross join run_clock
    left join ledger
        on drafts.draft_key = ledger.draft_key
    left join late
        on drafts.draft_key = late.draft_key
    left join costs
        on drafts.subscription_id = costs.subscription_id
        and drafts.period_start = costs.period_start
        and drafts.period_end = costs.period_end
    -- the rate in force at the period's end (valid_to: the next row's valid_from)
    left join fx_rates
        on drafts.currency = fx_rates.currency
        and drafts.period_end >= fx_rates.valid_from
        and (fx_rates.valid_to is null or drafts.period_end < fx_rates.valid_to)

),

final as (

    select
        cast(draft_key as {{ dbt.type_string() }}) as draft_key,
        cast(subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(organization_id as {{ dbt.type_string() }}) as organization_id,
        cast(organization_name as {{ dbt.type_string() }}) as organization_name,
        cast(product_id as {{ dbt.type_string() }}) as product_id,
        cast(product_name as {{ dbt.type_string() }}) as product_name,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast({{ dbt.date_trunc('month', 'period_start') }} as {{ dbt.type_timestamp() }}) as reporting_month,
        cast(status as {{ dbt.type_string() }}) as status,
        cast(invoice_number as {{ dbt.type_string() }}) as invoice_number,
        cast(issued_at as {{ dbt.type_timestamp() }}) as issued_at,
        cast(draft_total as decimal(18, 3)) as draft_total,
        cast(invoiced_revenue as decimal(18, 3)) as invoiced_revenue,
        cast(late_revenue as decimal(18, 3)) as late_revenue,
        cast(invoiced_revenue + late_revenue as decimal(18, 3)) as revenue,
        cast(pending_revenue as decimal(18, 3)) as pending_revenue,
        cast(adjustment_count as {{ dbt.type_bigint() }}) as adjustment_count,
        cast(usd_per_unit as decimal(20, 10)) as usd_per_unit,
        cast(
            {{ round_half_even(
                'cast(invoiced_revenue as decimal(18, 3))'
                ~ ' * cast(usd_per_unit as decimal(20, 10))', 10) }}
            as decimal(28, 10)
        ) as invoiced_revenue_usd,
        cast(
            {{ round_half_even(
                'cast(late_revenue as decimal(18, 3))'
                ~ ' * cast(usd_per_unit as decimal(20, 10))', 10) }}
            as decimal(28, 10)
        ) as late_revenue_usd,
        cast(
            {{ round_half_even(
                'cast(invoiced_revenue + late_revenue as decimal(18, 3))'
                ~ ' * cast(usd_per_unit as decimal(20, 10))', 10) }}
            as decimal(28, 10)
        ) as revenue_usd,
        cast(
            {{ round_half_even(
                'cast(pending_revenue as decimal(18, 3))'
                ~ ' * cast(usd_per_unit as decimal(20, 10))', 10) }}
            as decimal(28, 10)
        ) as pending_revenue_usd,
        cast(provider_cost_usd as decimal(28, 10)) as provider_cost_usd,
        cast(trial_cost_usd as decimal(28, 10)) as trial_cost_usd,
        cast(billable_event_count as {{ dbt.type_bigint() }}) as billable_event_count,
        cast(trial_event_count as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(events_without_cost as {{ dbt.type_bigint() }}) as events_without_cost

    from joined

)

select * from final
