-- For additive aggregations (sum, count, match) the per-credential rows of usage_by_period add
-- up to the 'total' row, quantity and event count alike, so the breakdown on an invoice
-- reconciles with its usage lines. (max, average and count_unique are not additive.)
-- A failure means an event was attributed to no credential or to two.

{{ config(meta={'dagster': {'ref': {'name': 'fct_usage_by_period'}}}) }}

with

credential_sums as (

    select
        draft_key,
        metric,
        sum(quantity) as quantity,
        sum(event_count) as event_count,
        sum(trial_quantity) as trial_quantity,
        sum(trial_event_count) as trial_event_count

    from {{ ref('fct_usage_by_period') }}
    where breakdown = 'credential'
    group by draft_key, metric

),

totals as (

    select * from {{ ref('fct_usage_by_period') }}
    where breakdown = 'total' and aggregation in ('sum', 'count', 'match')

)

select
    totals.draft_key,
    totals.metric,
    totals.quantity,
    credential_sums.quantity as credential_quantity

from totals
left join credential_sums
    on totals.draft_key = credential_sums.draft_key
    and totals.metric = credential_sums.metric
where
    coalesce(credential_sums.quantity, 0) <> totals.quantity
    or coalesce(credential_sums.event_count, 0) <> totals.event_count
    or coalesce(credential_sums.trial_quantity, 0) <> totals.trial_quantity
    or coalesce(credential_sums.trial_event_count, 0) <> totals.trial_event_count
