"""Data contract for the pricing and customer catalog (SPEC §2).

All YAML files under ``catalog/`` are merged. Each file is validated on its own first so
that an error names the file, the YAML path and the field; then cross-file references
(subscription -> subscriber -> organization, subscription -> product) are checked.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# ISO 4217 minor units of the currencies we accept. A currency not listed here is an error,
# not a guess: an amount rounded to the wrong minor unit is a wrong invoice.
CURRENCY_MINOR_UNITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2, "NOK": 2,
    "DKK": 2, "PLN": 2, "CZK": 2, "INR": 2, "BRL": 2, "MXN": 2, "SGD": 2, "HKD": 2, "ZAR": 2,
    "CNY": 2, "ILS": 2, "AED": 2,
    "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0,
    "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3,
}

# Ids reach file names, SQL literals and URLs: keep them to a safe alphabet.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
# Event fields named by `element`, `filter` and `aggregation_field`: dotted identifiers only.
FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
RATE_SCALE = 12
MONEY_SCALE = 6

Id = Annotated[str, Field(pattern=ID_PATTERN)]
FieldName = Annotated[str, Field(pattern=FIELD_PATTERN)]
Rate = Annotated[Decimal, Field(ge=0, max_digits=17, decimal_places=RATE_SCALE)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=MONEY_SCALE)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _money_text(value: Any) -> Any:
    """YAML turns 1.35 into a float; re-read it from its text so no binary error creeps in."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, bool):
        raise ValueError("must be a decimal amount")
    return value


class PeriodUnit(StrEnum):
    minute = "minute"
    day = "day"
    month = "month"
    year = "year"


class InvoicingPeriod(Strict):
    every: int = Field(default=1, ge=1, le=1000)
    unit: PeriodUnit = PeriodUnit.month


class Tier(Strict):
    name: str = Field(min_length=1, max_length=200)
    up_to: Decimal | None = Field(default=None, gt=0, max_digits=21, decimal_places=10)
    unit_rate: Rate = Decimal("0")
    fixed_fee: Money = Decimal("0")
    _decimals = field_validator("up_to", "unit_rate", "fixed_fee", mode="before")(_money_text)


class Metric(Strict):
    name: str = Field(min_length=1, max_length=200)
    element: FieldName = "requests"
    aggregation: Literal["sum", "average", "max", "count", "count_unique", "match"] = "sum"
    aggregation_field: FieldName | None = None
    match_value: str | int | Decimal | bool | None = None
    filter: dict[FieldName, list[str | int | Decimal | bool]] | None = None
    tier_mode: Literal["graduated", "volume"] = "graduated"
    tiers: list[Tier] = Field(min_length=1)
    notify_at_percent: list[int] = Field(default_factory=list)

    @field_validator("notify_at_percent")
    @classmethod
    def _percent_range(cls, value: list[int]) -> list[int]:
        for percent in value:
            if not 0 < percent <= 100:
                raise ValueError("percentages must be in (0, 100]")
        return sorted(set(value))

    @model_validator(mode="after")
    def _tiers_in_order(self) -> Metric:
        for position, tier in enumerate(self.tiers):
            last = position == len(self.tiers) - 1
            if tier.up_to is None and not last:
                raise ValueError(f"tiers[{position}] is unbounded but is not the last tier")
            if tier.up_to is not None and last:
                raise ValueError(f"tiers[{position}]: the last tier must be unbounded (up_to: null)")
            if position and tier.up_to is not None and tier.up_to <= self.tiers[position - 1].up_to:
                raise ValueError(f"tiers[{position}].up_to must be greater than the previous tier's")
        if self.aggregation in ("count_unique", "match") and not self.aggregation_field:
            raise ValueError(f"aggregation {self.aggregation} needs aggregation_field")
        if self.aggregation == "match" and self.match_value is None:
            raise ValueError("aggregation match needs match_value")
        return self


