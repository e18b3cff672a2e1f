{#
    quantity (decimal(21,10)) x unit_rate (decimal(17,12)) as an expression that round_half_even
    turns into the exactly rounded charge, for any scale up to 9 (currencies use 0..4).

    DuckDB: the exact product, decimal(38,22) (precision p1 + p2 = 38).

    Spark types a product decimal(p1 + p2 + 1, s1 + s2): 39 digits here, so it cuts the scale to
    21 and rounds the 22nd decimal half-up, which can turn ...4999|5 into a false tie (and every
    narrower operand type would refuse real quantities or rates). So on Spark the product is taken
    in integers, (quantity x 10^10) x (rate x 10^12) as decimal(38,0), exact, and brought back
    as the product cut to 10 decimals plus a sticky 11th decimal 1 when anything was cut: no tie
    point of a scale up to 9 lies between the two, so half-even rounding gives the same result.
    A product of 10^15 or more (it would not fit the amount's decimal(18,3) either) becomes null,
    which the amount's not_null test reports; DuckDB fails on the cast.
#}
{% macro charge_product(quantity, unit_rate) -%}
    {{ return(adapter.dispatch('charge_product', 'meterhouse')(quantity, unit_rate)) }}
{%- endmacro %}

{% macro default__charge_product(quantity, unit_rate) -%}
    cast({{ quantity }} as decimal(21, 10)) * cast({{ unit_rate }} as decimal(17, 12))
{%- endmacro %}

{% macro spark__charge_product(quantity, unit_rate) -%}
    {%- set units -%}
        (
            cast(cast({{ quantity }} as decimal(21, 10)) * cast(10000000000 as decimal(11, 0)) as decimal(21, 0))
            * cast(cast({{ unit_rate }} as decimal(17, 12)) * cast(1000000000000 as decimal(13, 0)) as decimal(17, 0))
        )
    {%- endset -%}
    {%- set cut -%}({{ units }} % cast(1000000000000 as decimal(13, 0))){%- endset -%}
    (
        cast(
            cast(({{ units }} - {{ cut }}) / cast(100000000000 as decimal(12, 0)) as decimal(26, 0))
            + case when {{ cut }} <> 0 then 1 else 0 end
            as decimal(26, 0)
        )
        * cast('0.00000000001' as decimal(11, 11))
    )
{%- endmacro %}
