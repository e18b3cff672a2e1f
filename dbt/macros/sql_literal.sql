{#
    A catalog string as a SQL string literal. Catalog rows are data: every string that reaches
    generated SQL goes through here (quotes doubled; Spark also treats backslash as an escape).
#}
{% macro sql_literal(value) -%}
    {{ return(adapter.dispatch('sql_literal', 'meterhouse')(value)) }}
{%- endmacro %}

{% macro default__sql_literal(value) -%}
    {%- if value is none -%}
        null
    {%- else -%}
        '{{ (value | string).replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}

{% macro spark__sql_literal(value) -%}
    {%- if value is none -%}
        null
    {%- else -%}
        '{{ (value | string).replace("\\", "\\\\").replace("'", "\\'") }}'
    {%- endif -%}
{%- endmacro %}

{#- Field names from the catalog (element, filter, aggregation_field): dotted identifiers only. -#}
{% macro validated_field_name(field) -%}
    {%- if field is none or not modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*', field) -%}
        {{ exceptions.raise_compiler_error('invalid event field name in the catalog: ' ~ field) }}
    {%- endif -%}
    {{ return(field) }}
{%- endmacro %}
