{{ config(alias='auto_created_credentials') }}

-- Credential values seen on events attributed by subscriptionId or by subscriber that are not
-- in the catalog (SPEC §3.1): recorded per subscription, named after the event's credential
-- name, else masked to their last 4 characters.

with

candidates as (

    select * from {{ ref('int_events_attributed') }}
    where
        attribution_rule in ('subscription_id', 'subscriber')
        and credential_value is not null
        and not is_catalog_credential

),

aggregated as (

    select
        subscription_id,
        credential_value,
        min(credential_name) as credential_name,
        min(request_time) as first_seen_at,
        max(request_time) as last_seen_at,
        count(*) as event_count

    from candidates
    group by subscription_id, credential_value

),

final as (

    select
        cast(subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(credential_name as {{ dbt.type_string() }}) as credential_name,
        cast(credential_value as {{ dbt.type_string() }}) as credential_value,
        cast(first_seen_at as {{ dbt.type_timestamp() }}) as first_seen_at,
        cast(last_seen_at as {{ dbt.type_timestamp() }}) as last_seen_at,
        cast(event_count as {{ dbt.type_bigint() }}) as event_count

    from aggregated

)

select * from final
