with

source as (

    select * from {{ source('catalog', 'subscription_phases') }}

),

renamed as (

    select
        subscription_id,
        cast(phase_number as {{ dbt.type_int() }}) as phase_number,
        product_id,
        cast(phase_start_at as {{ dbt.type_timestamp() }}) as phase_start_at,
        cast(phase_end_at as {{ dbt.type_timestamp() }}) as phase_end_at

    from source

)

select * from renamed
