-- The tier lines of a metric account for exactly the quantity the tiers apply to: graduated
-- tiers split it (their quantities add up to it), a volume tier carries all of it, and a zero
-- quantity shows as one line of 0 (SPEC §3.4). Fixed-fee and free-trial lines are not part of
-- it. A failure means usage was billed twice or not at all.

{{ config(meta={'dagster': {'ref': {'name': 'fct_invoice_line_drafts'}}}) }}

with

tier_lines as (

    select
        draft_key,
        metric,
        sum(quantity) as tier_quantity,
        count(*) as tier_line_count

    from {{ ref('fct_invoice_line_drafts') }}
    where line_type in ('tier', 'no_tier')
    group by draft_key, metric

),

usage as (

    select
        draft_key,
        metric_name as metric,
        tier_mode,
        quantity
    from {{ ref('int_period_usage_filled') }}

)

select
    usage.draft_key,
    usage.metric,
    usage.tier_mode,
    usage.quantity,
    tier_lines.tier_quantity,
    tier_lines.tier_line_count

from usage
left join tier_lines
    on usage.draft_key = tier_lines.draft_key
    and usage.metric = tier_lines.metric
where
    tier_lines.tier_quantity is null
    or tier_lines.tier_quantity <> usage.quantity
    or (usage.tier_mode = 'volume' and tier_lines.tier_line_count <> 1)
