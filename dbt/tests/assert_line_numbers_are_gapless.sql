-- Lines of a draft are numbered 1..n without gaps (the ledger's primary key is
-- (draft_key, line_number) and invoices print them in this order). A failure means the
-- numbering window is broken or two lines share a number.

{{ config(meta={'dagster': {'ref': {'name': 'fct_invoice_line_drafts'}}}) }}

select
    draft_key,
    count(*) as line_count,
    count(distinct line_number) as distinct_numbers,
    min(line_number) as first_number,
    max(line_number) as last_number

from {{ ref('fct_invoice_line_drafts') }}
group by draft_key
having
    min(line_number) <> 1
    or max(line_number) <> count(*)
    or count(distinct line_number) <> count(*)
