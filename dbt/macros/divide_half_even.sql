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

{#- Engines whose DECIMAL division keeps enough scale (Spark keeps at least 6 and up to 38 digits;
    checked again in the Spark issue). -#}
{% macro default__divide_half_even(numerator, denominator, scale) -%}
    case
        when {{ denominator }} <> 0
            then {{ round_half_even(
                'cast(' ~ numerator ~ ' as decimal(38, 10)) / cast(' ~ denominator ~ ' as decimal(38, 10))',
                scale) }}
    end
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
