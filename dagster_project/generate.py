"""Synthetic, realistic metering events for a catalog (SPEC §5 ``meterhouse generate``).

``generate_events(catalog, landing_dir, n_events, start, end, seed=...)`` writes Revenium-shaped
JSON Lines (SPEC §1 camelCase fields) into ``<landing_dir>/events/generated/<seed>/YYYY-MM-DD.jsonl``
(``.jsonl.gz`` with ``compress=True``), one file per UTC day of ``requestTime``, and the price table
it used into ``<landing_dir>/model_prices.csv`` (SPEC §1.3) when that file does not exist yet.

What the data looks like
  * Only subscriptions active somewhere in ``[start, end)`` get events, inside their active window;
    after a plan change the event names the new product.
  * Usage is skewed across subscriptions (Zipf weights, exponent 1.1, in a seeded random rank
    order) and follows a diurnal curve (busiest around 15:00 UTC, quietest around 03:00).
  * Models follow the product: a product whose metrics filter on ``model`` (or ``provider``) uses
    those models; others use a mix of a cheap model (gpt-4o-mini), mid ones (claude-sonnet-4,
    gpt-4o, claude-3-5-haiku, gemini-2.0-flash) and an expensive reasoning model (o3, with
    reasoning tokens). Other metric filter fields (e.g. ``taskType``) get one of their allowed
    values most of the time; ``units.<name>`` elements get ``units``; other numeric elements and
    ``count_unique``/``match`` fields get values too, so every metric has something to count.
  * Token counts are log-normal; ``totalCost`` is computed exactly (integer arithmetic in units of
    1e-10 USD) from the price table, so it fits the model's prices: tokens x price per million.
    About 2 % of good events carry the cost parts instead of ``totalCost`` and 2 % no cost at all
    (the warehouse then prices them from ``model_prices.csv``).
  * ``transactionId`` is ``<12 hex of sha256(seed, start, end, n_events)>-<sequence>``: unique,
    deterministic, ascending with time. ``requestTime`` is RFC 3339 with milliseconds and ``Z``.
  * ``bad_fraction`` of the lines are broken, cycling through kinds (``BAD_KINDS``): not JSON
    (truncated), missing subscriber, negative token count, timestamp without offset, token count
    of the wrong type. ``duplicate_fraction`` x n_events extra lines are byte-identical copies of
    good lines, placed later in the same day's file (a retry), so loading reports them as
    duplicates: accepted = events, rejected = bad_lines, duplicates = duplicate_lines.
  * Deterministic: the same arguments give the same bytes (gzip with mtime 0 and no file name).

Fast: everything per event is vectorised (numpy for the draws, polars for the strings, no Python
per line): about 110 k lines/s on 2 shared vCPUs (1 M events, 544 MB, in 9 s), most of it polars
string building and the file writes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from contracts.catalog import Catalog, Product, Subscription

GENERATED_DIR = Path("events") / "generated"
MODEL_PRICES_FILE = "model_prices.csv"
MODEL_PRICES_HEADER = (
    "provider", "model", "input_per_million", "output_per_million", "cache_read_per_million",
    "cache_creation_per_million", "valid_from",
)
PRICES_VALID_FROM = "2024-01-01T00:00:00Z"
BAD_KINDS = ("not_json", "missing_subscriber", "negative_tokens", "bad_timestamp", "wrong_type")
ZIPF_EXPONENT = 1.1
COST_UNIT = 10**10  # costs are computed in units of 1e-10 USD (COST_SCALE = 10)
_PRICE_UNIT = Decimal("0.0001")  # prices per million tokens, in 1e-4 USD: tokens x price_e4 = cost in 1e-10 USD


@dataclass(frozen=True)
class ModelPrice:
    provider: str
    model: str
    input_per_million: str
    output_per_million: str
    cache_read_per_million: str
    cache_creation_per_million: str
    weight: float  # share of usage in the default mix (0 = only when a product asks for it)
    reasoning: bool = False

    def price_e4(self, name: str) -> int:
        value = Decimal(getattr(self, name))
        units = value / _PRICE_UNIT
        if units != units.to_integral_value():
            raise ValueError(f"{self.model}: {name} {value} has more than 4 decimals")
        return int(units)


# List prices (USD per million tokens) of the models the generator uses.
MODEL_PRICES: tuple[ModelPrice, ...] = (
    ModelPrice("openai", "gpt-4o-mini", "0.15", "0.60", "0.075", "0", 0.50),
    ModelPrice("openai", "gpt-4o", "2.50", "10.00", "1.25", "0", 0.10),
    ModelPrice("openai", "o3", "2.00", "8.00", "0.50", "0", 0.05, reasoning=True),
    ModelPrice("anthropic", "claude-sonnet-4", "3.00", "15.00", "0.30", "3.75", 0.20),
    ModelPrice("anthropic", "claude-3-5-haiku", "0.80", "4.00", "0.08", "1.00", 0.10),
    ModelPrice("google", "gemini-2.0-flash", "0.10", "0.40", "0.025", "0", 0.05),
)
_DEFAULT_UNKNOWN_PRICE = ("1.00", "3.00", "0.10", "0")
_KNOWN_EVENT_FIELDS = {
    "requests", "total_cost", "input_tokens", "output_tokens", "total_tokens", "transactionId", "eventType",
    "requestTime", "responseTime", "provider", "model", "inputTokenCount", "outputTokenCount",
    "reasoningTokenCount", "cacheReadTokenCount", "cacheCreationTokenCount", "totalTokenCount", "totalCost",
    "organizationName", "productName", "subscriber", "subscriber.id", "subscriber.email", "isStreamed",
    "stopReason", "requestDuration", "costType", "environment", "units", "payload", "metadata",
}


@dataclass
class GenerateReport:
    seed: int
    start: datetime
    end: datetime
    files: list[Path] = field(default_factory=list)
    lines_written: int = 0
    events: int = 0  # good, distinct events
    bad_lines: int = 0
    duplicate_lines: int = 0
    bad_by_kind: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    subscriptions: int = 0
    model_prices_written: bool = False
    seconds: float = 0.0


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _epoch_ms(value: datetime) -> int:
    return int(round(_utc(value).timestamp() * 1000))


def _js(value: Any) -> str:
    """JSON text of a value (Decimal as a JSON number)."""
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _guess_provider(model: str) -> str:
    lowered = model.lower()
    if lowered.startswith(("gpt", "o1", "o3", "o4", "dall", "whisper", "tts")):
        return "openai"
    if lowered.startswith("claude"):
        return "anthropic"
    if lowered.startswith("gemini"):
        return "google"
    return "other"


def _price_table(catalog: Catalog) -> list[ModelPrice]:
    """The built-in prices plus any model a product's metric filter names."""
    prices = list(MODEL_PRICES)
    known = {price.model for price in prices}
    for product in catalog.products:
        for metric in product.metrics:
            for value in (metric.filter or {}).get("model", []):
                model = str(value)
                if model not in known:
                    prices.append(ModelPrice(_guess_provider(model), model, *_DEFAULT_UNKNOWN_PRICE, 0.0))
                    known.add(model)
    return prices


