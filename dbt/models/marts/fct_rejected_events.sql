-- a view on DuckDB, a table on Spark (materialized in dbt_project.yml)
{{ config(alias='rejected_events') }}

-- Quarantined input lines (SPEC §1.1): never billed, never silently dropped.

with

rejected as (

    select * from {{ ref('stg_raw__rejected_events') }}

),

final as (

    select
        cast(source_file as {{ dbt.type_string() }}) as source_file,
        cast(line_number as {{ dbt.type_bigint() }}) as line_number,
        cast(reason as {{ dbt.type_string() }}) as reason,
        cast(field as {{ dbt.type_string() }}) as field,
        cast(raw as {{ dbt.type_string() }}) as raw,
        cast(load_id as {{ dbt.type_string() }}) as load_id,
        cast(rejected_at as {{ dbt.type_timestamp() }}) as rejected_at

    from rejected

)

select * from final
