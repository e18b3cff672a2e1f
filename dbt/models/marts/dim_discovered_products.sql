{{ config(alias='discovered_products') }}

-- Product names and ids that events use but the catalog does not know: candidates to add to
-- the catalog. An event attributed by subscriptionId or credential is billed anyway (on its
-- subscription's product); the rest are unbilled as unknown_product.

with

unknown as (

    select * from {{ ref('int_events_attributed') }}
    where
        matched_product_id is null
        and (event_product_id is not null or event_product_name is not null)

),

aggregated as (

    select
        event_product_id,
        event_product_name,
        count(*) as event_count,
        sum(case when billing_status = 'unbilled' then 1 else 0 end) as unbilled_event_count,
        min(request_time) as first_seen_at,
        max(request_time) as last_seen_at

    from unknown
    group by event_product_id, event_product_name

),

final as (

    select
        cast(
            {{ dbt.concat(["coalesce(event_product_id, '')", "'|'", "coalesce(event_product_name, '')"]) }}
            as {{ dbt.type_string() }}
        ) as discovered_key,
        cast(event_product_id as {{ dbt.type_string() }}) as product_id,
        cast(event_product_name as {{ dbt.type_string() }}) as product_name,
        cast(event_count as {{ dbt.type_bigint() }}) as event_count,
        cast(unbilled_event_count as {{ dbt.type_bigint() }}) as unbilled_event_count,
        cast(first_seen_at as {{ dbt.type_timestamp() }}) as first_seen_at,
        cast(last_seen_at as {{ dbt.type_timestamp() }}) as last_seen_at

    from aggregated

)

select * from final
