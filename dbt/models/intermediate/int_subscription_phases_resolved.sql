-- The subscriber rule (SPEC §3.1, rule 3) looks a subscription up by subscriber, product and
-- time. This gives each (subscriber, product) a set of non-overlapping [active_from, active_until)
-- ranges so that the lookup is a hash join that can match at most one row per event.

with

phases as (

    select * from {{ ref('stg_catalog__subscription_phases') }}

),

subscriptions as (

    select * from {{ ref('stg_catalog__subscriptions') }}

),

bounded as (

    select
        phases.subscription_id,
        phases.phase_number,
        phases.product_id,
        subscriptions.subscriber_id,
        phases.phase_start_at as active_from,
        -- a phase never outlives its subscription's term
        case
            when coalesce(phases.phase_end_at, {{ far_future() }}) < coalesce(subscriptions.end_at, {{ far_future() }})
                then coalesce(phases.phase_end_at, {{ far_future() }})
            else coalesce(subscriptions.end_at, {{ far_future() }})
        end as phase_until

    from phases
    inner join subscriptions
        on phases.subscription_id = subscriptions.subscription_id

),

-- the catalog reports overlapping subscriptions of one subscriber on one product as an error;
-- should one get through anyway, the later start wins from its start on (docs: dbt/DECISIONS.md)
resolved as (

    select
        subscription_id,
        phase_number,
        product_id,
        subscriber_id,
        active_from,
        least(
            phase_until,
            coalesce(
                lead(active_from) over (
                    partition by subscriber_id, product_id
                    order by active_from, subscription_id
                ),
                {{ far_future() }}
            )
        ) as active_until

    from bounded

),

final as (

    select * from resolved
    where active_until > active_from

)

select * from final
