"""Which invoice drafts a subscription has, and what fixed fees they carry.

Each draft is one row of ``catalog.subscription_periods``: the usage period it closes and
the recurring/setup fees it bills. Rules (SPEC §3.5–3.6, docs/DECISIONS.md):

* A subscription is split into phases at plan changes; each phase rates on its product.
* A usage period is the product's natural period clipped to the phase: it starts at the
  later of the natural start and the phase start, and ends at the earlier of the natural
  end and the phase end, so a start, a plan change, a cancellation or an expiry closes the
  period at that instant.
* The recurring fee is prorated by seconds: fee x billable seconds / natural period
  seconds, where billable seconds exclude the free trial; computed exactly with
  ``Fraction`` and rounded once, half-even.
* ``in_arrears``: a draft bills the recurring fee of its own period. ``in_advance``: a draft
  closing at boundary b bills the fee of the period beginning at b (on whichever phase it
  falls), and an opening draft with an empty usage period at the subscription start bills
  the setup fee and the first fee.
* The setup fee goes on the subscription's first draft.
* The free trial runs ``[start, start + free_trial_days)`` of the first phase's product.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from contracts.catalog import Catalog, Product, Subscription
from dagster_project.lib.money import round_money
from dagster_project.lib.periods import EPOCH, as_utc_naive, period_containing, seconds


@dataclass(frozen=True)
class Phase:
    number: int
    product: Product
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class UsagePeriod:
    phase: Phase
    start: datetime
    end: datetime
    natural_start: datetime
    natural_end: datetime


def phases_of(subscription: Subscription, catalog: Catalog) -> list[Phase]:
    boundaries = [(as_utc_naive(subscription.start), subscription.product)]
    boundaries += [(as_utc_naive(change.at), change.product) for change in subscription.changes]
    end = as_utc_naive(subscription.end) if subscription.end else None
    phases = []
    for number, (start, product_id) in enumerate(boundaries, start=1):
        phase_end = boundaries[number][0] if number < len(boundaries) else end
        phases.append(Phase(number, catalog.product(product_id), start, phase_end))
    return phases


def _origin(product: Product, phase: Phase) -> datetime:
    return phase.start if product.billing_anchor == "anniversary" else EPOCH


def _usage_period_at(phase: Phase, moment: datetime) -> UsagePeriod:
    product = phase.product
    natural_start, natural_end = period_containing(
        moment, product.invoicing_period.unit.value, product.invoicing_period.every, _origin(product, phase)
    )
    end = natural_end if phase.end is None else min(natural_end, phase.end)
    return UsagePeriod(phase, max(natural_start, phase.start), end, natural_start, natural_end)


def usage_periods(phase: Phase, horizon: datetime) -> list[UsagePeriod]:
    """The phase's usage periods that start before ``horizon``."""
    periods = []
    cursor = phase.start
    while cursor < horizon and (phase.end is None or cursor < phase.end):
        period = _usage_period_at(phase, cursor)
        periods.append(period)
        cursor = period.end
    return periods


def _recurring_fee(period: UsagePeriod, trial_end: datetime | None) -> tuple[Decimal, int, int]:
    product = period.phase.product
    billable_start = period.start if trial_end is None else max(period.start, trial_end)
    billable = max(0, seconds(billable_start, period.end))
    natural = seconds(period.natural_start, period.natural_end)
    fee = Fraction(product.recurring_charge) * Fraction(billable, natural)
    return round_money(fee, product.minor_units), billable, natural


def _span(seconds_count: int) -> str:
    """A duration in the largest unit that divides it: '21 days', '36 hours', '300 seconds'."""
    for name, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds_count % size == 0:
            count = seconds_count // size
            return f"{count} {name}{'' if count == 1 else 's'}"
    return f"{seconds_count} seconds"


def proration_note(billable: int, natural: int, trial_end: datetime | None, recurring: UsagePeriod | None) -> str | None:
    """What the invoice says about a fee that is not the full period's: why and how much."""
    if recurring is None or billable == natural:
        return None
    in_trial = trial_end is not None and trial_end > recurring.start
    if billable == 0:
        return "free trial" if in_trial else None
    reason = "after the free trial" if in_trial else "active part of the period"
    return f"prorated: {_span(billable)} of {_span(natural)}, {reason}"


def draft_rows(subscription: Subscription, catalog: Catalog, horizon: datetime) -> list[dict]:
    phases = phases_of(subscription, catalog)
    first_product = phases[0].product
    subscription_start = phases[0].start
    trial_end = (
        subscription_start + timedelta(days=first_product.free_trial_days) if first_product.free_trial_days else None
    )
    periods = [period for phase in phases for period in usage_periods(phase, horizon)]
    setup_amount = round_money(first_product.setup_fee, first_product.minor_units)

    def next_period(period: UsagePeriod) -> UsagePeriod | None:
        boundary = period.end
        for phase in phases:
            if phase.start <= boundary and (phase.end is None or boundary < phase.end):
                return _usage_period_at(phase, boundary)
        return None

    def row(period: UsagePeriod, start: datetime, end: datetime, recurring: UsagePeriod | None, setup: bool) -> dict:
        product = period.phase.product
        fee, billable, natural = (
            _recurring_fee(recurring, trial_end) if recurring else (round_money(Decimal(0), product.minor_units), 0, 0)
        )
        return {
            "subscription_id": subscription.id,
            "phase_number": period.phase.number,
            "product_id": product.id,
            "currency": product.currency,
            "minor_units": product.minor_units,
            "period_start": start,
            "period_end": end,
            "active_start": start,
            "active_end": end,
            "trial_end_at": trial_end,
            "due_at": end + timedelta(hours=product.grace_period_hours),
            "recurring_start": recurring.start if recurring else None,
            "recurring_end": recurring.end if recurring else None,
            "recurring_billable_seconds": billable,
            "recurring_period_seconds": natural,
            "recurring_amount": fee,
            "recurring_note": proration_note(billable, natural, trial_end, recurring),
            "setup_amount": setup_amount if setup else round_money(Decimal(0), product.minor_units),
        }

    def in_advance(period: UsagePeriod | None) -> bool:
        return period is not None and period.phase.product.invoice_schedule == "in_advance"

    rows = []
    for position, period in enumerate(periods):
        first_of_phase = position == 0 or periods[position - 1].phase is not period.phase
        previous_in_advance = position > 0 and in_advance(periods[position - 1])
        if in_advance(period) and first_of_phase and not previous_in_advance:
            # nothing billed this period's fee in advance yet: an opening draft at its start does
            rows.append(row(period, period.start, period.start, period, setup=position == 0))
        following = next_period(period)
        recurring = period if not in_advance(period) else (following if in_advance(following) else None)
        setup = position == 0 and not in_advance(period)
        rows.append(row(period, period.start, period.end, recurring, setup))
    return rows


def subscription_period_rows(catalog: Catalog, as_of: datetime) -> list[dict]:
    """All drafts of all subscriptions whose usage period starts before as_of + 1 day
    (events may be up to a day ahead of the clock)."""
    horizon = as_utc_naive(as_of) + timedelta(days=1)
    rows = []
    for subscription in catalog.subscriptions:
        rows.extend(draft_rows(subscription, catalog, horizon))
    return rows