def write_model_prices(path: Path, prices: list[ModelPrice]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MODEL_PRICES_HEADER)
        for price in prices:
            writer.writerow([
                price.provider, price.model, price.input_per_million, price.output_per_million,
                price.cache_read_per_million, price.cache_creation_per_million, PRICES_VALID_FROM,
            ])


@dataclass
class _ProductPlan:
    """What events of one product look like."""

    product: Product
    models: list[int]  # indexes into the price table
    model_weights: np.ndarray
    units: list[str]
    string_fields: dict[str, list[str]]  # event field -> JSON texts of allowed values
    numeric_fields: list[str]


def _product_plan(product: Product, prices: list[ModelPrice]) -> _ProductPlan:
    by_model = {price.model: index for index, price in enumerate(prices)}
    wanted_models: list[str] = []
    wanted_providers: list[str] = []
    units: list[str] = []
    string_fields: dict[str, list[str]] = {}
    numeric_fields: list[str] = []
    for metric in product.metrics:
        for field_name, values in (metric.filter or {}).items():
            if field_name == "model":
                wanted_models.extend(str(value) for value in values if str(value) not in wanted_models)
            elif field_name == "provider":
                wanted_providers.extend(str(value) for value in values)
            elif field_name not in _KNOWN_EVENT_FIELDS and "." not in field_name:
                texts = string_fields.setdefault(field_name, [])
                texts.extend(_js(value) for value in values if _js(value) not in texts)
        element = metric.element
        if element.startswith("units."):
            name = element.split(".", 1)[1]
            if name not in units:
                units.append(name)
        elif element not in _KNOWN_EVENT_FIELDS and "." not in element and element not in numeric_fields:
            numeric_fields.append(element)
        if metric.aggregation_field and metric.aggregation_field not in _KNOWN_EVENT_FIELDS \
                and "." not in metric.aggregation_field:
            pool = string_fields.setdefault(metric.aggregation_field, [])
            if metric.match_value is not None and _js(metric.match_value) not in pool:
                pool.append(_js(metric.match_value))
            for number in range(1, 6):
                text = _js(f"{metric.aggregation_field}-{number}")
                if text not in pool:
                    pool.append(text)
    if wanted_models:
        models = [by_model[model] for model in wanted_models]
        weights = np.ones(len(models))
    else:
        candidates = [index for index, price in enumerate(prices) if price.weight > 0
                      and (not wanted_providers or price.provider in wanted_providers)]
        if not candidates:  # a provider the built-in table does not know
            candidates = [0]
        models = candidates
        weights = np.array([max(prices[index].weight, 0.01) for index in candidates])
    return _ProductPlan(product, models, weights / weights.sum(), units, string_fields, numeric_fields)


