-- Every line amount is already rounded to its currency's minor unit (SPEC §3.7), and so is
-- every draft total. A failure means an amount carries digits the currency does not have
-- (e.g. 0.5 JPY), which the ledger and Stripe would round again, differently.

{{ config(meta={'dagster': {'ref': {'name': 'fct_invoice_line_drafts'}}}) }}

with

line_amounts as (

    select
        line_drafts.draft_key,
        line_drafts.line_number,
        line_drafts.amount,
        drafts.minor_units

    from {{ ref('fct_invoice_line_drafts') }} as line_drafts
    inner join {{ ref('fct_invoice_drafts') }} as drafts
        on line_drafts.draft_key = drafts.draft_key

)

select * from line_amounts
where
    cast({{ round_half_even('amount', 'minor_units') }} as decimal(18, 3)) <> amount
    or amount is null
