{#
    Provider cost of an event's tokens at a price row, exact: each part is tokens (decimal(19,0))
    times a per-token rate (decimal(18,18)), narrowed to decimal(30,18) so that the sum of the four
    parts fits decimal(38) on every engine. The caller rounds the result half-even to 10 decimals.
#}
{% macro token_cost(event_alias, price_alias) -%}
    (
        {%- for part in ['input', 'output', 'cache_read', 'cache_creation'] %}
        cast(cast({{ event_alias }}.{{ part }}_tokens as decimal(19, 0)) * {{ price_alias }}.{{ part }}_per_token as decimal(30, 18))
        {%- if not loop.last %} +{% endif %}
        {%- endfor %}
    )
{%- endmacro %}
