{#-
    The finance reports group int_drafts_margined at several grains (customer, product, month);
    these two macros keep their measures identical. `margin_aggregates` goes in the grouped
    select; `margin_columns` in the final select over it (margin and margin % in USD).
-#}
{% macro margin_aggregates() -%}
        sum(revenue) as revenue,
        sum(invoiced_revenue) as invoiced_revenue,
        sum(late_revenue) as late_revenue,
        sum(pending_revenue) as pending_revenue,
        -- drafts in a currency without an FX rate for their period have no USD value: left out
        -- of the USD sums and counted, so a report can say it is short
        sum(invoiced_revenue_usd + late_revenue_usd) as revenue_usd,
        sum(pending_revenue_usd) as pending_revenue_usd,
        count(*) - count(usd_per_unit) as drafts_without_fx_rate,
        sum(provider_cost_usd) as provider_cost_usd,
        sum(trial_cost_usd) as trial_cost_usd,
        sum(billable_event_count) as billable_event_count,
        sum(trial_event_count) as trial_event_count,
        sum(events_without_cost) as events_without_cost,
        count(*) as draft_count,
        sum(case when status = 'issued' then 1 else 0 end) as invoiced_draft_count,
        case
            when sum(case when status = 'issued' then 1 else 0 end) = count(*) then 'invoiced'
            when sum(case when status = 'held' then 1 else 0 end) > 0 then 'held'
            when sum(case when status = 'open' then 1 else 0 end) > 0 then 'open'
            when sum(case when status = 'due' then 1 else 0 end) > 0 then 'due'
            when sum(case when status = 'void' then 1 else 0 end) = count(*) then 'void'
            else 'partly_invoiced'
        end as status
{%- endmacro %}

{% macro margin_columns() -%}
        cast(revenue_usd as decimal(28, 10)) as revenue_usd,
        cast(pending_revenue_usd as decimal(28, 10)) as pending_revenue_usd,
        cast(provider_cost_usd as decimal(28, 10)) as provider_cost_usd,
        cast(trial_cost_usd as decimal(28, 10)) as trial_cost_usd,
        cast(revenue_usd - provider_cost_usd as decimal(28, 10)) as margin,
        cast(
            case
                when revenue_usd <> 0 then {{ divide_half_even('revenue_usd - provider_cost_usd', 'revenue_usd', 10) }}
            end
            as decimal(28, 10)
        ) as margin_pct,
        cast(billable_event_count as {{ dbt.type_bigint() }}) as billable_event_count,
        cast(trial_event_count as {{ dbt.type_bigint() }}) as trial_event_count,
        cast(events_without_cost as {{ dbt.type_bigint() }}) as events_without_cost,
        cast(draft_count as {{ dbt.type_int() }}) as draft_count,
        cast(drafts_without_fx_rate as {{ dbt.type_int() }}) as drafts_without_fx_rate,
        cast(invoiced_draft_count as {{ dbt.type_int() }}) as invoiced_draft_count,
        cast(status as {{ dbt.type_string() }}) as status
{%- endmacro %}
