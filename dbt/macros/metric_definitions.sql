{#
    The catalog's metrics, read at run time (catalog rows are data, so the per-metric SQL is
    generated from them on every run). Returns a list of dicts, one per metric:
      product_id, metric_name, metric_position, element, aggregation, aggregation_field,
      match_value, tier_mode, filters {field: [allowed values]}, needs_attributes
    Returns [] while dbt parses (no database then). The relations are passed in by the calling
    model so that dbt records the dependency when it parses the model.
#}
{% macro metric_definitions(metrics_relation, filters_relation) -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}

    {%- set metrics_query -%}
        select product_id, metric_name, metric_position, element, aggregation, aggregation_field, match_value, tier_mode
        from {{ metrics_relation }}
        order by product_id, metric_position, metric_name
    {%- endset -%}
    {%- set filters_query -%}
        select product_id, metric_name, field, allowed_value
        from {{ filters_relation }}
        order by product_id, metric_name, field, allowed_value
    {%- endset -%}
    {%- set metric_rows = run_query(metrics_query).rows -%}
    {%- set filter_rows = run_query(filters_query).rows -%}

    {%- set filters_by_metric = {} -%}
    {%- for row in filter_rows -%}
        {%- set key = row['product_id'] ~ '|' ~ row['metric_name'] -%}
        {%- do filters_by_metric.setdefault(key, {}).setdefault(row['field'], []).append(row['allowed_value']) -%}
    {%- endfor -%}

    {%- set definitions = [] -%}
    {%- for row in metric_rows -%}
        {%- set filters = filters_by_metric.get(row['product_id'] ~ '|' ~ row['metric_name'], {}) -%}
        {%- if row['aggregation'] not in ('sum', 'average', 'max', 'count', 'count_unique', 'match') -%}
            {{ exceptions.raise_compiler_error('metric ' ~ row['metric_name'] ~ ': unknown aggregation ' ~ row['aggregation']) }}
        {%- endif -%}
        {%- if row['aggregation'] in ('count_unique', 'match') and row['aggregation_field'] is none -%}
            {{ exceptions.raise_compiler_error('metric ' ~ row['metric_name'] ~ ': aggregation ' ~ row['aggregation'] ~ ' needs aggregation_field') }}
        {%- endif -%}
        {%- set fields = [row['element']] + (filters | list) -%}
        {%- if row['aggregation_field'] is not none -%}
            {%- do fields.append(row['aggregation_field']) -%}
        {%- endif -%}
        {%- set origins = [] -%}
        {%- for field in fields -%}
            {%- do origins.append(event_field_origin(field)) -%}
        {%- endfor -%}
        {%- do definitions.append({
            'product_id': row['product_id'],
            'metric_name': row['metric_name'],
            'metric_position': row['metric_position'],
            'element': row['element'],
            'aggregation': row['aggregation'],
            'aggregation_field': row['aggregation_field'],
            'match_value': row['match_value'],
            'tier_mode': row['tier_mode'],
            'filters': filters,
            'needs_attributes': 'attributes' in origins,
        }) -%}
    {%- endfor -%}
    {{ return(definitions) }}
{%- endmacro %}
