{#
    How a catalog field name (SPEC §1 camelCase, or an element name) reads an attributed event
    (columns of int_events_attributed). Standard fields come from typed columns; `units.<name>`
    from units_json; anything else from the event's JSON (attributes_json), so every field the
    hosted metering API sends can be filtered on and metered. Fields that only filters use
    (organizationId, subscriber.email, ...) are read from the JSON too, to keep the event table narrow.
#}

{#- string-valued standard fields -#}
{% macro event_text_columns() -%}
    {{ return({
        'eventType': 'event_type', 'event_type': 'event_type',
        'provider': 'provider',
        'model': 'model',
        'transactionId': 'transaction_id', 'transaction_id': 'transaction_id',
        'productId': 'event_product_id',
        'productName': 'event_product_name',
        'subscriber.id': 'subscriber_id',
        'subscriber.credential.value': 'credential_value',
    }) }}
{%- endmacro %}

{#- numeric standard fields: element names and their camelCase event fields -#}
{% macro event_numeric_columns() -%}
    {{ return({
        'total_cost': 'provider_cost_usd',
        'input_tokens': 'input_tokens', 'inputTokenCount': 'input_tokens',
        'output_tokens': 'output_tokens', 'outputTokenCount': 'output_tokens',
        'total_tokens': 'total_tokens', 'totalTokenCount': 'total_tokens',
        'reasoning_tokens': 'reasoning_tokens', 'reasoningTokenCount': 'reasoning_tokens',
        'cache_read_tokens': 'cache_read_tokens', 'cacheReadTokenCount': 'cache_read_tokens',
        'cache_creation_tokens': 'cache_creation_tokens', 'cacheCreationTokenCount': 'cache_creation_tokens',
    }) }}
{%- endmacro %}

{#- 'column', 'units' or 'attributes': where a field is read from -#}
{% macro event_field_origin(field) -%}
    {%- set field = validated_field_name(field) -%}
    {%- if field == 'requests' or field in event_text_columns() or field in event_numeric_columns() -%}
        {{ return('column') }}
    {%- elif field.startswith('units.') -%}
        {{ return('units') }}
    {%- else -%}
        {{ return('attributes') }}
    {%- endif -%}
{%- endmacro %}

{#- The field's value as text, for filters, count_unique and match. Booleans read as 'true'/'false'. -#}
{% macro event_field_text(field) -%}
    {%- set origin = event_field_origin(field) -%}
    {%- set text_columns = event_text_columns() -%}
    {%- set numeric_columns = event_numeric_columns() -%}
    {%- if field == 'requests' -%}
        '1'
    {%- elif field in text_columns -%}
        {{ text_columns[field] }}
    {%- elif field in numeric_columns -%}
        cast({{ numeric_columns[field] }} as {{ dbt.type_string() }})
    {%- elif origin == 'units' -%}
        {{ json_extract_text('units_json', field[6:]) }}
    {%- else -%}
        {{ json_extract_text('attributes_json', field) }}
    {%- endif -%}
{%- endmacro %}

{#-
    The metered element of an event as decimal(38, 10), null when the event has no numeric value
    for it. JSON values with more than 10 decimals are rounded half-even, never cut by a cast.
-#}
{% macro event_element_value(element) -%}
    {%- set origin = event_field_origin(element) -%}
    {%- set numeric_columns = event_numeric_columns() -%}
    {%- if element == 'requests' -%}
        cast(1 as decimal(38, 10))
    {%- elif element in numeric_columns -%}
        cast({{ numeric_columns[element] }} as decimal(38, 10))
    {%- else -%}
        {%- set text = event_field_text(element) -%}
        cast({{ round_half_even(dbt.safe_cast(text, 'decimal(38, 18)'), 10) }} as decimal(38, 10))
    {%- endif -%}
{%- endmacro %}

{#- Normalise a catalog value for comparison with event_field_text (YAML booleans become True/False). -#}
{% macro comparable_value(value) -%}
    {%- set text = value | string -%}
    {%- if text.lower() in ('true', 'false') -%}
        {{ return(text.lower()) }}
    {%- endif -%}
    {{ return(text) }}
{%- endmacro %}

{#- SQL predicate: for every filtered field, the event's value is one of the allowed values. -#}
{% macro metric_filter_predicate(filters) -%}
    {%- if not filters -%}
        1 = 1
    {%- else -%}
        {%- for field in filters | sort -%}
            {%- if not loop.first %} and {% endif -%}
            {{ event_field_text(field) }} in (
                {%- for value in filters[field] -%}
                    {{ sql_literal(comparable_value(value)) }}{% if not loop.last %}, {% endif %}
                {%- endfor -%}
            )
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
