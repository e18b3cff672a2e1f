{#
    On Spark the sources are not tables Python wrote into a database: dagster_project/billing/engines.py
    lands every raw and catalog table as Parquet under the lake (raw events partitioned by day,
    <lake>/raw/events/event_date=YYYY-MM-DD/*.parquet; every other table <lake>/<schema>/<table>/).
    This on-run-start hook registers each raw and catalog source of the project as a view over its folder, so
    `source('raw', 'events')` reads the Parquet files as they are at the start of the run (a view
    lists the files on every query: new day partitions need no `msck repair`). Views, not
    external tables, because the folders are replaced whole by each landing.

    DuckDB reads its own tables: nothing to do there.
#}
{% macro register_lake_sources() -%}
    {{ return(adapter.dispatch('register_lake_sources', 'meterhouse')()) }}
{%- endmacro %}

{% macro default__register_lake_sources() -%}
{%- endmacro %}

{% macro spark__register_lake_sources() -%}
    {%- if execute -%}
        {%- set lake = lake_root() -%}
        {%- set schemas = [] -%}
        {#- only the schemas Python lands (engines.LANDED_SCHEMAS); other sources are DuckDB's -#}
        {%- for node in graph.sources.values() | selectattr('schema', 'in', ['raw', 'catalog']) | sort(attribute='unique_id') -%}
            {%- if node.schema not in schemas -%}
                {%- do schemas.append(node.schema) -%}
                {%- do run_query('create schema if not exists ' ~ node.schema) -%}
            {%- endif -%}
            {%- do run_query(
                'create or replace view ' ~ node.schema ~ '.' ~ node.identifier
                ~ ' as select * from parquet.`' ~ lake ~ '/' ~ node.schema ~ '/' ~ node.identifier ~ '`'
            ) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- The lake folder: Python sets METERHOUSE_LAKE to <data dir>/lake (or a cluster's s3a://... URI). -#}
{% macro lake_root() -%}
    {%- set lake = env_var('METERHOUSE_LAKE', '../data/lake') | trim -%}
    {%- if '`' in lake -%}
        {{ exceptions.raise_compiler_error('METERHOUSE_LAKE must not contain a backtick: ' ~ lake) }}
    {%- endif -%}
    {{ return(lake.rstrip('/')) }}
{%- endmacro %}
