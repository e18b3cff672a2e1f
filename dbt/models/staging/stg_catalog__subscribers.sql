with

source as (

    select * from {{ source('catalog', 'subscribers') }}

),

renamed as (

    select
        subscriber_id,
        subscriber_name,
        email as subscriber_email,
        organization_id,
        stripe_customer_id

    from source

)

select * from renamed
