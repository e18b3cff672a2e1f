{{ config(
    materialized=('incremental' if target.type == 'duckdb' else 'table'),
    incremental_strategy='append',
) }}

-- One row per accepted event: which subscription, product and period it bills to (or why it is
-- unbilled), its display credential and its provider cost. The only model that reads every
-- event with joins, so it is one pass of hash joins against small catalog tables (the billing
-- period's included), and it is a table: everything downstream aggregates it.
--
-- Incremental on DuckDB: a run attributes only the loads not in the table yet. An event's row
-- depends on nothing but the event, the catalog and this project's SQL, so when any of those
-- last two changed, `meterhouse bill` drops the table before dbt runs and it is built whole
-- (dagster_project/billing/rating_state.py). Late events are new loads like any other.

{%- set definitions = metric_definitions(ref('stg_catalog__metrics'), ref('stg_catalog__metric_filters')) %}
{%- set attribute_products = definitions
    | selectattr('needs_attributes') | map(attribute='product_id') | unique | list %}
{%- set product_literals = [] %}
{%- for product_id in attribute_products %}
    {%- do product_literals.append(sql_literal(product_id)) %}
{%- endfor %}
{%- if product_literals %}
    {%- set attributes_json = 'case when period_product_id in (' ~ product_literals | join(', ') ~ ') then attributes_json end' %}
{%- else %}
    {%- set attributes_json = 'cast(null as ' ~ dbt.type_string() ~ ')' %}
{%- endif %}

with

events as (

    select * from {{ ref('stg_raw__events') }}
    {% if is_incremental() %}
        -- `in` a short list of loads, not `not in` the table's: DuckDB then filters the scan by
        -- load_id before reading the other columns (20 M events: 0.14 s instead of 2.5 s)
        where load_id in (
                select loads.load_id
                from (select distinct load_id from {{ ref('stg_raw__events') }}) as loads
                where loads.load_id not in (select distinct load_id from {{ this }})
            )
    {% endif %}

),

subscriptions as (

    select
        subscription_id,
        subscriber_id
    from {{ ref('stg_catalog__subscriptions') }}

),

credentials as (

    select
        subscription_id,
        credential_name,
        credential_value
    from {{ ref('stg_catalog__credentials') }}

),

product_keys as (

    select
        product_key,
        product_id
    from {{ ref('int_product_keys_unioned') }}

),

subscriber_phases as (

    select
        subscription_id,
        subscriber_id,
        product_id,
        active_from,
        active_until
    from {{ ref('int_subscription_phases_resolved') }}

),

organizations as (

    select
        organization_id,
        organization_name
    from {{ ref('stg_catalog__organizations') }}

),

organizations_by_name as (

    select
        organization_name,
        min(organization_id) as organization_id

    from organizations
    group by organization_name

),

subscription_organizations as (

    select
        subscriptions.subscription_id,
        subscribers.organization_id

    from subscriptions
    inner join {{ ref('stg_catalog__subscribers') }} as subscribers
        on subscriptions.subscriber_id = subscribers.subscriber_id

),

list_prices as (

    select * from {{ ref('int_model_prices_ranged') }}
    where organization_id is null

),

organization_prices as (

    select * from {{ ref('int_model_prices_ranged') }}
    where organization_id is not null

),

-- rules 1 and 2, and the catalog product the event names (by id or name, case-insensitive)
matched as (

    select
        events.transaction_id,
        events.request_time,
        events.event_type,
        events.provider,
        events.model,
        events.input_tokens,
        events.output_tokens,
        events.reasoning_tokens,
        events.cache_read_tokens,
        events.cache_creation_tokens,
        events.total_tokens,
        events.reported_cost_usd,
        events.organization_id as event_organization_id,
        events.organization_name as event_organization_name,
        events.product_id as event_product_id,
        events.product_name as event_product_name,
        events.subscriber_id,
        events.credential_name as event_credential_name,
        events.credential_value,
        events.units_json,
        events.attributes_json,
        events.source_file,
        events.line_number,
        events.load_id,
        explicit_subscription.subscription_id as explicit_subscription_id,
        catalog_credential.subscription_id as credential_subscription_id,
        catalog_credential.credential_name as catalog_credential_name,
        coalesce(product_by_id.product_id, product_by_name.product_id) as matched_product_id

    from events
    left join subscriptions as explicit_subscription
        on events.subscription_id = explicit_subscription.subscription_id
    left join credentials as catalog_credential
        on events.credential_value = catalog_credential.credential_value
    left join product_keys as product_by_id
        on lower(events.product_id) = product_by_id.product_key
    left join product_keys as product_by_name
        on lower(events.product_name) = product_by_name.product_key

),

-- rule 3: the subscriber's subscription whose phase at request_time is on the named product
attributed as (

    select
        matched.*,
        coalesce(
            matched.explicit_subscription_id,
            matched.credential_subscription_id,
            subscriber_phase.subscription_id
        ) as subscription_id,
        case
            when matched.explicit_subscription_id is not null then 'subscription_id'
            when matched.credential_subscription_id is not null then 'credential'
            when subscriber_phase.subscription_id is not null then 'subscriber'
        end as attribution_rule

    from matched
    left join subscriber_phases as subscriber_phase
        on matched.subscriber_id = subscriber_phase.subscriber_id
        and matched.matched_product_id = subscriber_phase.product_id
        and matched.request_time >= subscriber_phase.active_from
        and matched.request_time < subscriber_phase.active_until
        and matched.explicit_subscription_id is null
        and matched.credential_subscription_id is null

),

-- the billing period of an event: the usage period whose stretch (where the period and the
-- subscription's active range overlap; one subscription's stretches never overlap) holds its
-- request_time. Stretches are cut into buckets of a power of two of microseconds near the
-- subscription's average stretch, so an event finds its stretch by a hash join on (subscription,
-- bucket) among usually one or two candidates: the event rows are not sorted (an ASOF join
-- sorted them and spilled ~20 GB at 20 M events: 120 s, against 23 s), and a subscription on
-- 5-minute periods does not make each event probe thousands. A bucket is at least half the
-- average stretch, so a subscription has at most four bucket rows per stretch on average.
period_stretches as (

    select
        subscription_id,
        product_id,
        period_start,
        period_end,
        active_start,
        active_end,
        trial_end_at,
        {{ epoch_microseconds('greatest(period_start, active_start)') }} as stretch_start_us,
        {{ epoch_microseconds('least(period_end, active_end)') }} as stretch_end_us

    -- periods an event can fall in; opening drafts of in_advance products have none
    from {{ ref('stg_catalog__subscription_periods') }}
    where has_usage_period and least(period_end, active_end) > greatest(period_start, active_start)

),

