{{ config(alias='unbilled_usage') }}

-- Accepted events that bill to no invoice, with the reason (SPEC §3.1):
--   unknown_product            the product named matches no product, and neither the
--                              subscriptionId nor the credential identify a subscription
--   no_matching_subscription   the product exists, but the subscriber has no subscription
--                              on it active at requestTime
--   outside_subscription_term  attributed to a subscription, but requestTime lies outside
--                              its term (no billing period holds it)

with

unbilled as (

    select * from {{ ref('int_events_attributed') }}
    where billing_status = 'unbilled'

),

final as (

    select
        cast(transaction_id as {{ dbt.type_string() }}) as transaction_id,
        cast(unbilled_reason as {{ dbt.type_string() }}) as reason,
        cast(request_time as {{ dbt.type_timestamp() }}) as request_time,
        cast(provider_cost_usd as decimal(20, 10)) as provider_cost_usd,
        cast(subscriber_id as {{ dbt.type_string() }}) as subscriber_id,
        cast(event_product_id as {{ dbt.type_string() }}) as product_id,
        cast(event_product_name as {{ dbt.type_string() }}) as product_name,
        cast(provider as {{ dbt.type_string() }}) as provider,
        cast(model as {{ dbt.type_string() }}) as model,
        cast(organization_id as {{ dbt.type_string() }}) as organization_id,
        cast(subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(attribution_rule as {{ dbt.type_string() }}) as attribution_rule,
        cast(credential_name as {{ dbt.type_string() }}) as credential_name,
        cast(source_file as {{ dbt.type_string() }}) as source_file,
        cast(line_number as {{ dbt.type_bigint() }}) as line_number

    from unbilled

)

select * from final
