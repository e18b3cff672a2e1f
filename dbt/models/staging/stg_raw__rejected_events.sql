with

source as (

    select * from {{ source('raw', 'rejected_events') }}

),

renamed as (

    select
        source_file,
        cast(line_number as {{ dbt.type_bigint() }}) as line_number,
        reason,
        field,
        raw,
        load_id,
        cast(rejected_at as {{ dbt.type_timestamp() }}) as rejected_at

    from source

)

select * from renamed