stretch_bucket_sizes as (

    select
        subscription_id,
        cast(
            pow(2, floor(log2(greatest(1, sum(stretch_end_us - stretch_start_us) / count(*)))))
            as {{ dbt.type_bigint() }}
        ) as bucket_us

    from period_stretches
    group by subscription_id

),

stretch_buckets as (

    select
        stretches.*,
        {{ series_values(
            integer_divide('stretches.stretch_start_us', 'sizes.bucket_us'),
            integer_divide('stretches.stretch_end_us - 1', 'sizes.bucket_us'),
        ) }} as bucket

    from period_stretches as stretches
    inner join stretch_bucket_sizes as sizes
        on stretches.subscription_id = sizes.subscription_id

),

placed as (

    select
        attributed.*,
        stretch.active_start as placed_active_start,
        stretch.product_id as period_product_id,
        stretch.period_start as placed_period_start,
        stretch.period_end as placed_period_end,
        stretch.trial_end_at

    from attributed
    left join stretch_bucket_sizes as bucket_size
        on attributed.subscription_id = bucket_size.subscription_id
    left join stretch_buckets as stretch
        on attributed.subscription_id = stretch.subscription_id
        and stretch.bucket
        = {{ integer_divide(epoch_microseconds('attributed.request_time'), 'bucket_size.bucket_us') }}
        and attributed.request_time >= stretch.active_start
        and attributed.request_time < stretch.active_end
        and attributed.request_time >= stretch.period_start
        and attributed.request_time < stretch.period_end

),

