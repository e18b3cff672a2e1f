{{ config(alias='invoice_line_drafts') }}

-- Every line of every invoice draft: setup fee, recurring fee (both precomputed, prorated and
-- rounded by Python in catalog.subscription_periods) and the rated usage lines, numbered
-- 1..n in a fixed order: setup, recurring, then usage by metric position, tier position, a
-- tier's fixed fee right after its tier, the metric's free-trial line last.

with

periods as (

    select * from {{ ref('stg_catalog__subscription_periods') }}

),

products as (

    select
        product_id,
        product_name
    from {{ ref('stg_catalog__products') }}

),

usage_lines as (

    select * from {{ ref('int_usage_lines_rated') }}

),

setup_lines as (

    select
        periods.draft_key,
        periods.subscription_id,
        periods.product_id,
        periods.period_start,
        periods.period_end,
        'setup' as kind,
        'setup' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        cast(null as {{ dbt.type_string() }}) as tier_name,
        cast(1 as decimal(21, 10)) as quantity,
        case when periods.setup_amount < 100000 then cast(periods.setup_amount as decimal(17, 12)) end as unit_rate,
        periods.setup_amount as amount,
        periods.currency,
        cast(null as {{ dbt.type_bigint() }}) as event_count,
        {{ dbt.concat(['products.product_name', "' setup fee'"]) }} as description,
        1 as kind_rank,
        0 as metric_position,
        0 as tier_position,
        0 as line_rank

    from periods
    inner join products
        on periods.product_id = products.product_id
    where periods.setup_amount > 0

),

-- the line's period is the service period the fee covers (in_advance: the next period)
recurring_lines as (

    select
        periods.draft_key,
        periods.subscription_id,
        periods.product_id,
        coalesce(periods.recurring_start, periods.period_start) as period_start,
        coalesce(periods.recurring_end, periods.period_end) as period_end,
        'recurring' as kind,
        'recurring' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        cast(null as {{ dbt.type_string() }}) as tier_name,
        cast(1 as decimal(21, 10)) as quantity,
        case when periods.recurring_amount < 100000 then cast(periods.recurring_amount as decimal(17, 12)) end
            as unit_rate,
        periods.recurring_amount as amount,
        periods.currency,
        cast(null as {{ dbt.type_bigint() }}) as event_count,
        case
            when periods.recurring_note is null
                then {{ dbt.concat(['products.product_name', "' recurring charge'"]) }}
            else {{ dbt.concat(['products.product_name', "' recurring charge ('", 'periods.recurring_note', "')'"]) }}
        end as description,
        2 as kind_rank,
        0 as metric_position,
        0 as tier_position,
        0 as line_rank

    from periods
    inner join products
        on periods.product_id = products.product_id
    where periods.recurring_amount > 0 or periods.recurring_start is not null

),

metered_lines as (

    select
        usage_lines.draft_key,
        usage_lines.subscription_id,
        periods.product_id,
        usage_lines.period_start,
        usage_lines.period_end,
        'usage' as kind,
        usage_lines.line_type,
        usage_lines.metric,
        usage_lines.tier_name,
        usage_lines.quantity,
        usage_lines.unit_rate,
        usage_lines.amount,
        usage_lines.currency,
        usage_lines.event_count,
        usage_lines.description,
        3 as kind_rank,
        usage_lines.metric_position,
        usage_lines.tier_position,
        usage_lines.line_rank

    from usage_lines
    inner join periods
        on usage_lines.draft_key = periods.draft_key

),

unioned as (

    select * from setup_lines
    union all
    select * from recurring_lines
    union all
    select * from metered_lines

),

numbered as (

    select
        *,
        row_number() over (
            partition by draft_key
            order by kind_rank, metric_position, tier_position, line_rank, metric
        ) as line_number

    from unioned

),

final as (

    select
        cast(draft_key as {{ dbt.type_string() }}) as draft_key,
        cast(subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(product_id as {{ dbt.type_string() }}) as product_id,
        cast(period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(line_number as {{ dbt.type_int() }}) as line_number,
        cast(kind as {{ dbt.type_string() }}) as kind,
        cast(line_type as {{ dbt.type_string() }}) as line_type,
        cast(metric as {{ dbt.type_string() }}) as metric,
        cast(tier_name as {{ dbt.type_string() }}) as tier_name,
        cast(quantity as decimal(21, 10)) as quantity,
        cast(unit_rate as decimal(17, 12)) as unit_rate,
        cast(amount as decimal(18, 3)) as amount,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(event_count as {{ dbt.type_bigint() }}) as event_count,
        cast(description as {{ dbt.type_string() }}) as description

    from numbered

)

select * from final
