with

source as (

    select * from {{ source('catalog', 'tiers') }}

),

renamed as (

    select
        product_id,
        metric_name,
        cast(tier_position as {{ dbt.type_int() }}) as tier_position,
        tier_name,
        cast(lower_bound as decimal(21, 10)) as lower_bound,
        cast(upper_bound as decimal(21, 10)) as upper_bound,
        cast(unit_rate as decimal(17, 12)) as unit_rate,
        cast(fixed_fee as decimal(18, 6)) as fixed_fee,
        notify_at_percent

    from source

)

select * from renamed
