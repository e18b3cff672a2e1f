-- Provider prices with a closed validity range [valid_from, valid_until) per
-- (organization, provider, model), and per-token rates, so that pricing an event is one
-- equi-join plus a half-open range check. A price row is valid until the next row of the same
-- key starts, even if its valid_to says later.

with

prices as (

    select * from {{ ref('stg_catalog__model_prices') }}

),

ranged as (

    select
        organization_id,
        provider,
        model,
        valid_from,
        least(
            coalesce(valid_to, {{ far_future() }}),
            coalesce(
                lead(valid_from) over (
                    partition by organization_id, provider, model
                    order by valid_from
                ),
                {{ far_future() }}
            )
        ) as valid_until,
        -- rate per token = rate per million * 10^-6, exact: a rate below 10^5 per million has
        -- at most 18 decimals and no integer digit per token
        cast(input_per_million * cast(0.000001 as decimal(7, 6)) as decimal(18, 18)) as input_per_token,
        cast(output_per_million * cast(0.000001 as decimal(7, 6)) as decimal(18, 18)) as output_per_token,
        cast(cache_read_per_million * cast(0.000001 as decimal(7, 6)) as decimal(18, 18)) as cache_read_per_token,
        cast(cache_creation_per_million * cast(0.000001 as decimal(7, 6)) as decimal(18, 18))
            as cache_creation_per_token

    from prices

),

final as (

    select * from ranged
    where valid_until > valid_from

)

select * from final
