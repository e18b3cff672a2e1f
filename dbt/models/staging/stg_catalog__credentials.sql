with

source as (

    select * from {{ source('catalog', 'credentials') }}

),

renamed as (

    select
        subscription_id,
        credential_name,
        credential_value

    from source

)

select * from renamed
