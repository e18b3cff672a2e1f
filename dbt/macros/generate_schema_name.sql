{#
    Custom schemas are used verbatim (`staging`, `intermediate`, `marts`), not prefixed with the
    target schema: the marts are a contract read by Python and by users as `marts.<table>`.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
