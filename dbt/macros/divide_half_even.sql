{#
    numerator / denominator rounded half-even to `scale` (a literal int) decimals, exactly.

    DuckDB divides DECIMALs through DOUBLE, so the DuckDB version scales both operands to
    integers (10 decimals) and divides HUGEINTs: q = |n| // |d|, then the remainder decides the
    half-even step. Operands must have at most 10 decimals and |numerator| < 10^(27 - scale).
    A zero denominator gives null (callers guard it anyway).
#}
{% macro divide_half_even(numerator, denominator, scale) -%}
    {{ return(adapter.dispatch('divide_half_even', 'meterhouse')(numerator, denominator, scale)) }}
{%- endmacro %}

{#- Engines whose DECIMAL division keeps enough scale (checked on DuckDB and Spark only). -#}
{% macro default__divide_half_even(numerator, denominator, scale) -%}
    case
        when {{ denominator }} <> 0
            then {{ round_half_even(
                'cast(' ~ numerator ~ ' as decimal(38, 10)) / cast(' ~ denominator ~ ' as decimal(38, 10))',
                scale) }}
    end
{%- endmacro %}

{#-
    Spark's DECIMAL division is no help: decimal(38,10) / decimal(38,10) is typed decimal(38,6),
    rounded half-up at the 6th decimal before any half-even rounding could see the digits. So the
    same integer algorithm as on DuckDB, in decimal(38,0) (exact; Spark has no HUGEINT): both
    operands scaled to integers, q = (n - r) / d with r = n % d (an exact integer quotient, so its
    decimal(38,6) type loses nothing), then the remainder decides the half-even step. The result is
    an integer times 10^-scale, multiplied as decimal(37 - scale, 0) x decimal(scale, scale) so the
    product type stays within 38 digits (Spark would otherwise cut its scale). Same limits as on
    DuckDB: operands with at most 10 decimals, |numerator| < 10^(27 - scale).
-#}
{% macro spark__divide_half_even(numerator, denominator, scale) -%}
    {%- set n -%}
        cast(cast(abs(cast({{ numerator }} as decimal(28, 10))) * cast(10000000000 as decimal(11, 0)) as decimal(38, 0))
            * cast({{ 10 ** scale }} as decimal({{ scale + 1 }}, 0)) as decimal(38, 0))
    {%- endset -%}
    {%- set d -%}
        cast(abs(cast({{ denominator }} as decimal(28, 10))) * cast(10000000000 as decimal(11, 0)) as decimal(38, 0))
    {%- endset -%}
    {%- set r -%}({{ n }} % nullif({{ d }}, 0)){%- endset -%}
    {%- set q -%}cast(({{ n }} - {{ r }}) / nullif({{ d }}, 0) as decimal(38, 0)){%- endset -%}
    {%- set rounded -%}
        cast(
            {{ q }}
            + case
                when {{ r }} > {{ d }} - {{ r }} then 1
                when {{ r }} = {{ d }} - {{ r }} and {{ q }} % 2 = 1 then 1
                else 0
            end
            as decimal({{ 37 - scale }}, 0)
        )
    {%- endset -%}
    (
        {#- the sign by a CASE, not by multiplying with -1: that would widen the type past 38 digits #}
        case when ({{ numerator }} < 0) <> ({{ denominator }} < 0) then -{{ rounded }} else {{ rounded }} end
        {%- if scale > 0 %}
        * cast('{{ "0." ~ ("0" * (scale - 1)) ~ "1" }}' as decimal({{ scale }}, {{ scale }}))
        {%- endif %}
    )
{%- endmacro %}

{% macro duckdb__divide_half_even(numerator, denominator, scale) -%}
    {%- set n -%}
        (abs(cast(cast({{ numerator }} as decimal(38, 10)) * 10000000000 as hugeint)) * cast({{ 10 ** scale }} as hugeint))
    {%- endset -%}
    {%- set d -%}
        abs(cast(cast({{ denominator }} as decimal(38, 10)) * 10000000000 as hugeint))
    {%- endset -%}
    {%- set q -%}({{ n }} // nullif({{ d }}, 0)){%- endset -%}
    {%- set twice_r -%}(2 * ({{ n }} % nullif({{ d }}, 0))){%- endset -%}
    (
        cast(
            case when ({{ numerator }} < 0) <> ({{ denominator }} < 0) then -1 else 1 end
            * (
                {{ q }}
                + case
                    when {{ twice_r }} > {{ d }} then 1
                    when {{ twice_r }} = {{ d }} and {{ q }} % 2 = 1 then 1
                    else 0
                end
            )
            as decimal(38, 0)
        )
        {%- if scale > 0 %}
        * cast('{{ "0." ~ ("0" * (scale - 1)) ~ "1" }}' as decimal({{ scale + 1 }}, {{ scale }}))
        {%- endif %}
    )
{%- endmacro %}
