"""Money arithmetic: the one Python rounding function (its SQL twin is the dbt macro
``round_half_even``). Both round half to even, once per invoice line."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from contracts.catalog import CURRENCY_MINOR_UNITS


def minor_units(currency: str) -> int:
    return CURRENCY_MINOR_UNITS[currency.upper()]


def round_money(amount: Decimal | Fraction | int, currency_or_minor_units: str | int) -> Decimal:
    """Round an exact amount to the currency's minor unit, half to even.

    A ``Fraction`` (prorated fees are rational: fee * active_seconds / period_seconds) is
    rounded exactly, without first passing through a finite decimal.
    """
    units = (
        currency_or_minor_units
        if isinstance(currency_or_minor_units, int)
        else minor_units(currency_or_minor_units)
    )
    quantum = Decimal(1).scaleb(-units)
    if isinstance(amount, Fraction):
        scaled = amount * 10**units
        whole, remainder = divmod(scaled.numerator, scaled.denominator)
        twice = 2 * remainder
        if twice > scaled.denominator or (twice == scaled.denominator and whole % 2 == 1):
            whole += 1
        return (Decimal(whole) * quantum).quantize(quantum)
    return Decimal(amount).quantize(quantum, rounding=ROUND_HALF_EVEN)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Integer amount in the currency's smallest unit (what payment processors take)."""
    units = minor_units(currency)
    rounded = round_money(amount, units)
    return int(rounded.scaleb(units))


def format_money(amount: Decimal, currency: str) -> str:
    """`1,234.50 USD`-style text for documents; the amount keeps its exact minor units."""
    units = minor_units(currency)
    return f"{round_money(amount, units):,.{units}f} {currency.upper()}"
