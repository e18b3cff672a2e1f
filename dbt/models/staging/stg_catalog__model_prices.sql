with

source as (

    select * from {{ source('catalog', 'model_prices') }}

),

renamed as (

    select
        organization_id,
        provider,
        model,
        cast(input_per_million as decimal(17, 12)) as input_per_million,
        cast(output_per_million as decimal(17, 12)) as output_per_million,
        cast(cache_read_per_million as decimal(17, 12)) as cache_read_per_million,
        cast(cache_creation_per_million as decimal(17, 12)) as cache_creation_per_million,
        cast(valid_from as {{ dbt.type_timestamp() }}) as valid_from,
        cast(valid_to as {{ dbt.type_timestamp() }}) as valid_to

    from source

)

select * from renamed
