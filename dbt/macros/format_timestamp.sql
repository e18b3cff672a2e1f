{#- A timestamp as 'YYYY-MM-DDTHH:MI:SS' (UTC, no offset): the form used in draft keys. -#}
{% macro format_timestamp(expression) -%}
    {{ return(adapter.dispatch('format_timestamp', 'meterhouse')(expression)) }}
{%- endmacro %}

{% macro duckdb__format_timestamp(expression) -%}
    strftime({{ expression }}, '%Y-%m-%dT%H:%M:%S')
{%- endmacro %}

{% macro spark__format_timestamp(expression) -%}
    date_format({{ expression }}, "yyyy-MM-dd'T'HH:mm:ss")
{%- endmacro %}

{% macro default__format_timestamp(expression) -%}
    to_char({{ expression }}, 'YYYY-MM-DD"T"HH24:MI:SS')
{%- endmacro %}

{#- The natural key of an invoice draft, shared with the Python ledger (marts.invoices.draft_key). -#}
{% macro draft_key(subscription_id, period_start, period_end) -%}
    {{ dbt.concat([
        subscription_id, "'|'",
        format_timestamp(period_start), "'|'",
        format_timestamp(period_end),
    ]) }}
{%- endmacro %}

{#- Stands in for an open end (null valid_to, end_at, phase_end_at) in half-open range checks. -#}
{% macro far_future() -%}
    cast('9999-12-31 00:00:00' as {{ dbt.type_timestamp() }})
{%- endmacro %}
