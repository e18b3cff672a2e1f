-- A draft's total must be the sum of its rounded lines (SPEC §3.7), and its subtotal the same
-- while there are no taxes or adjustments. A failure means an invoice would print a total that
-- its lines do not add up to.

{{ config(meta={'dagster': {'ref': {'name': 'fct_invoice_drafts'}}}) }}

with

line_sums as (

    select
        draft_key,
        sum(amount) as line_sum
    from {{ ref('fct_invoice_line_drafts') }}
    group by draft_key

)

select
    drafts.draft_key,
    drafts.total,
    drafts.subtotal,
    coalesce(line_sums.line_sum, 0) as line_sum

from {{ ref('fct_invoice_drafts') }} as drafts
left join line_sums
    on drafts.draft_key = line_sums.draft_key
where
    drafts.total <> coalesce(line_sums.line_sum, 0)
    or drafts.subtotal <> drafts.total
