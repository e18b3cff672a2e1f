{#
    Text value of a (dotted) field of a JSON document column, null when absent. `field` has
    already been validated as a dotted identifier (contracts.catalog.FIELD_PATTERN), and is checked
    again here because it becomes part of a SQL literal.
#}
{% macro json_extract_text(json_column, field) -%}
    {{ return(adapter.dispatch('json_extract_text', 'meterhouse')(json_column, validated_field_name(field))) }}
{%- endmacro %}

{% macro duckdb__json_extract_text(json_column, field) -%}
    json_extract_string({{ json_column }}, {{ sql_literal('$.' ~ field) }})
{%- endmacro %}

{% macro default__json_extract_text(json_column, field) -%}
    get_json_object({{ json_column }}, {{ sql_literal('$.' ~ field) }})
{%- endmacro %}
