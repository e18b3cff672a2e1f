-- Usage invoice lines (SPEC §3.4, §3.6): the tiers each metric's quantity enters, their fixed
-- fees, a zero line for a metric with nothing billable, and a free-trial line. Each amount is
-- computed exactly in DECIMAL and rounded once, half-even, to the currency's minor unit
-- (macros/charge_product.sql: the product that stays exact on Spark too).
--
-- graduated: tier quantity = max(0, min(q, coalesce(upper, q)) - lower), for tiers with q > lower
-- volume:    the whole q at the one tier with lower < q <= upper (or unbounded)

with

usage as (

    select * from {{ ref('int_period_usage_filled') }}

),

tiers as (

    select * from {{ ref('stg_catalog__tiers') }}

),

entered_tiers as (

    select
        usage.draft_key,
        usage.subscription_id,
        usage.period_start,
        usage.period_end,
        usage.currency,
        usage.minor_units,
        usage.metric_name,
        usage.metric_position,
        usage.event_count,
        tiers.tier_position,
        tiers.tier_name,
        tiers.unit_rate,
        tiers.fixed_fee,
        cast(
            case
                when usage.tier_mode = 'volume' then usage.quantity
                when tiers.upper_bound is not null and tiers.upper_bound < usage.quantity
                    then tiers.upper_bound - tiers.lower_bound
                else usage.quantity - tiers.lower_bound
            end
            as decimal(21, 10)
        ) as tier_quantity

    from usage
    inner join tiers
        on usage.product_id = tiers.product_id
        and usage.metric_name = tiers.metric_name
    where
        usage.quantity > tiers.lower_bound
        and (
            usage.tier_mode = 'graduated'
            or tiers.upper_bound is null
            or usage.quantity <= tiers.upper_bound
        )

),

tier_lines as (

    select
        'tier' as line_type,
        draft_key,
        subscription_id,
        period_start,
        period_end,
        currency,
        metric_name as metric,
        tier_name,
        tier_quantity as quantity,
        unit_rate,
        cast(
            {{ round_half_even(charge_product('tier_quantity', 'unit_rate'), 'minor_units') }}
            as decimal(18, 3)
        ) as amount,
        event_count,
        {{ dbt.concat(['metric_name', "': '", 'tier_name']) }} as description,
        metric_position,
        tier_position,
        0 as line_rank

    from entered_tiers

),

-- a tier's fixed fee is its own line right after the tier's line
fixed_fee_lines as (

    select
        'fixed_fee' as line_type,
        draft_key,
        subscription_id,
        period_start,
        period_end,
        currency,
        metric_name as metric,
        {{ dbt.concat(['tier_name', "' (fixed fee)'"]) }} as tier_name,
        cast(1 as decimal(21, 10)) as quantity,
        -- unit_rate is decimal(17, 12) in the ledger: a fee of 100,000 or more does not fit
        case when fixed_fee < 100000 then cast(fixed_fee as decimal(17, 12)) end as unit_rate,
        cast({{ round_half_even('cast(fixed_fee as decimal(18, 6))', 'minor_units') }} as decimal(18, 3)) as amount,
        cast(null as {{ dbt.type_bigint() }}) as event_count,
        {{ dbt.concat(['metric_name', "': '", 'tier_name', "' (fixed fee)'"]) }} as description,
        metric_position,
        tier_position,
        1 as line_rank

    from entered_tiers
    where fixed_fee > 0

),

-- quantity 0 enters no tier: the metric still shows, at no charge
zero_lines as (

    select
        'no_tier' as line_type,
        draft_key,
        subscription_id,
        period_start,
        period_end,
        currency,
        metric_name as metric,
        cast(null as {{ dbt.type_string() }}) as tier_name,
        quantity,
        cast(null as decimal(17, 12)) as unit_rate,
        cast(0 as decimal(18, 3)) as amount,
        event_count,
        metric_name as description,
        metric_position,
        0 as tier_position,
        0 as line_rank

    from usage
    where quantity <= 0

),

trial_lines as (

    select
        'trial' as line_type,
        draft_key,
        subscription_id,
        period_start,
        period_end,
        currency,
        metric_name as metric,
        'Free trial' as tier_name,
        trial_quantity as quantity,
        cast(0 as decimal(17, 12)) as unit_rate,
        cast(0 as decimal(18, 3)) as amount,
        trial_event_count as event_count,
        {{ dbt.concat(['metric_name', "': Free trial'"]) }} as description,
        metric_position,
        2147483647 as tier_position,
        0 as line_rank

    from usage
    where trial_event_count > 0

),

unioned as (

    select * from tier_lines
    union all
    select * from fixed_fee_lines
    union all
    select * from zero_lines
    union all
    select * from trial_lines

)

select * from unioned
