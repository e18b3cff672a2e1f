with

source as (

    select * from {{ source('catalog', 'metric_filters') }}

),

renamed as (

    select
        product_id,
        metric_name,
        field,
        allowed_value

    from source

)

select * from renamed
