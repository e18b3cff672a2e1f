with

source as (

    select * from {{ source('catalog', 'subscriptions') }}

),

renamed as (

    select
        subscription_id,
        subscription_name,
        subscriber_id,
        cast(start_at as {{ dbt.type_timestamp() }}) as start_at,
        cast(end_at as {{ dbt.type_timestamp() }}) as end_at

    from source

)

select * from renamed
