with

source as (

    select * from {{ source('catalog', 'products') }}

),

renamed as (

    select
        product_id,
        product_name,
        currency,
        cast(minor_units as {{ dbt.type_int() }}) as minor_units,
        cast(recurring_charge as decimal(18, 6)) as recurring_charge,
        period_unit,
        cast(period_every as {{ dbt.type_int() }}) as period_every,
        billing_anchor,
        invoice_schedule,
        payment,
        cast(setup_fee as decimal(18, 6)) as setup_fee,
        cast(free_trial_days as {{ dbt.type_int() }}) as free_trial_days,
        cast(grace_period_hours as {{ dbt.type_int() }}) as grace_period_hours

    from source

)

select * from renamed