class Product(Strict):
    id: Id
    name: str = Field(min_length=1, max_length=200)
    currency: str = "USD"
    recurring_charge: Money = Decimal("0")
    invoicing_period: InvoicingPeriod = InvoicingPeriod()
    billing_anchor: Literal["calendar", "anniversary"] = "calendar"
    invoice_schedule: Literal["in_arrears", "in_advance"] = "in_arrears"
    payment: Literal["invoice_only", "external", "stripe"] = "invoice_only"
    setup_fee: Money = Decimal("0")
    free_trial_days: int = Field(default=0, ge=0, le=3650)
    grace_period_hours: int = Field(default=0, ge=0, le=24 * 366)
    notification_cc: list[str] = Field(default_factory=list)
    metrics: list[Metric] = Field(default_factory=list)

    _decimals = field_validator("recurring_charge", "setup_fee", mode="before")(_money_text)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        value = value.upper()
        if value not in CURRENCY_MINOR_UNITS:
            raise ValueError(f"unknown currency {value!r}; known: {', '.join(sorted(CURRENCY_MINOR_UNITS))}")
        return value

    @model_validator(mode="after")
    def _unique_metric_names(self) -> Product:
        names = [metric.name for metric in self.metrics]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique within a product: {duplicates}")
        return self

    @property
    def minor_units(self) -> int:
        return CURRENCY_MINOR_UNITS[self.currency]


class ModelPriceOverride(Strict):
    provider: str
    model: str
    input_per_million: Rate = Decimal("0")
    output_per_million: Rate = Decimal("0")
    cache_read_per_million: Rate = Decimal("0")
    cache_creation_per_million: Rate = Decimal("0")
    valid_from: datetime | None = None
    _decimals = field_validator(
        "input_per_million", "output_per_million", "cache_read_per_million", "cache_creation_per_million",
        mode="before",
    )(_money_text)


class Organization(Strict):
    id: Id
    name: str = Field(min_length=1, max_length=200)
    model_price_overrides: list[ModelPriceOverride] = Field(default_factory=list)


class Subscriber(Strict):
    id: Id
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = None
    organization: Id | None = None
    stripe_customer_id: str | None = None


class CredentialSpec(Strict):
    name: str = Field(min_length=1, max_length=200)
    value: str = Field(min_length=1, max_length=512)


class PlanChange(Strict):
    at: datetime
    product: Id


class Subscription(Strict):
    id: Id
    name: str | None = None
    subscriber: Id
    product: Id
    start: datetime
    end: datetime | None = None
    credentials: list[CredentialSpec] = Field(default_factory=list)
    changes: list[PlanChange] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # optional spending limit per invoicing period, in the product's currency: budget pacing
    # (docs/finance.md) flags a subscription projected to bill more than this; never a hard cap
    budget: Money | None = None

    _budget_text = field_validator("budget", mode="before")(_money_text)

    @field_validator("start", "end")
    @classmethod
    def _needs_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamp needs an offset or Z")
        return value

    @model_validator(mode="after")
    def _changes_in_order(self) -> Subscription:
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        previous = self.start
        for position, change in enumerate(self.changes):
            if change.at.tzinfo is None:
                raise ValueError(f"changes[{position}].at needs an offset or Z")
            if change.at <= previous:
                raise ValueError(f"changes[{position}].at must be after the start and the previous change")
            if self.end is not None and change.at >= self.end:
                raise ValueError(f"changes[{position}].at must be before end")
            previous = change.at
        return self


class Catalog(Strict):
    products: list[Product] = Field(default_factory=list)
    organizations: list[Organization] = Field(default_factory=list)
    subscribers: list[Subscriber] = Field(default_factory=list)
    subscriptions: list[Subscription] = Field(default_factory=list)

    def product(self, product_id: str) -> Product:
        return next(product for product in self.products if product.id == product_id)


