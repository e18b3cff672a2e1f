with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        transaction_id,
        payload_sha256,
        event_type,
        cast(request_time as {{ dbt.type_timestamp() }}) as request_time,
        cast(response_time as {{ dbt.type_timestamp() }}) as response_time,
        provider,
        model,
        cast(input_tokens as {{ dbt.type_bigint() }}) as input_tokens,
        cast(output_tokens as {{ dbt.type_bigint() }}) as output_tokens,
        cast(reasoning_tokens as {{ dbt.type_bigint() }}) as reasoning_tokens,
        cast(cache_read_tokens as {{ dbt.type_bigint() }}) as cache_read_tokens,
        cast(cache_creation_tokens as {{ dbt.type_bigint() }}) as cache_creation_tokens,
        cast(total_tokens as {{ dbt.type_bigint() }}) as total_tokens,
        cast(reported_cost_usd as decimal(20, 10)) as reported_cost_usd,
        organization_id,
        organization_name,
        product_id,
        product_name,
        subscriber_id,
        subscriber_email,
        credential_name,
        credential_value,
        subscription_id,
        units_json,
        attributes_json,
        source_file,
        cast(line_number as {{ dbt.type_bigint() }}) as line_number,
        load_id,
        cast(loaded_at as {{ dbt.type_timestamp() }}) as loaded_at

    from source

)

select * from renamed
