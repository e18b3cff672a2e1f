with

source as (

    select * from {{ source('catalog', 'metrics') }}

),

renamed as (

    select
        product_id,
        metric_name,
        cast(metric_position as {{ dbt.type_int() }}) as metric_position,
        element,
        aggregation,
        aggregation_field,
        match_value,
        tier_mode

    from source

)

select * from renamed
