{{ config(alias='invoice_drafts') }}

-- One invoice draft per catalog.subscription_periods row, with its customer and product, and
-- total = the sum of its rounded lines (SPEC §3.7). The invoicing step (Python) issues drafts
-- that are due and compares them with the ledger (marts.invoices).

with

periods as (

    select * from {{ ref('stg_catalog__subscription_periods') }}

),

subscriptions as (

    select * from {{ ref('stg_catalog__subscriptions') }}

),

subscribers as (

    select * from {{ ref('stg_catalog__subscribers') }}

),

organizations as (

    select * from {{ ref('stg_catalog__organizations') }}

),

products as (

    select * from {{ ref('stg_catalog__products') }}

),

line_totals as (

    select
        draft_key,
        sum(amount) as total,
        count(*) as line_count

    from {{ ref('fct_invoice_line_drafts') }}
    group by draft_key

),

period_events as (

    select * from {{ ref('int_period_events_aggregated') }}

),

final as (

    select
        cast(periods.draft_key as {{ dbt.type_string() }}) as draft_key,
        cast(periods.subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(subscriptions.subscription_name as {{ dbt.type_string() }}) as subscription_name,
        cast(subscribers.organization_id as {{ dbt.type_string() }}) as organization_id,
        cast(organizations.organization_name as {{ dbt.type_string() }}) as organization_name,
        cast(subscriptions.subscriber_id as {{ dbt.type_string() }}) as subscriber_id,
        cast(subscribers.subscriber_email as {{ dbt.type_string() }}) as subscriber_email,
        cast(periods.product_id as {{ dbt.type_string() }}) as product_id,
        cast(products.product_name as {{ dbt.type_string() }}) as product_name,
        cast(periods.currency as {{ dbt.type_string() }}) as currency,
        cast(periods.minor_units as {{ dbt.type_int() }}) as minor_units,
        cast(periods.phase_number as {{ dbt.type_int() }}) as phase_number,
        cast(periods.period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(periods.period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(periods.trial_end_at as {{ dbt.type_timestamp() }}) as trial_end_at,
        cast(periods.due_at as {{ dbt.type_timestamp() }}) as due_at,
        -- no taxes or discounts yet: the subtotal is the total
        cast(coalesce(line_totals.total, 0) as decimal(18, 3)) as subtotal,
        cast(coalesce(line_totals.total, 0) as decimal(18, 3)) as total,
        cast(coalesce(line_totals.line_count, 0) as {{ dbt.type_int() }}) as line_count,
        cast(coalesce(period_events.event_count, 0) as {{ dbt.type_bigint() }}) as event_count,
        cast(coalesce(period_events.trial_event_count, 0) as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(coalesce(period_events.provider_cost_usd, 0) as decimal(28, 10)) as provider_cost_usd,
        cast(coalesce(period_events.events_without_cost, 0) as {{ dbt.type_bigint() }}) as events_without_cost

    from periods
    inner join subscriptions
        on periods.subscription_id = subscriptions.subscription_id
    inner join products
        on periods.product_id = products.product_id
    left join subscribers
        on subscriptions.subscriber_id = subscribers.subscriber_id
    left join organizations
        on subscribers.organization_id = organizations.organization_id
    left join line_totals
        on periods.draft_key = line_totals.draft_key
    left join period_events
        on periods.subscription_id = period_events.subscription_id
        and periods.period_start = period_events.period_start
        and periods.period_end = period_events.period_end

)

select * from final
