-- Every accepted event is either billed to exactly one draft's usage period or listed in
-- unbilled_usage (SPEC §3.1: unbilled usage is kept with the reason). A failure means events
-- were lost or counted twice between raw.events and the marts.

{{ config(meta={'dagster': {'ref': {'name': 'fct_unbilled_usage'}}}) }}

with

counts as (

    select
        (select count(*) from {{ ref('stg_raw__events') }}) as accepted,
        (select coalesce(sum(event_count), 0) from {{ ref('fct_invoice_drafts') }}) as billed,
        (select count(*) from {{ ref('fct_unbilled_usage') }}) as unbilled

)

select * from counts
where accepted <> billed + unbilled