class CatalogError(ValueError):
    """Raised with every problem found; each message names file, YAML path and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid catalog:\n  " + "\n  ".join(problems))


def _yaml_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _problems_from(file: str, error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        location = tuple(part for part in item["loc"] if part not in ("function-after", "function-before"))
        problems.append(f"{file}: {_yaml_path(location)}: {item['msg']}")
    return problems


_SECTIONS = ("products", "organizations", "subscribers", "subscriptions")
# libyaml's parser when PyYAML has it: the same safe subset and error marks, ~4x faster (10 K
# subscriptions: 1.8 s against 7.5 s, and a billing run reads the catalog three times)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_catalog(catalog_dir: Path) -> Catalog:
    """Validate and merge every ``*.yaml``/``*.yml`` file in ``catalog_dir``."""
    files = sorted([*catalog_dir.glob("*.yaml"), *catalog_dir.glob("*.yml")])
    if not files:
        raise CatalogError([f"{catalog_dir}: no catalog files (*.yaml); run `meterhouse init --example tutorial`"])
    problems: list[str] = []
    merged: dict[str, list[tuple[str, int, Any]]] = {section: [] for section in _SECTIONS}
    for file in files:
        try:
            document = yaml.load(file.read_text(encoding="utf-8"), Loader=_SAFE_LOADER) or {}  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problems.append(f"{file.name}:{where}: invalid YAML: {getattr(exc, 'problem', exc)}")
            continue
        if not isinstance(document, dict):
            problems.append(f"{file.name}: (top level): must be a mapping with {', '.join(_SECTIONS)}")
            continue
        try:
            part = Catalog.model_validate(document)
        except ValidationError as exc:
            problems.extend(_problems_from(file.name, exc))
            continue
        for section in _SECTIONS:
            for index, item in enumerate(getattr(part, section)):
                merged[section].append((file.name, index, item))
    if problems:
        raise CatalogError(problems)
    problems.extend(_cross_reference_problems(merged))
    if problems:
        raise CatalogError(problems)
    return Catalog(**{section: [item for _, _, item in merged[section]] for section in _SECTIONS})


def _cross_reference_problems(merged: dict[str, list[tuple[str, int, Any]]]) -> list[str]:
    problems: list[str] = []
    known: dict[str, set[str]] = {}
    for section in _SECTIONS:
        seen: dict[str, str] = {}
        for file, index, item in merged[section]:
            if item.id in seen:
                problems.append(f"{file}: {section}[{index}].id: duplicate id {item.id!r} (also in {seen[item.id]})")
            seen[item.id] = file
        known[section] = set(seen)
    product_names: dict[str, str] = {}
    for file, index, product in merged["products"]:
        for key in {product.name.casefold(), product.id.casefold()}:
            other = product_names.get(key)
            if other is not None and other != product.id:
                problems.append(f"{file}: products[{index}].name: {product.name!r} matches product {other!r} too")
            product_names[key] = product.id
    for file, index, subscriber in merged["subscribers"]:
        if subscriber.organization and subscriber.organization not in known["organizations"]:
            problems.append(
                f"{file}: subscribers[{index}].organization: unknown organization {subscriber.organization!r}"
            )
    product_currency = {product.id: product.currency for _, _, product in merged["products"]}
    credential_owner: dict[str, str] = {}
    for file, index, subscription in merged["subscriptions"]:
        where = f"{file}: subscriptions[{index}]"
        if subscription.subscriber not in known["subscribers"]:
            problems.append(f"{where}.subscriber: unknown subscriber {subscription.subscriber!r}")
        if subscription.product not in known["products"]:
            problems.append(f"{where}.product: unknown product {subscription.product!r}")
        currency = product_currency.get(subscription.product)
        for position, change in enumerate(subscription.changes):
            if change.product not in known["products"]:
                problems.append(f"{where}.changes[{position}].product: unknown product {change.product!r}")
            elif currency and product_currency[change.product] != currency:
                # one subscription bills in one currency: a fee billed in advance across the change
                # would otherwise land on an invoice of the other currency
                problems.append(
                    f"{where}.changes[{position}].product: {change.product!r} bills in "
                    f"{product_currency[change.product]}, the subscription in {currency}; start a new subscription"
                )
        for position, credential in enumerate(subscription.credentials):
            owner = credential_owner.setdefault(credential.value, subscription.id)
            if owner != subscription.id:
                problems.append(
                    f"{where}.credentials[{position}].value: credential already belongs to subscription {owner!r}"
                )
    return problems


def export_json_schemas(target_dir: Path) -> list[Path]:
    """Write the JSON Schemas of the contracts; checked in and compared by a test."""
    import json

    from contracts.events import MeteringEvent

    target_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in (("metering_event", MeteringEvent), ("catalog", Catalog)):
        path = target_dir / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def overlapping_subscriptions(catalog: Catalog) -> list[str]:
    """Subscriptions of one subscriber on one product whose terms overlap make attribution by
    subscriber + product ambiguous; the catalog asset reports them as errors."""
    problems = []
    by_key: dict[tuple[str, str], list[Subscription]] = {}
    for subscription in catalog.subscriptions:
        products = {subscription.product, *(change.product for change in subscription.changes)}
        for product in products:
            by_key.setdefault((subscription.subscriber, product), []).append(subscription)
    for (subscriber, product), subscriptions in by_key.items():
        ordered = sorted(subscriptions, key=lambda s: s.start)
        for first, second in zip(ordered, ordered[1:], strict=False):
            if first.end is None or second.start < first.end:
                problems.append(
                    f"subscriptions {first.id!r} and {second.id!r} of subscriber {subscriber!r} overlap on product "
                    f"{product!r}"
                )
    return problems


def catalog_dir_of(data_dir: Path) -> Path:
    return data_dir / "catalog"