-- the organization whose negotiated model prices apply: the one the event names, else the
-- organization of the subscriber the event is attributed to
organized as (

    select
        placed.*,
        coalesce(
            organization_by_id.organization_id,
            organization_by_name.organization_id,
            subscription_organization.organization_id
        ) as organization_id

    from placed
    left join organizations as organization_by_id
        on placed.event_organization_id = organization_by_id.organization_id
    left join organizations_by_name as organization_by_name
        on placed.event_organization_name = organization_by_name.organization_name
    left join subscription_organizations as subscription_organization
        on placed.subscription_id = subscription_organization.subscription_id

),

priced as (

    select
        organized.*,
        case
            when organized.reported_cost_usd is not null then 'reported'
            when organization_price.provider is not null then 'organization_price'
            when list_price.provider is not null then 'list_price'
        end as cost_source,
        case
            when organized.reported_cost_usd is not null then organized.reported_cost_usd
            when organization_price.provider is not null
                then cast({{ round_half_even(token_cost('organized', 'organization_price'), 10) }} as decimal(20, 10))
            when list_price.provider is not null
                then cast({{ round_half_even(token_cost('organized', 'list_price'), 10) }} as decimal(20, 10))
        end as provider_cost_usd

    from organized
    left join organization_prices as organization_price
        on organized.reported_cost_usd is null
        and organized.organization_id = organization_price.organization_id
        and organized.provider = organization_price.provider
        and organized.model = organization_price.model
        and organized.request_time >= organization_price.valid_from
        and organized.request_time < organization_price.valid_until
    left join list_prices as list_price
        on organized.reported_cost_usd is null
        and organized.provider = list_price.provider
        and organized.model = list_price.model
        and organized.request_time >= list_price.valid_from
        and organized.request_time < list_price.valid_until

),

final as (

    select
        transaction_id,
        request_time,
        event_type,
        provider,
        model,
        input_tokens,
        output_tokens,
        reasoning_tokens,
        cache_read_tokens,
        cache_creation_tokens,
        total_tokens,
        reported_cost_usd,
        provider_cost_usd,
        cost_source,
        organization_id,
        event_product_id,
        event_product_name,
        matched_product_id,
        subscriber_id,
        credential_value,
        catalog_credential_name is not null as is_catalog_credential,
        case
            when credential_value is null then '(none)'
            when catalog_credential_name is not null then catalog_credential_name
            when event_credential_name is not null then event_credential_name
            else {{ dbt.concat(["'…'", dbt.right('credential_value', 4)]) }}
        end as credential_name,
        attribution_rule,
        subscription_id,
        case when placed_active_start is not null then period_product_id end as product_id,
        case when placed_active_start is not null then placed_period_start end as period_start,
        case when placed_active_start is not null then placed_period_end end as period_end,
        coalesce(placed_active_start is not null and request_time < trial_end_at, false) as is_trial,
        case when placed_active_start is not null then 'billed' else 'unbilled' end as billing_status,
        case
            when placed_active_start is not null then null
            when subscription_id is not null then 'outside_subscription_term'
            when matched_product_id is null then 'unknown_product'
            else 'no_matching_subscription'
        end as unbilled_reason,
        units_json,
        -- the whole event's JSON is kept only where a metric reads a field from it
        {{ attributes_json }} as attributes_json,
        source_file,
        line_number,
        load_id

    from priced

)

select * from final