def _fragments_json(items: list[tuple[str, str]]) -> str:
    return ",".join(f"{_js(key)}:{value}" for key, value in items)


def _diurnal_accept(ms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hour = (ms % 86_400_000) / 3_600_000.0
    probability = 0.25 + 0.75 * (0.5 + 0.5 * np.cos(2 * math.pi * (hour - 15.0) / 24.0))
    return rng.random(len(ms)) < probability


def generate_events(
    catalog: Catalog,
    landing_dir: Path,
    n_events: int,
    start: datetime,
    end: datetime,
    seed: int = 0,
    bad_fraction: float = 0.0,
    duplicate_fraction: float = 0.0,
    progress: bool = False,
    compress: bool = False,
) -> GenerateReport:
    """Write ``n_events`` events (good + bad lines) plus duplicate lines; see the module docstring."""
    started = datetime.now(UTC)
    landing_dir = Path(landing_dir)
    start_ms, end_ms = _epoch_ms(start), _epoch_ms(end)
    if end_ms <= start_ms:
        raise ValueError("end must be after start")
    if n_events < 0:
        raise ValueError("n_events must be >= 0")
    for name, fraction in (("bad_fraction", bad_fraction), ("duplicate_fraction", duplicate_fraction)):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
    report = GenerateReport(seed=seed, start=_utc(start), end=_utc(end))
    prices = _price_table(catalog)
    prices_path = landing_dir / MODEL_PRICES_FILE
    if not prices_path.exists():
        write_model_prices(prices_path, prices)
        report.model_prices_written = True
    if n_events == 0:
        report.seconds = (datetime.now(UTC) - started).total_seconds()
        return report

    subscriptions = _active_subscriptions(catalog, start_ms, end_ms)
    if not subscriptions:
        raise ValueError(f"no subscription in the catalog is active between {start} and {end}")
    report.subscriptions = len(subscriptions)
    rng = np.random.default_rng(seed)
    frame = _draw_events(catalog, subscriptions, prices, n_events, rng)
    frame = _with_bad_and_duplicates(frame, n_events, bad_fraction, duplicate_fraction, rng, report)
    prefix = hashlib.sha256(f"{seed}|{start_ms}|{end_ms}|{n_events}".encode()).hexdigest()[:12]
    _write_days(frame, landing_dir / GENERATED_DIR / str(seed), prefix, compress, progress, report)
    report.seconds = (datetime.now(UTC) - started).total_seconds()
    return report


@dataclass
class _ActiveSubscription:
    subscription: Subscription
    window_start: int
    window_end: int
    phases: list[tuple[int, str]]  # (from ms, product id), in time order


def _active_subscriptions(catalog: Catalog, start_ms: int, end_ms: int) -> list[_ActiveSubscription]:
    active = []
    for subscription in catalog.subscriptions:
        window_start = max(start_ms, _epoch_ms(subscription.start))
        window_end = min(end_ms, _epoch_ms(subscription.end) if subscription.end else end_ms)
        if window_end <= window_start:
            continue
        phases = [(_epoch_ms(subscription.start), subscription.product)]
        phases += [(_epoch_ms(change.at), change.product) for change in subscription.changes]
        active.append(_ActiveSubscription(subscription, window_start, window_end, phases))
    return active


def _draw_events(catalog: Catalog, subscriptions: list[_ActiveSubscription], prices: list[ModelPrice],
                 n: int, rng: np.random.Generator) -> pl.DataFrame:
    """One row per event with every part of its line, already JSON-encoded where needed."""
    subscribers = {subscriber.id: subscriber for subscriber in catalog.subscribers}
    organizations = {organization.id: organization for organization in catalog.organizations}
    products = {product.id: product for product in catalog.products}
    count = len(subscriptions)

    # skewed usage: Zipf weights in a random rank order, scaled by how long each is active
    ranks = rng.permutation(count) + 1
    window_seconds = np.array([(s.window_end - s.window_start) / 1000.0 for s in subscriptions])
    weights = (1.0 / ranks**ZIPF_EXPONENT) * window_seconds
    sub_index = rng.choice(count, size=n, p=weights / weights.sum())
    window_start = np.array([s.window_start for s in subscriptions], dtype=np.int64)
    window_length = np.array([s.window_end - s.window_start for s in subscriptions], dtype=np.int64)

    # requestTime: uniform in the window, thinned by a diurnal curve (a few redraws)
    ms = window_start[sub_index] + (rng.random(n) * window_length[sub_index]).astype(np.int64)
    pending = np.flatnonzero(~_diurnal_accept(ms, rng))
    for _ in range(8):
        if not len(pending):
            break
        ms[pending] = window_start[sub_index[pending]] + (
            rng.random(len(pending)) * window_length[sub_index[pending]]).astype(np.int64)
        pending = pending[~_diurnal_accept(ms[pending], rng)]

    # product at requestTime (plan changes), then a model that fits the product
    plans: dict[str, _ProductPlan] = {}
    product_ids = sorted({pid for s in subscriptions for _, pid in s.phases})
    for product_id in product_ids:
        plans[product_id] = _product_plan(products[product_id], prices)
    product_code = np.zeros(n, dtype=np.int64)
    for position, active in enumerate(subscriptions):
        rows = np.flatnonzero(sub_index == position)
        if not len(rows):
            continue
        boundaries = np.array([at for at, _ in active.phases], dtype=np.int64)
        phase = np.clip(np.searchsorted(boundaries, ms[rows], side="right") - 1, 0, len(boundaries) - 1)
        codes = np.array([product_ids.index(pid) for _, pid in active.phases], dtype=np.int64)
        product_code[rows] = codes[phase]
    model_index = np.zeros(n, dtype=np.int64)
    for code, product_id in enumerate(product_ids):
        rows = np.flatnonzero(product_code == code)
        plan = plans[product_id]
        model_index[rows] = np.array(plan.models)[rng.choice(len(plan.models), size=len(rows), p=plan.model_weights)]

    # tokens (log-normal) and exact costs in 1e-10 USD
    input_tokens = np.clip(rng.lognormal(math.log(800), 1.0, n), 1, 200_000).astype(np.int64)
    output_tokens = np.clip(rng.lognormal(math.log(250), 0.9, n), 1, 32_000).astype(np.int64)
    is_reasoning = np.array([price.reasoning for price in prices])[model_index]
    reasoning_tokens = np.where(is_reasoning, np.clip(rng.lognormal(math.log(1500), 0.8, n), 0, 100_000), 0)
    reasoning_tokens = reasoning_tokens.astype(np.int64)
    cached = rng.random(n) < 0.3
    cache_read = np.where(cached, (input_tokens * rng.uniform(0.2, 0.9, n)).astype(np.int64), 0)
    creation_price = np.array([price.price_e4("cache_creation_per_million") for price in prices])[model_index]
    cache_creation = np.where((creation_price > 0) & (rng.random(n) < 0.1),
                              (input_tokens * rng.uniform(0.1, 0.5, n)).astype(np.int64), 0)

    def price(name: str) -> np.ndarray:
        return np.array([p.price_e4(name) for p in prices], dtype=np.int64)[model_index]

    input_cost = input_tokens * price("input_per_million")
    output_cost = (output_tokens + reasoning_tokens) * price("output_per_million")
    cache_read_cost = cache_read * price("cache_read_per_million")
    cache_creation_cost = cache_creation * creation_price
    total_cost = input_cost + output_cost + cache_read_cost + cache_creation_cost
    cost_mode = rng.choice(3, size=n, p=[0.96, 0.02, 0.02])  # totalCost | parts | none

    duration = (300 + output_tokens * rng.uniform(8, 25, n) + reasoning_tokens * 5).astype(np.int64)
    streamed = rng.random(n) < 0.4
    stop_reason = np.where(rng.random(n) < 0.03, 1, 0)

    # per-subscription fragment: subscriber (with a credential when it has one) and organization
    credential_choice = rng.random(n)
    fragments: list[str] = []
    fragment_index = np.zeros(n, dtype=np.int64)
    for position, active in enumerate(subscriptions):
        subscription = active.subscription
        subscriber = subscribers.get(subscription.subscriber)
        organization = organizations.get(subscriber.organization) if subscriber and subscriber.organization else None
        rows = np.flatnonzero(sub_index == position)
        credentials = subscription.credentials or [None]
        # the first credential carries most of the traffic
        shares = np.array([0.8 if i == 0 else 0.2 / max(len(credentials) - 1, 1) for i in range(len(credentials))])
        if len(credentials) == 1:
            shares = np.array([1.0])
        bounds = np.cumsum(shares)
        choice = np.minimum(np.searchsorted(bounds, credential_choice[rows], side="right"), len(credentials) - 1)
        for number, credential in enumerate(credentials):
            subscriber_items = [("id", _js(subscription.subscriber))]
            if subscriber and subscriber.email:
                subscriber_items.append(("email", _js(subscriber.email)))
            if credential is not None:
                subscriber_items.append(
                    ("credential", "{" + _fragments_json([("name", _js(credential.name)),
                                                          ("value", _js(credential.value))]) + "}")
                )
            text = f'"subscriber":{{{_fragments_json(subscriber_items)}}}'
            if organization is not None:
                text += f',"organizationName":{_js(organization.name)}'
            fragment_index[rows[choice == number]] = len(fragments)
            fragments.append(text)

    # per-product extras: custom string fields, numeric elements, units (vectorised: index columns)
    string_fields: dict[str, list[str]] = {}
    numeric_fields: list[str] = []
    unit_names: list[str] = []
    for plan in plans.values():
        for field_name, texts in plan.string_fields.items():
            known = string_fields.setdefault(field_name, [])
            known.extend(text for text in texts if text not in known)
        numeric_fields.extend(name for name in plan.numeric_fields if name not in numeric_fields)
        unit_names.extend(name for name in plan.units if name not in unit_names)
    extra_columns: dict[str, np.ndarray] = {}
    for field_name in sorted(string_fields):
        extra_columns[f"s:{field_name}"] = np.zeros(n, dtype=np.int64)  # 0 = absent, else 1 + value index
    for name in numeric_fields:
        extra_columns[f"n:{name}"] = np.full(n, -1, dtype=np.int64)
    for name in unit_names:
        extra_columns[f"u:{name}"] = np.full(n, -1, dtype=np.int64)
    for code, product_id in enumerate(product_ids):
        plan = plans[product_id]
        rows = np.flatnonzero(product_code == code)
        for field_name, texts in plan.string_fields.items():
            global_index = np.array([string_fields[field_name].index(text) + 1 for text in texts])
            pick = global_index[rng.integers(0, len(texts), len(rows))]
            extra_columns[f"s:{field_name}"][rows] = np.where(rng.random(len(rows)) < 0.85, pick, 0)
        for name in plan.numeric_fields:
            extra_columns[f"n:{name}"][rows] = rng.integers(1, 50, len(rows))
        for name in plan.units:
            extra_columns[f"u:{name}"][rows] = rng.integers(1, 40, len(rows))
    product_names = [f',"productName":{_js(products[pid].name)}' for pid in product_ids]
    extra_parts: list[pl.Series | pl.Expr] = []
    for field_name in sorted(string_fields):
        texts = [""] + [f",{_js(field_name)}:{text}" for text in string_fields[field_name]]
        extra_parts.append(pl.Series(texts, dtype=pl.Utf8).gather(extra_columns[f"s:{field_name}"]))
    for name in numeric_fields:
        column = pl.Series(extra_columns[f"n:{name}"])
        extra_parts.append(pl.select(pl.when(pl.lit(column) >= 0).then(
            pl.concat_str([pl.lit(f",{_js(name)}:"), pl.lit(column).cast(pl.Utf8)])).otherwise(pl.lit("")))
            .to_series())
    if unit_names:
        entries = [
            pl.when(pl.lit(pl.Series(extra_columns[f"u:{name}"])) >= 0).then(
                pl.concat_str([pl.lit(f"{_js(name)}:"), pl.lit(pl.Series(extra_columns[f"u:{name}"])).cast(pl.Utf8)]))
            for name in unit_names
        ]
        inner = pl.select(pl.concat_str(entries, separator=",", ignore_nulls=True).alias("u")).to_series()
        extra_parts.append(pl.select(pl.when(pl.lit(inner) != "").then(
            pl.concat_str([pl.lit(',"units":{'), pl.lit(inner), pl.lit("}")])).otherwise(pl.lit(""))).to_series())
    if extra_parts:
        extras = pl.select(pl.concat_str([pl.lit(part) for part in extra_parts]).alias("extras")).to_series()
    else:
        extras = pl.Series("extras", [""] * n, dtype=pl.Utf8)

    model_fragments = [f'"provider":{_js(p.provider)},"model":{_js(p.model)}' for p in prices]
    frame = pl.DataFrame(
        {
            "ms": ms,
            "model_index": model_index,
            "product_code": product_code,
            "fragment_index": fragment_index,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "reasoning_tokens": reasoning_tokens,
            "cache_read": cache_read,
            "cache_creation": cache_creation,
            "total_cost": total_cost,
            "input_cost": input_cost,
            "output_cost": output_cost,
            "cache_read_cost": cache_read_cost,
            "cache_creation_cost": cache_creation_cost,
            "cost_mode": cost_mode,
            "duration": duration,
            "streamed": streamed,
            "stop_reason": stop_reason,
            "extras": extras.alias("extras"),
        }
    )
    return frame.with_columns(
        pl.Series("model_fragment", model_fragments, dtype=pl.Utf8).gather(frame["model_index"]),
        pl.Series("subscriber_fragment", fragments, dtype=pl.Utf8).gather(frame["fragment_index"]),
        pl.Series("product_fragment", product_names, dtype=pl.Utf8).gather(frame["product_code"]),
    )


def _cost_text(column: str) -> pl.Expr:
    """Exact decimal text of an integer amount of 1e-10 USD, trailing zeros dropped."""
    whole = (pl.col(column) // COST_UNIT).cast(pl.Utf8)
    fraction = (pl.col(column) % COST_UNIT).cast(pl.Utf8).str.zfill(10).str.strip_chars_end("0")
    return pl.when(fraction == "").then(whole).otherwise(pl.concat_str([whole, pl.lit("."), fraction]))


def _with_bad_and_duplicates(frame: pl.DataFrame, n: int, bad_fraction: float, duplicate_fraction: float,
                             rng: np.random.Generator, report: GenerateReport) -> pl.DataFrame:
    """Choose the bad lines (a kind each) and the duplicated good lines; order rows by time."""
    bad_count = min(n, int(round(n * bad_fraction)))
    kind = np.full(n, -1, dtype=np.int64)
    if bad_count:
        bad_rows = rng.choice(n, size=bad_count, replace=False)
        kind[bad_rows] = rng.permutation(np.arange(bad_count) % len(BAD_KINDS))
    frame = frame.with_columns(pl.Series("bad_kind", kind), pl.Series("copy_of", np.full(n, -1, dtype=np.int64)))
    # sequence numbers (transactionId) ascend with time; ties broken by draw order
    order = np.lexsort((np.arange(n), frame["ms"].to_numpy()))
    frame = frame[order].with_columns(pl.Series("sequence", np.arange(n, dtype=np.int64)))
    frame = frame.with_columns(pl.col("ms").alias("sort_ms"))
    good = np.flatnonzero(frame["bad_kind"].to_numpy() < 0)
    duplicate_count = min(len(good), int(round(n * duplicate_fraction)))
    if duplicate_count:
        sources = np.sort(rng.choice(good, size=duplicate_count, replace=False))
        delay = rng.integers(1, 120_000, duplicate_count)
        source_ms = frame["ms"].to_numpy()[sources]
        day_end = (source_ms // 86_400_000 + 1) * 86_400_000 - 1
        copies = frame[sources].with_columns(
            pl.Series("copy_of", sources.astype(np.int64)),
            pl.Series("sort_ms", np.minimum(source_ms + delay, day_end)),
        )
        frame = pl.concat([frame, copies])
    report.events = len(good)
    report.bad_lines = bad_count
    report.duplicate_lines = duplicate_count
    report.bad_by_kind = {
        name: int((kind == index).sum()) for index, name in enumerate(BAD_KINDS) if (kind == index).any()
    }
    return frame.sort(["sort_ms", "sequence", "copy_of"], maintain_order=True)


def _lines(frame: pl.DataFrame, prefix: str) -> pl.Series:
    bad = pl.col("bad_kind")
    request_time = pl.from_epoch(pl.col("ms"), time_unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    response_time = pl.from_epoch(pl.col("ms") + pl.col("duration"), time_unit="ms").dt.strftime(
        "%Y-%m-%dT%H:%M:%S%.3fZ")
    input_text = pl.col("input_tokens").cast(pl.Utf8)
    input_text = (
        pl.when(bad == BAD_KINDS.index("negative_tokens")).then(pl.concat_str([pl.lit("-"), input_text]))
        .when(bad == BAD_KINDS.index("wrong_type")).then(pl.lit('"many"'))
        .otherwise(input_text)
    )
    request_text = (
        pl.when(bad == BAD_KINDS.index("bad_timestamp")).then(request_time.str.strip_chars_end("Z"))
        .otherwise(request_time)
    )
    subscriber = (
        pl.when(bad == BAD_KINDS.index("missing_subscriber")).then(pl.lit("")).otherwise(
            pl.concat_str([pl.lit(","), pl.col("subscriber_fragment")]))
    )
    total_tokens = (pl.col("input_tokens") + pl.col("output_tokens")).cast(pl.Utf8)
    cache_read = pl.when(pl.col("cache_read") > 0).then(
        pl.concat_str([pl.lit(',"cacheReadTokenCount":'), pl.col("cache_read").cast(pl.Utf8)])).otherwise(pl.lit(""))
    cache_creation = pl.when(pl.col("cache_creation") > 0).then(
        pl.concat_str([pl.lit(',"cacheCreationTokenCount":'), pl.col("cache_creation").cast(pl.Utf8)])
    ).otherwise(pl.lit(""))
    reasoning = pl.when(pl.col("reasoning_tokens") > 0).then(
        pl.concat_str([pl.lit(',"reasoningTokenCount":'), pl.col("reasoning_tokens").cast(pl.Utf8)])
    ).otherwise(pl.lit(""))
    # cost parts are rare: format them only for those rows
    part_rows = frame.with_row_index("row").filter(pl.col("cost_mode") == 1)
    part_texts = part_rows.select(pl.concat_str([
        pl.lit(',"inputTokenCost":'), _cost_text("input_cost"),
        pl.lit(',"outputTokenCost":'), _cost_text("output_cost"),
        pl.when(pl.col("cache_read_cost") > 0).then(
            pl.concat_str([pl.lit(',"cacheReadTokenCost":'), _cost_text("cache_read_cost")])).otherwise(pl.lit("")),
        pl.when(pl.col("cache_creation_cost") > 0).then(
            pl.concat_str([pl.lit(',"cacheCreationTokenCost":'), _cost_text("cache_creation_cost")])
        ).otherwise(pl.lit("")),
    ]).alias("parts"))["parts"]
    parts_column = pl.Series("parts", [""] * frame.height, dtype=pl.Utf8).scatter(part_rows["row"], part_texts)
    cost = (
        pl.when(pl.col("cost_mode") == 0).then(pl.concat_str([pl.lit(',"totalCost":'), _cost_text("total_cost")]))
        .when(pl.col("cost_mode") == 1).then(pl.lit(parts_column))
        .otherwise(pl.lit(""))
    )
    line = pl.concat_str([
        pl.lit('{"transactionId":"'), pl.lit(prefix + "-"), pl.col("sequence").cast(pl.Utf8).str.zfill(10),
        pl.lit('","eventType":"completion","requestTime":"'), request_text,
        pl.lit('","responseTime":"'), response_time, pl.lit('",'), pl.col("model_fragment"),
        pl.lit(',"inputTokenCount":'), input_text,
        pl.lit(',"outputTokenCount":'), pl.col("output_tokens").cast(pl.Utf8),
        reasoning, cache_read, cache_creation,
        pl.lit(',"totalTokenCount":'), total_tokens,
        cost,
        pl.col("product_fragment"),
        subscriber,
        pl.lit(',"requestDuration":'), pl.col("duration").cast(pl.Utf8),
        pl.lit(',"isStreamed":'), pl.when(pl.col("streamed")).then(pl.lit("true")).otherwise(pl.lit("false")),
        pl.lit(',"stopReason":'), pl.when(pl.col("stop_reason") == 1).then(pl.lit('"TOKEN_LIMIT"'))
        .otherwise(pl.lit('"END"')),
        pl.lit(',"costType":"AI","environment":"production"'),
        pl.col("extras"),
        pl.lit("}"),
    ])
    lines = frame.select(line.alias("line"), bad.alias("bad"))
    truncated = pl.col("line").str.slice(0, pl.col("line").str.len_chars() // 2)
    not_json = pl.col("bad") == BAD_KINDS.index("not_json")
    return lines.select(
        pl.concat_str([pl.when(not_json).then(truncated).otherwise(pl.col("line")), pl.lit("\n")]).alias("line")
    )["line"]


def _write_days(frame: pl.DataFrame, directory: Path, prefix: str, compress: bool, progress: bool,
                report: GenerateReport) -> None:
    lines = _lines(frame, prefix)
    day = (frame["sort_ms"].to_numpy() // 86_400_000).astype(np.int64)
    boundaries = np.flatnonzero(np.diff(day)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(day)]))
    directory.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("days", total=len(starts))
    try:
        for first, last in zip(starts, ends, strict=True):
            name = datetime.fromtimestamp(int(day[first]) * 86_400, tz=UTC).strftime("%Y-%m-%d")
            content = lines.slice(int(first), int(last - first)).str.join("").item().encode("utf-8")
            if compress:
                path = directory / f"{name}.jsonl.gz"
                with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                          compresslevel=6) as handle:
                    handle.write(content)
            else:
                path = directory / f"{name}.jsonl"
                path.write_bytes(content)
            report.files.append(path)
            report.bytes_written += path.stat().st_size
            report.lines_written += int(last - first)
            if bar is not None:
                bar.update(task, advance=1)
    finally:
        if bar is not None:
            bar.stop()
