with

source as (

    select * from {{ source('catalog', 'organizations') }}

),

renamed as (

    select
        organization_id,
        organization_name

    from source

)

select * from renamed
