{#
    Contract data types in the marts' yml are written once for both engines. Spark rejects a
    bare `varchar` ("requires a length parameter") where DuckDB reads it as its string type, and
    dbt's contract check casts null to each declared type. On Spark, declared types go through
    spark_type() first; everything else (integer, bigint, decimal(p,s), timestamp) means the same
    on both engines. The tables themselves get their types from the models' own casts.
#}
{% macro spark_type(data_type) -%}
    {%- set normalized = data_type | trim | lower -%}
    {%- if normalized in ('varchar', 'text', 'character varying') -%}
        {{ return('string') }}
    {%- endif -%}
    {{ return(data_type) }}
{%- endmacro %}

{#- dbt's default__get_empty_schema_sql, with the declared types made Spark's. -#}
{% macro spark__get_empty_schema_sql(columns) %}
    {%- set col_err = [] -%}
    select
    {% for i in columns %}
      {%- set col = columns[i] -%}
      {%- if col['data_type'] is not defined -%}
        {%- do col_err.append(col['name']) -%}
      {%- endif -%}
      {% set col_name = adapter.quote(col['name']) if col.get('quote') else col['name'] %}
      {{ cast('null', spark_type(col['data_type'] or '')) }} as {{ col_name }}{{ ", " if not loop.last }}
    {%- endfor -%}
    {%- if (col_err | length) > 0 -%}
      {{ exceptions.column_type_missing(column_names=col_err) }}
    {%- endif -%}
{% endmacro %}
