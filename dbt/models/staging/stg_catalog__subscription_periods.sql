with

source as (

    select * from {{ source('catalog', 'subscription_periods') }}

),

renamed as (

    select
        {{ draft_key('subscription_id', 'period_start', 'period_end') }} as draft_key,
        subscription_id,
        cast(phase_number as {{ dbt.type_int() }}) as phase_number,
        product_id,
        currency,
        cast(minor_units as {{ dbt.type_int() }}) as minor_units,
        cast(period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(active_start as {{ dbt.type_timestamp() }}) as active_start,
        cast(active_end as {{ dbt.type_timestamp() }}) as active_end,
        cast(trial_end_at as {{ dbt.type_timestamp() }}) as trial_end_at,
        cast(due_at as {{ dbt.type_timestamp() }}) as due_at,
        cast(recurring_start as {{ dbt.type_timestamp() }}) as recurring_start,
        cast(recurring_end as {{ dbt.type_timestamp() }}) as recurring_end,
        cast(recurring_billable_seconds as {{ dbt.type_bigint() }}) as recurring_billable_seconds,
        cast(recurring_period_seconds as {{ dbt.type_bigint() }}) as recurring_period_seconds,
        cast(recurring_amount as decimal(18, 3)) as recurring_amount,
        cast(recurring_note as {{ dbt.type_string() }}) as recurring_note,
        cast(setup_amount as decimal(18, 3)) as setup_amount,
        -- opening drafts of in_advance products have an empty usage period: no event can fall in it
        period_end > period_start as has_usage_period

    from source

)

select * from renamed
