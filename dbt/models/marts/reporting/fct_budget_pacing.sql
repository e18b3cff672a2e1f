{{ config(alias='budget_pacing', tags=['reporting']) }}

-- Budget pacing: for every open period (period_start <= as_of < period_end of the run's clock),
-- per subscription and metric, the usage so far and two period-end projections:
--   linear: quantity x period length / elapsed time;
--   recent: quantity so far + the rate of the last quarter of the elapsed time over the rest of
--           the period (the draft's billable events of that quarter, as a share of all of them so
--           far, stand for the metric's quantity).
-- Only additive aggregations (sum, count, match) are projected; average, max and count_unique
-- keep their value so far. Each quantity is priced on the metric's tiers like an invoice line
-- (exact, then half-even to the minor unit); the draft's setup and recurring lines are added for
-- the projected total, which is compared with the subscription's catalog budget.

with

run_clock as (

    select max(as_of) as as_of from {{ source('reporting', 'run_clock') }}

),

open_drafts as (

    select
        drafts.draft_key,
        drafts.subscription_id,
        drafts.organization_id,
        drafts.product_id,
        drafts.currency,
        drafts.minor_units,
        drafts.period_start,
        drafts.period_end,
        drafts.total as amount_so_far,
        run_clock.as_of,
        {{ dbt.datediff('drafts.period_start', 'run_clock.as_of', 'second') }} as elapsed_seconds,
        {{ dbt.datediff('drafts.period_start', 'drafts.period_end', 'second') }} as period_seconds,
        {{ dbt.datediff('run_clock.as_of', 'drafts.period_end', 'second') }} as remaining_seconds

    from {{ ref('fct_invoice_drafts') }} as drafts
    cross join run_clock
    where
        drafts.period_start <= run_clock.as_of
        and drafts.period_end > run_clock.as_of

),

recent_events as (

    select
        open_drafts.draft_key,
        count(*) as billable_events,
        sum(
            case
                when {{ dbt.datediff('open_drafts.period_start', 'events.request_time', 'second') }} * 4
                    >= open_drafts.elapsed_seconds * 3
                    then 1
                else 0
            end
        ) as recent_events

    from {{ ref('int_events_attributed') }} as events
    inner join open_drafts
        on events.subscription_id = open_drafts.subscription_id
        and events.period_start = open_drafts.period_start
        and events.period_end = open_drafts.period_end
    where
        events.billing_status = 'billed'
        and not events.is_trial
        and events.request_time < open_drafts.as_of
    group by open_drafts.draft_key

),

fixed_lines as (

    select
        draft_key,
        sum(amount) as fixed_amount

    from {{ ref('fct_invoice_line_drafts') }}
    where kind in ('setup', 'recurring')
    group by draft_key

),

usage as (

    select
        open_drafts.*,
        usage_totals.metric,
        usage_totals.aggregation,
        metrics.tier_mode,
        usage_totals.quantity,
        usage_totals.aggregation in ('sum', 'count', 'match') as is_additive,
        coalesce(recent_events.billable_events, 0) as billable_events,
        coalesce(recent_events.recent_events, 0) as recent_events

    from open_drafts
    inner join {{ ref('fct_usage_by_period') }} as usage_totals
        on open_drafts.draft_key = usage_totals.draft_key
    inner join {{ ref('stg_catalog__metrics') }} as metrics
        on usage_totals.product_id = metrics.product_id
        and usage_totals.metric = metrics.metric_name
    left join recent_events
        on open_drafts.draft_key = recent_events.draft_key
    where usage_totals.breakdown = 'total'

),

projected as (

    select
        *,
        cast(
            case
                when is_additive and elapsed_seconds > 0
                    then {{ round_half_even(
                        'cast(quantity as decimal(21, 10)) * cast('
                        ~ divide_half_even('period_seconds', 'elapsed_seconds', 10)
                        ~ ' as decimal(20, 10))', 10) }}
                else quantity
            end
            as decimal(21, 10)
        ) as projected_quantity_linear,
        cast(
            case
                when is_additive and elapsed_seconds > 0 and billable_events > 0
                    then quantity + {{ round_half_even(
                        'cast(quantity as decimal(21, 10)) * cast('
                        ~ divide_half_even('recent_events * remaining_seconds * 4', 'billable_events * elapsed_seconds', 10)
                        ~ ' as decimal(20, 10))', 10) }}
                else quantity
            end
            as decimal(21, 10)
        ) as projected_quantity_recent

    from usage

),

scenarios as (

    select
        draft_key,
        metric,
        product_id,
        tier_mode,
        minor_units,
        'so_far' as scenario,
        quantity
    from projected
    union all
    select
        draft_key,
        metric,
        product_id,
        tier_mode,
        minor_units,
        'linear' as scenario,
        projected_quantity_linear as quantity
    from projected
    union all
    select
        draft_key,
        metric,
        product_id,
        tier_mode,
        minor_units,
        'recent' as scenario,
        projected_quantity_recent as quantity
    from projected

),

-- the tiers a quantity enters, priced as int_usage_lines_rated prices them
priced as (

    select
        scenarios.draft_key,
        scenarios.metric,
        scenarios.scenario,
        max(tiers.tier_position) as tier_position,
        sum(
            cast(
                {{ round_half_even(
                    "cast(case when scenarios.tier_mode = 'volume' then scenarios.quantity"
                    ~ " when tiers.upper_bound is not null and tiers.upper_bound < scenarios.quantity"
                    ~ " then tiers.upper_bound - tiers.lower_bound"
                    ~ " else scenarios.quantity - tiers.lower_bound end as decimal(21, 10))"
                    ~ " * cast(tiers.unit_rate as decimal(17, 12))",
                    'scenarios.minor_units') }}
                as decimal(18, 3)
            )
            + cast(
                {{ round_half_even('cast(tiers.fixed_fee as decimal(18, 6))', 'scenarios.minor_units') }}
                as decimal(18, 3)
            )
        ) as amount

    from scenarios
    inner join {{ ref('stg_catalog__tiers') }} as tiers
        on scenarios.product_id = tiers.product_id
        and scenarios.metric = tiers.metric_name
    where
        scenarios.quantity > tiers.lower_bound
        and (
            scenarios.tier_mode = 'graduated'
            or tiers.upper_bound is null
            or scenarios.quantity <= tiers.upper_bound
        )
    group by scenarios.draft_key, scenarios.metric, scenarios.scenario

),

pivoted as (

    select
        draft_key,
        metric,
        sum(case when scenario = 'so_far' then amount else 0 end) as usage_amount_so_far,
        sum(case when scenario = 'linear' then amount else 0 end) as projected_amount_linear,
        sum(case when scenario = 'recent' then amount else 0 end) as projected_amount_recent,
        max(case when scenario = 'so_far' then tier_position end) as tier_position,
        max(case when scenario = 'linear' then tier_position end) as projected_tier_position_linear,
        max(case when scenario = 'recent' then tier_position end) as projected_tier_position_recent

    from priced
    group by draft_key, metric

),

metric_rows as (

    select
        projected.*,
        coalesce(pivoted.usage_amount_so_far, 0) as usage_amount_so_far,
        coalesce(pivoted.projected_amount_linear, 0) as projected_amount_linear,
        coalesce(pivoted.projected_amount_recent, 0) as projected_amount_recent,
        pivoted.tier_position,
        pivoted.projected_tier_position_linear,
        pivoted.projected_tier_position_recent,
        coalesce(fixed_lines.fixed_amount, 0) as fixed_amount,
        budgets.budget

    from projected
    left join pivoted
        on projected.draft_key = pivoted.draft_key
        and projected.metric = pivoted.metric
    left join fixed_lines
        on projected.draft_key = fixed_lines.draft_key
    left join {{ source('reporting', 'subscription_budgets') }} as budgets
        on projected.subscription_id = budgets.subscription_id

),

draft_totals as (

    select
        draft_key,
        max(fixed_amount) + sum(projected_amount_linear) as projected_total_linear,
        max(fixed_amount) + sum(projected_amount_recent) as projected_total_recent

    from metric_rows
    group by draft_key

),

final as (

    select
        cast(metric_rows.draft_key as {{ dbt.type_string() }}) as draft_key,
        cast(metric_rows.subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(metric_rows.organization_id as {{ dbt.type_string() }}) as organization_id,
        cast(metric_rows.product_id as {{ dbt.type_string() }}) as product_id,
        cast(metric_rows.currency as {{ dbt.type_string() }}) as currency,
        cast(metric_rows.period_start as {{ dbt.type_timestamp() }}) as period_start,
        cast(metric_rows.period_end as {{ dbt.type_timestamp() }}) as period_end,
        cast(metric_rows.as_of as {{ dbt.type_timestamp() }}) as as_of,
        cast(metric_rows.elapsed_seconds as {{ dbt.type_bigint() }}) as elapsed_seconds,
        cast(metric_rows.period_seconds as {{ dbt.type_bigint() }}) as period_seconds,
        cast(metric_rows.metric as {{ dbt.type_string() }}) as metric,
        cast(metric_rows.aggregation as {{ dbt.type_string() }}) as aggregation,
        cast(metric_rows.tier_mode as {{ dbt.type_string() }}) as tier_mode,
        cast(metric_rows.quantity as decimal(21, 10)) as quantity,
        cast(metric_rows.billable_events as {{ dbt.type_bigint() }}) as billable_event_count,
        cast(metric_rows.recent_events as {{ dbt.type_bigint() }}) as recent_event_count,
        cast(metric_rows.projected_quantity_linear as decimal(21, 10)) as projected_quantity_linear,
        cast(metric_rows.projected_quantity_recent as decimal(21, 10)) as projected_quantity_recent,
        cast(metric_rows.usage_amount_so_far as decimal(18, 3)) as usage_amount_so_far,
        cast(metric_rows.projected_amount_linear as decimal(18, 3)) as projected_amount_linear,
        cast(metric_rows.projected_amount_recent as decimal(18, 3)) as projected_amount_recent,
        cast(metric_rows.tier_position as {{ dbt.type_int() }}) as tier_position,
        cast(metric_rows.projected_tier_position_linear as {{ dbt.type_int() }}) as projected_tier_position_linear,
        cast(metric_rows.projected_tier_position_recent as {{ dbt.type_int() }}) as projected_tier_position_recent,
        cast(
            coalesce(metric_rows.projected_tier_position_linear, 0) > coalesce(metric_rows.tier_position, 0)
            or coalesce(metric_rows.projected_tier_position_recent, 0) > coalesce(metric_rows.tier_position, 0)
            as boolean
        ) as crosses_tier,
        cast(metric_rows.amount_so_far as decimal(18, 3)) as draft_amount_so_far,
        cast(draft_totals.projected_total_linear as decimal(18, 3)) as projected_total_linear,
        cast(draft_totals.projected_total_recent as decimal(18, 3)) as projected_total_recent,
        cast(metric_rows.budget as decimal(18, 6)) as budget,
        cast(
            coalesce(
                metric_rows.budget < draft_totals.projected_total_linear
                or metric_rows.budget < draft_totals.projected_total_recent,
                false
            )
            as boolean
        ) as exceeds_budget

    from metric_rows
    inner join draft_totals
        on metric_rows.draft_key = draft_totals.draft_key

)

select * from final
