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

How it is fast (no Python per event or line; issue 7 asks for >= 1 M events/s)
  * Draws: numpy, vectorised. When and for whom come from one random stream (per-subscription
    counts from a multinomial, times thinned by the diurnal curve, one integer sort); everything
    else is drawn in blocks of ``BLOCK_EVENTS`` events, each block with its own random stream
    (``SeedSequence(seed).spawn``), on 2 threads: the bytes do not depend on the thread count.
  * Lines: a line is ~19 texts laid end to end, each picked from one table of texts (numbers,
    minutes and SS.mmm, model, who-fragments, with the constant JSON between the values merged
    in; about 1 M short texts). numpy computes the table index of every slot of a chunk of lines
    and Arrow's ``take`` copies the texts into one contiguous buffer, which is written as it is:
    one write per 2,048 lines, one file per day. Chunks render on 2 threads while the main thread
    writes them in order (gzip: each chunk deflated on its thread, the day's chunks forming one
    deflate stream, as pigz does).
  * Measured (1 M events of the bench catalog: 500 subscriptions, 0.1 % bad lines and duplicates,
    555 MB; a fresh process on the 2 shared vCPUs of the dev machine, 2026-11-27): 0.77-0.84 s
    (1.2-1.3 M lines/s) when the second vCPU was free, median 1.22 s (0.82 M lines/s) over 18 runs
    while another job's benchmark kept a vCPU busy most of the time. Either way it is ~1.2 s of
    CPU: Arrow copying the texts ~0.4 s, the kernel copying 555 MB into the page cache ~0.2 s,
    the draws ~0.25 s, the indexes ~0.1 s, the tables ~0.08 s (cached per process). Peak RSS
    ~300 MB. The polars version before it: median 8.1 s (124 K lines/s), 2.1 GB.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import math
import struct
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.catalog import Catalog, Product, Subscription
from dagster_project.lib.arrow_arrays import int32_array, string_array, text_array

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
_json_string = json.encoder.encode_basestring
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
    if isinstance(value, str):
        return _json_string(value)  # what json.dumps does for a str, without its overhead
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


# acceptance probability of a requestTime by its minute of the UTC day: most around 15:00, least around 03:00
_DIURNAL = (0.25 + 0.75 * (0.5 + 0.5 * np.cos(2 * math.pi * ((np.arange(1440) + 0.5) / 60.0 - 15.0) / 24.0))
            ).astype(np.float32)
BLOCK_EVENTS = 1 << 16  # events drawn per random stream (a fixed split: the bytes do not depend on threads)
CHUNK_LINES = 1 << 14  # lines per rendering task
TAKE_LINES = 1 << 11  # lines per copy into bytes (the result stays in the CPU cache until written)
THREADS = 2
DAY_MS = 86_400_000


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
    started = time.perf_counter()
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
        report.seconds = time.perf_counter() - started
        return report

    subscriptions = _active_subscriptions(catalog, start_ms, end_ms)
    if not subscriptions:
        raise ValueError(f"no subscription in the catalog is active between {start} and {end}")
    report.subscriptions = len(subscriptions)
    prefix = hashlib.sha256(f"{seed}|{start_ms}|{end_ms}|{n_events}".encode()).hexdigest()[:12]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        events = _draw_events(catalog, subscriptions, prices, n_events, seed, pool)
        lines = _bad_and_duplicates(events, bad_fraction, duplicate_fraction, events.rng, report)
        renderer = _Renderer(events, prices, prefix)
        _write_days(renderer, lines, landing_dir / GENERATED_DIR / str(seed), compress, progress, report, pool)
    report.seconds = time.perf_counter() - started
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
        phases += sorted(((_epoch_ms(change.at), change.product) for change in subscription.changes),
                         key=lambda phase: phase[0])
        active.append(_ActiveSubscription(subscription, window_start, window_end, phases))
    return active


class _Events:
    """One entry per event (good or bad, not the duplicate copies) in ``requestTime`` order, so the
    position is the event's sequence number; texts that repeat are indexes into lists of texts."""

    def __init__(self, rng: np.random.Generator, ms: np.ndarray, subscription: np.ndarray, party_texts: list[str],
                 extra_texts: list[list[str]]) -> None:
        n = len(ms)
        self.rng = rng  # the stream the times came from; bad lines and duplicates are drawn from it next
        self.ms = ms  # requestTime, epoch ms
        self.subscription = subscription  # index into the active subscriptions
        # per (subscription, credential, phase): ',"productName":..,"subscriber":{..},"organizationName":..',
        # then the same without the subscriber
        self.party_texts = party_texts
        self.extra_texts = extra_texts  # per custom field: its texts, the first "" (absent)
        # drawn in blocks (_draw_block)
        self.model = np.empty(n, dtype=np.int32)  # index into the price table
        self.input_tokens = np.empty(n, dtype=np.int32)
        self.output_tokens = np.empty(n, dtype=np.int32)
        self.reasoning_tokens = np.empty(n, dtype=np.int32)
        self.cache_read = np.empty(n, dtype=np.int32)
        self.cache_creation = np.empty(n, dtype=np.int32)
        self.total_cost = np.empty(n, dtype=np.int64)  # 1e-10 USD, exact
        self.cost_mode = np.empty(n, dtype=np.int8)  # 0 totalCost | 1 cost parts | 2 no cost
        self.duration = np.empty(n, dtype=np.int32)  # ms
        self.flags = np.empty(n, dtype=np.int8)  # 2 x streamed + stopped by the token limit
        self.party = np.empty(n, dtype=np.int32)  # index into party_texts / 2
        self.extras = [np.empty(n, dtype=np.int32) for _ in extra_texts]  # index into extra_texts[i]
        self.has_units = np.empty(n, dtype=np.int8)
        # chosen afterwards
        self.kind = np.full(n, -1, dtype=np.int8)  # bad kind (BAD_KINDS), -1 = good
        self.parts_index = np.zeros(0, dtype=np.int32)  # cost_mode 1: index of its cost-parts text

    def __len__(self) -> int:
        return len(self.ms)


def _pick(cumulative: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Index drawn by ``uniform`` from a cumulative distribution (its last value 1)."""
    return np.minimum(np.searchsorted(cumulative, uniform, side="right"), len(cumulative) - 1)


def _lognormal(rng: np.random.Generator, median: float, sigma: float, n: int, low: int, high: int) -> np.ndarray:
    values = rng.standard_normal(n, dtype=np.float32)
    values *= np.float32(sigma)
    values += np.float32(math.log(median))
    np.exp(values, out=values)
    return np.clip(values, low, high, out=values).astype(np.int32)


def _in_time_order(ms: np.ndarray, subscription: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Events sorted by time, ties in draw order."""
    n = len(ms)
    low = int(ms.min())
    if (int(ms.max()) - low + 1) * n < 2**62:  # one unique integer key per event: a plain (SIMD) sort
        key = ms - low
        key *= n
        key += np.arange(n)
        key.sort()
        order = key % n
        key //= n
        key += low
        return key, subscription[order]
    order = np.argsort(ms, kind="stable")
    return ms[order], subscription[order]


@dataclass
class _Drawing:
    """What the per-event draws need, per subscription, product and model (numpy arrays)."""

    first_product: np.ndarray  # per subscription
    boundary_key: np.ndarray | None  # plan changes: (subscription << 42) + ms - base, sorted
    boundary_product: np.ndarray
    first_boundary: np.ndarray  # per subscription
    base_ms: int
    phase_starts: dict[int, tuple[np.ndarray, np.ndarray]]  # else: per subscription with changes, starts, products
    model_cumulative: np.ndarray  # product c owns (c, c + 1]
    model_of: np.ndarray
    reasoning: np.ndarray  # per model
    prices: list[np.ndarray]  # input, output, cache read, cache creation, per model
    credentials: np.ndarray  # per subscription (at least 1)
    phases: np.ndarray  # per subscription
    first_party: np.ndarray  # per subscription
    extras: list[tuple[str, np.ndarray, np.ndarray]]  # (kind, per product: size/present, values)
    has_units: np.ndarray  # per product


def _drawing(catalog: Catalog, subscriptions: list[_ActiveSubscription], prices: list[ModelPrice]
             ) -> tuple[_Drawing, list[str], list[list[str]]]:
    """The lookup arrays of the per-event draws, the texts of who sends events and of custom fields."""
    subscribers = {subscriber.id: subscriber for subscriber in catalog.subscribers}
    organizations = {organization.id: organization for organization in catalog.organizations}
    products = {product.id: product for product in catalog.products}
    product_ids = sorted({pid for s in subscriptions for _, pid in s.phases})
    code_of = {pid: code for code, pid in enumerate(product_ids)}
    plans = [_product_plan(products[pid], prices) for pid in product_ids]

    # plan changes: which phase an event is in, by one search over (subscription, from) keys
    boundary_key = None
    boundary_product = first_boundary = np.zeros(0, dtype=np.int64)
    starts = [at for s in subscriptions for at, _ in s.phases]
    base = min(starts + [s.window_start for s in subscriptions])
    span = max([at for at in starts] + [s.window_end for s in subscriptions]) - base + 1
    phase_starts = {}
    if any(len(s.phases) > 1 for s in subscriptions) and (span >= 2**42 or len(subscriptions) >= 2**20):
        phase_starts = {position: (np.array([at for at, _ in s.phases], dtype=np.int64),
                                   np.array([code_of[pid] for _, pid in s.phases], dtype=np.int32))
                        for position, s in enumerate(subscriptions) if len(s.phases) > 1}
    elif any(len(s.phases) > 1 for s in subscriptions):
        boundary_key = np.array([(position << 42) + at - base for position, s in enumerate(subscriptions)
                                 for at, _ in s.phases], dtype=np.int64)
        boundary_product = np.array([code_of[pid] for s in subscriptions for _, pid in s.phases], dtype=np.int32)
        first_boundary = np.concatenate(([0], np.cumsum([len(s.phases) for s in subscriptions])[:-1]))

    cumulative = np.concatenate([code + np.cumsum(plan.model_weights) for code, plan in enumerate(plans)])
    for code in range(len(plans)):  # no rounding gap at the end of a product's share
        cumulative[sum(len(p.models) for p in plans[:code + 1]) - 1] = code + 1

    # who: product, subscriber (with a credential when it has some) and organization, one text per
    # (subscription, credential, phase)
    party_texts: list[str] = []
    first_party = []
    for active in subscriptions:
        subscription = active.subscription
        subscriber = subscribers.get(subscription.subscriber)
        organization = subscriber and subscriber.organization and organizations.get(subscriber.organization)
        organization_text = f',"organizationName":{_js(organization.name)}' if organization else ""
        first_party.append(len(party_texts) // 2)
        for credential in subscription.credentials or [None]:
            items = [("id", _js(subscription.subscriber))]
            if subscriber and subscriber.email:
                items.append(("email", _js(subscriber.email)))
            if credential is not None:
                items.append(("credential", "{" + _fragments_json([("name", _js(credential.name)),
                                                                   ("value", _js(credential.value))]) + "}"))
            subscriber_text = f',"subscriber":{{{_fragments_json(items)}}}'
            for _, pid in active.phases:
                product_text = f',"productName":{_js(products[pid].name)}'
                party_texts.append(product_text + subscriber_text + organization_text)
                party_texts.append(product_text + organization_text)  # missing_subscriber

    # custom fields: string fields, numeric elements, units (in that order, after the fixed fields)
    string_fields: dict[str, list[str]] = {}
    numeric_fields: list[str] = []
    unit_names: list[str] = []
    for plan in plans:
        for field_name, texts in plan.string_fields.items():
            known = string_fields.setdefault(field_name, [])
            known.extend(text for text in texts if text not in known)
        numeric_fields.extend(name for name in plan.numeric_fields if name not in numeric_fields)
        unit_names.extend(name for name in plan.units if name not in unit_names)
    extras, extra_texts = [], []
    for field_name in sorted(string_fields):
        texts = string_fields[field_name]
        allowed = [[texts.index(text) + 1 for text in plan.string_fields.get(field_name, [])] for plan in plans]
        widest = max(len(values) for values in allowed)
        extras.append(("string", np.array([len(values) for values in allowed]),
                       np.array([values + [0] * (widest - len(values)) for values in allowed], dtype=np.int32)))
        extra_texts.append([""] + [f",{_js(field_name)}:{text}" for text in texts])
    for name in numeric_fields:
        extras.append(("number", np.array([name in plan.numeric_fields for plan in plans]), np.zeros(0)))
        extra_texts.append([""] + [f",{_js(name)}:{value}" for value in range(1, 50)])
    for position, name in enumerate(unit_names):
        # the product's first unit opens the "units" object (closed at the end of the line)
        later = [any(u in plan.units for u in unit_names[:position]) for plan in plans]
        extras.append(("unit", np.array([name in plan.units for plan in plans]), np.array(later, dtype=np.int32)))
        extra_texts.append([""] + [f',"units":{{{_js(name)}:{value}' for value in range(1, 40)]
                           + [f",{_js(name)}:{value}" for value in range(1, 40)])
    drawing = _Drawing(
        first_product=np.array([code_of[s.phases[0][1]] for s in subscriptions], dtype=np.int32),
        boundary_key=boundary_key, boundary_product=boundary_product, first_boundary=first_boundary, base_ms=base,
        phase_starts=phase_starts,
        model_cumulative=cumulative,
        model_of=np.concatenate([np.array(plan.models, dtype=np.int32) for plan in plans]),
        reasoning=np.array([price.reasoning for price in prices]), prices=_price_columns(prices),
        credentials=np.array([max(len(s.subscription.credentials), 1) for s in subscriptions], dtype=np.int64),
        phases=np.array([len(s.phases) for s in subscriptions], dtype=np.int64),
        first_party=np.array(first_party, dtype=np.int64), extras=extras,
        has_units=np.array([bool(plan.units) for plan in plans]),
    )
    return drawing, party_texts, extra_texts


def _price_columns(prices: list[ModelPrice]) -> list[np.ndarray]:
    """Per model: input, output, cache read and cache creation price in 1e-4 USD per million tokens."""
    return [np.array([p.price_e4(name) for p in prices], dtype=np.int64) for name in (
        "input_per_million", "output_per_million", "cache_read_per_million", "cache_creation_per_million")]


def _draw_events(catalog: Catalog, subscriptions: list[_ActiveSubscription], prices: list[ModelPrice],
                 n: int, seed: int, pool: ThreadPoolExecutor) -> _Events:
    """When and for whom each event is (one random stream, then sorted by time), then everything
    else in blocks of ``BLOCK_EVENTS``, each with its own random stream, on the thread pool."""
    rng = np.random.default_rng(seed)
    count = len(subscriptions)
    # skewed usage: Zipf weights in a random rank order, scaled by how long each is active
    ranks = rng.permutation(count) + 1
    window_start = np.array([s.window_start for s in subscriptions], dtype=np.int64)
    window_length = np.array([s.window_end - s.window_start for s in subscriptions], dtype=np.int64)
    weights = (1.0 / ranks**ZIPF_EXPONENT) * (window_length / 1000.0)
    subscription = np.repeat(np.arange(count, dtype=np.int32), rng.multinomial(n, weights / weights.sum()))
    # requestTime: uniform in the window, thinned by a diurnal curve (a few redraws)
    ms = (rng.random(n) * window_length[subscription]).astype(np.int64)
    ms += window_start[subscription]
    pending = np.flatnonzero(rng.random(n, dtype=np.float32) >= _DIURNAL[ms // 60_000 % 1440])
    for _ in range(8):
        if not len(pending):
            break
        ms[pending] = window_start[subscription[pending]] + (
            rng.random(len(pending)) * window_length[subscription[pending]]).astype(np.int64)
        pending = pending[rng.random(len(pending), dtype=np.float32) >= _DIURNAL[ms[pending] // 60_000 % 1440]]
    ms, subscription = _in_time_order(ms, subscription)  # from here on, position = sequence number

    drawing, party_texts, extra_texts = _drawing(catalog, subscriptions, prices)
    events = _Events(rng, ms, subscription, party_texts, extra_texts)
    streams = np.random.SeedSequence(seed).spawn((n - 1) // BLOCK_EVENTS + 1)
    for future in [pool.submit(_draw_block, drawing, events, first, np.random.default_rng(stream))
                   for first, stream in zip(range(0, n, BLOCK_EVENTS), streams, strict=True)]:
        future.result()
    return events


def _draw_block(d: _Drawing, e: _Events, first: int, rng: np.random.Generator) -> None:
    """The draws of events first .. first + BLOCK_EVENTS - 1 (written into their part of ``e``)."""
    last = min(first + BLOCK_EVENTS, len(e))
    n = last - first
    block = slice(first, last)
    subscription = e.subscription[block]
    # product at requestTime (plan changes), then a model that fits the product
    product, phase = d.first_product[subscription], np.zeros(n, dtype=np.int64)
    if d.boundary_key is not None:
        key = subscription.astype(np.int64) << 42
        key += e.ms[block] - d.base_ms
        boundary = np.searchsorted(d.boundary_key, key, side="right") - 1
        np.maximum(boundary, d.first_boundary[subscription], out=boundary)
        product = d.boundary_product[boundary]
        phase = boundary - d.first_boundary[subscription]
    elif d.phase_starts:  # plan changes too far apart for one key: subscription by subscription
        for position, (starts, codes) in d.phase_starts.items():
            rows = np.flatnonzero(subscription == position)
            phase[rows] = np.maximum(np.searchsorted(starts, e.ms[block][rows], side="right") - 1, 0)
            product[rows] = codes[phase[rows]]
    model = e.model[block]
    model[:] = d.model_of[_pick(d.model_cumulative, product + rng.random(n))]

    # tokens (log-normal) and exact costs in 1e-10 USD
    input_tokens, output_tokens = e.input_tokens[block], e.output_tokens[block]
    input_tokens[:] = _lognormal(rng, 800, 1.0, n, 1, 200_000)
    output_tokens[:] = _lognormal(rng, 250, 0.9, n, 1, 32_000)
    reasoning = e.reasoning_tokens[block]
    reasoning[:] = 0
    rows = np.flatnonzero(d.reasoning[model])
    reasoning[rows] = _lognormal(rng, 1500, 0.8, len(rows), 0, 100_000)
    cache_read = e.cache_read[block]
    cache_read[:] = 0
    read_rows = np.flatnonzero(rng.random(n, dtype=np.float32) < 0.3)
    cache_read[read_rows] = input_tokens[read_rows] * rng.uniform(0.2, 0.9, len(read_rows))
    cache_creation = e.cache_creation[block]
    cache_creation[:] = 0
    input_price, output_price, read_price, creation_price = d.prices
    creation_rows = np.flatnonzero((creation_price[model] > 0) & (rng.random(n, dtype=np.float32) < 0.1))
    cache_creation[creation_rows] = input_tokens[creation_rows] * rng.uniform(0.1, 0.5, len(creation_rows))
    total_cost = e.total_cost[block]  # integers: tokens x price in 1e-4 USD per million = 1e-10 USD
    np.multiply(input_tokens, input_price[model], out=total_cost)
    total_cost += (output_tokens + reasoning) * output_price[model]
    total_cost[read_rows] += cache_read[read_rows] * read_price[model[read_rows]]
    total_cost[creation_rows] += cache_creation[creation_rows] * creation_price[model[creation_rows]]
    e.cost_mode[block] = _pick(np.array([0.96, 0.98, 1.0]), rng.random(n, dtype=np.float32))
    duration = output_tokens * rng.uniform(8, 25, n).astype(np.float32)
    duration += reasoning * np.float32(5) + np.float32(300)
    e.duration[block] = duration
    flags = e.flags[block]
    np.less(rng.random(n, dtype=np.float32), 0.4, out=flags, casting="unsafe")
    flags *= 2
    flags += rng.random(n, dtype=np.float32) < 0.03

    # who: the first credential carries most of the traffic
    credentials = d.credentials[subscription]
    party = d.first_party[subscription] + phase
    if (credentials > 1).any():
        share = rng.random(n)
        credential = np.where((credentials > 1) & (share >= 0.8),
                              1 + ((share - 0.8) / 0.2 * np.maximum(credentials - 1, 1)).astype(np.int64), 0)
        party += np.minimum(credential, credentials - 1) * d.phases[subscription]
    e.party[block] = party

    # custom fields
    for column, (kind, per_product, values) in zip(e.extras, d.extras, strict=True):
        if kind == "string":  # one of the product's values most of the time
            sizes = per_product[product]
            pick = values[product, (rng.random(n) * sizes).astype(np.int64)]
            column[block] = np.where((sizes > 0) & (rng.random(n) < 0.85), pick, 0)
        elif kind == "number":
            column[block] = np.where(per_product[product], rng.integers(1, 50, n), 0)
        else:  # unit
            column[block] = np.where(per_product[product], rng.integers(1, 40, n) + 39 * values[product], 0)
    e.has_units[block] = d.has_units[product]


@dataclass
class _Lines:
    """The lines in file order: which event each is (a duplicate repeats a good one) and its UTC day."""

    event: np.ndarray
    day: np.ndarray


def _bad_and_duplicates(events: _Events, bad_fraction: float, duplicate_fraction: float,
                        rng: np.random.Generator, report: GenerateReport) -> _Lines:
    """Choose the bad lines (a kind each) and the duplicated good lines, placed later in their day."""
    n = len(events)
    bad_count = min(n, int(round(n * bad_fraction)))
    kind = np.full(n, -1, dtype=np.int8)
    if bad_count:
        bad_rows = rng.choice(n, size=bad_count, replace=False)
        kind[bad_rows] = rng.permutation(np.arange(bad_count) % len(BAD_KINDS))
    events.kind = kind
    good = np.flatnonzero(kind < 0)
    duplicate_count = min(len(good), int(round(n * duplicate_fraction)))
    day = events.ms // DAY_MS
    line_event = np.arange(n, dtype=np.int64)
    if duplicate_count:
        sources = np.sort(rng.choice(good, size=duplicate_count, replace=False))
        copy_ms = np.minimum(events.ms[sources] + rng.integers(1, 120_000, duplicate_count),
                             (day[sources] + 1) * DAY_MS - 1)
        # file order is (time, sequence, original before copy): a copy goes after the events before its
        # time, and after those at exactly its time with a sequence number up to its own
        order = np.lexsort((sources, copy_ms))
        sources, copy_ms = sources[order], copy_ms[order]
        low = np.searchsorted(events.ms, copy_ms, side="left")
        high = np.searchsorted(events.ms, copy_ms, side="right")
        where = np.clip(sources + 1, low, high)
        line_event = np.insert(line_event, where, sources)
        day = np.insert(day, where, day[sources])
    report.events = len(good)
    report.bad_lines = bad_count
    report.duplicate_lines = duplicate_count
    report.bad_by_kind = {
        name: int((kind == index).sum()) for index, name in enumerate(BAD_KINDS) if (kind == index).any()
    }
    return _Lines(line_event, day)


# --- rendering: a line is a row of indexes into one table of texts ---------------------------------------
#
# Each line is the concatenation of ``_Renderer.width`` texts, one per slot (transactionId, requestTime,
# model, token counts, cost, who, ...), each picked from a part of one table of texts: numbers, times of
# day, model and subscriber fragments, with the constant JSON between the values merged in. numpy
# computes the indexes of a chunk of lines and Arrow's ``take`` copies the texts out: the data buffer
# of its result is the lines' bytes, written as they are.

_EMPTY = 0  # the table's first text is ""
_D3 = np.array([list(f"{value:03d}".encode()) for value in range(1000)], dtype=np.uint8)  # 000 .. 999


def _const(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)[None, :]


def _digit_rows(low: int, high: int, width: int) -> np.ndarray:
    """The zero-padded ``width`` digits of low .. high - 1, one row each (built from blocks of 000 .. 999)."""
    if width <= 3:
        return _D3[low:high, 3 - width:]
    first, last = low // 1000, (high - 1) // 1000 + 1
    rows = np.concatenate([np.repeat(_digit_rows(first, last, width - 3), 1000, axis=0),
                           np.tile(_D3, (last - first, 1))], axis=1)
    return rows[low - first * 1000: high - first * 1000]


def _fixed(*pieces: np.ndarray) -> pa.Array:
    """Texts of equal length: the rows of the pieces side by side (a piece of one row repeats)."""
    count = max(len(piece) for piece in pieces)
    matrix = np.concatenate([np.broadcast_to(piece, (count, piece.shape[1])) for piece in pieces], axis=1)
    return string_array(matrix.reshape(-1), np.full(count, matrix.shape[1]))


@functools.lru_cache(maxsize=32)
def _numbers(prefix: str, count: int, empty_first: bool = False) -> pa.Array:
    """``prefix`` + the decimal text of 0 .. count - 1 (``empty_first``: the first text is "")."""
    head = _const(prefix)
    data, lengths = [], []
    for width in range(1, len(str(max(count - 1, 0))) + 1):
        low, high = (0 if width == 1 else 10 ** (width - 1)), min(10**width, count)
        rows = np.concatenate([np.broadcast_to(head, (high - low, head.shape[1])), _digit_rows(low, high, width)],
                              axis=1)
        data.append(rows.reshape(-1))
        lengths.append(np.full(high - low, rows.shape[1]))
    data, lengths = np.concatenate(data), np.concatenate(lengths)
    if empty_first:
        data, lengths[0] = data[lengths[0]:], 0
    return string_array(data, lengths)


@functools.lru_cache(maxsize=32)
def _five_digits(prefix: str = "", suffix: str = "", strip: bool = False) -> pa.Array:
    """``prefix`` + 00000 .. 99999 + ``suffix``; ``strip``: the digits without trailing zeros, and 00000 -> ""."""
    rows = np.concatenate([np.broadcast_to(_const(prefix), (100_000, len(prefix.encode()))), _digit_rows(0, 100_000, 5),
                           np.broadcast_to(_const(suffix), (100_000, len(suffix.encode())))], axis=1)
    if not strip:
        return string_array(rows.reshape(-1), np.full(100_000, rows.shape[1]))
    values = np.arange(100_000)
    trailing = sum((values % 10**k == 0).astype(np.int64) for k in range(1, 6))
    keep = np.arange(rows.shape[1])[None, :] < rows.shape[1] - len(suffix.encode()) - trailing[:, None]
    keep[:, rows.shape[1] - len(suffix.encode()):] = True
    keep[0] = False
    return string_array(rows[keep], keep.sum(axis=1))


@functools.lru_cache(maxsize=1)
def _seconds() -> pa.Array:
    """SS.mmm for every millisecond of a minute (6 bytes each: read at random, it stays in the CPU cache)."""
    return _fixed(np.repeat(_D3[:60, 1:], 1000, axis=0), _const("."), np.tile(_D3, (60, 1)))


@functools.lru_cache(maxsize=8)
def _milliseconds(suffixes: tuple[str, ...]) -> pa.Array:
    """0 .. 999 then 000 .. 999, each + every suffix (suffix-major): the last 3 digits of a number."""
    return text_array([f"{value:0{width}d}{suffix}" for suffix in suffixes for width in (1, 3)
                        for value in range(1000)])


def _minutes(first: int, last: int, prefix: str) -> pa.Array:
    """``prefix`` + YYYY-MM-DDTHH:MM: for every minute from ``first`` to ``last`` (epoch minutes)."""
    first_day, last_day = first // 1440, last // 1440
    days = np.array([list(f"{datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day):%Y-%m-%dT}".encode())
                     for day in range(first_day, last_day + 1)], dtype=np.uint8)
    minutes = np.concatenate([np.repeat(_D3[:24, 1:], 60, axis=0), _const(":").repeat(1440, axis=0),
                              np.tile(_D3[:60, 1:], (24, 1)), _const(":").repeat(1440, axis=0)], axis=1)
    rows = np.concatenate([np.repeat(days, 1440, axis=0), np.tile(minutes, (len(days), 1))], axis=1)
    return _fixed(_const(prefix), rows[first - first_day * 1440: last + 1 - first_day * 1440])


class _Table:
    """Texts laid end to end; ``add`` returns where a group of them starts. The first text is ""."""

    def __init__(self) -> None:
        self.parts: list[pa.Array] = [text_array([""])]
        self.size = 1

    def add(self, texts: pa.Array | list[str]) -> int:
        base = self.size
        self.parts.append(texts if isinstance(texts, pa.Array) else text_array(texts))
        self.size += len(self.parts[-1])
        return base

    def texts(self) -> pa.Array:
        return pa.concat_arrays(self.parts)


# the slots of a line, in order (the JSON between the values belongs to the neighbouring texts):
_SEQUENCE = 0  # '{"transactionId":"<prefix>-' + 5 digits, 5 digits
_REQUEST = 2  # '","eventType":"completion","requestTime":"' + YYYY-MM-DDTHH:MM:, SS.mmm
_RESPONSE = 4  # 'Z","responseTime":"' + YYYY-MM-DDTHH:MM:, SS.mmm
_MODEL = 6  # 'Z","provider":..,"model":..,"inputTokenCount":', input, output, reasoning, cache read,
#             cache creation, total tokens (each with its key; the optional ones "" when 0)
_COST = 13  # totalCost: ',"totalCost":' + whole, fraction (2), or the cost parts, or nothing
_PARTY = 16  # productName, subscriber, organizationName + ',"requestDuration":', its thousands, its
#              last 3 digits + isStreamed .. environment (+ "}\n" when no custom field follows);
#              then the custom fields and the end ("}\n", or "}}\n" after units)


class _Renderer:
    """The table of texts and, for a chunk of lines, the indexes into it and the bytes."""

    def __init__(self, events: _Events, prices: list[ModelPrice], prefix: str) -> None:
        self.events = e = events
        table = _Table()
        n = len(e)
        self.sequence_high = table.add(_fixed(_const(f'{{"transactionId":"{prefix}-'),
                                              _digit_rows(0, (n - 1) // 100_000 + 1, 5)))
        self.sequence_low = table.add(_five_digits())
        # requestTime and responseTime: the minute (with the JSON before it), then SS.mmm
        self.first_minute = int(e.ms[0] // 60_000)
        last_minute = int((e.ms + e.duration).max() // 60_000)
        self.request_minute = table.add(_minutes(self.first_minute, last_minute,
                                                 '","eventType":"completion","requestTime":"'))
        self.response_minute = table.add(_minutes(self.first_minute, last_minute, 'Z","responseTime":"'))
        self.minute_count = last_minute - self.first_minute + 1
        table.add(_minutes(self.first_minute, last_minute, '","responseTime":"'))  # bad_timestamp: + minute_count
        self.seconds = table.add(_seconds())
        self.model_count = len(prices)
        self.model = table.add([f'Z","provider":{_js(p.provider)},"model":{_js(p.model)},"inputTokenCount":{sign}'
                                for sign in ("", "-") for p in prices])  # negative_tokens: + model_count
        self.many = table.add(['"many"'])
        self.input = table.add(_numbers("", _size(e.input_tokens.max())))
        self.output = table.add(_numbers(',"outputTokenCount":', _size(e.output_tokens.max())))
        self.reasoning = table.add(_numbers(',"reasoningTokenCount":', _size(e.reasoning_tokens.max()), True))
        self.cache_read = table.add(_numbers(',"cacheReadTokenCount":', _size(e.cache_read.max()), True))
        self.cache_creation = table.add(
            _numbers(',"cacheCreationTokenCount":', _size(e.cache_creation.max()), True))
        self.total_tokens = table.add(_numbers(',"totalTokenCount":',
                                               _size(int(e.input_tokens.max()) + int(e.output_tokens.max()))))
        self.cost = _CostTexts(table, ',"totalCost":', int(e.total_cost.max() // COST_UNIT))
        self.cost_parts = table.add(_cost_parts(e, _price_columns(prices)))
        self.extra_bases = [table.add(texts) for texts in e.extra_texts]
        # who (product, subscriber, organization); missing_subscriber: + 1
        self.party = table.add([text + ',"requestDuration":' for text in e.party_texts])
        # requestDuration: the thousands, then the last three digits with what follows: streamed, stop
        # reason, the fixed fields (and the end of the line, unless custom fields come after)
        self.duration_high = table.add(_numbers("", int(e.duration.max()) // 1000 + 1, True))
        tails = tuple(f',"isStreamed":{streamed},"stopReason":{stop},"costType":"AI","environment":"production"'
                      + ("" if e.extras else "}\n") for streamed in ("false", "true")
                      for stop in ('"END"', '"TOKEN_LIMIT"'))
        self.duration_low = table.add(_milliseconds(tails))
        self.end = table.add(["}\n", "}}\n", "\n"])  # + has_units; 2: truncated (not_json)
        self.width = _PARTY + 3 + len(e.extras) + 1 if e.extras else _PARTY + 3
        self.table = table.texts()
        self._lengths: np.ndarray | None = None

    def indexes(self, lines: np.ndarray) -> np.ndarray:
        """The table index of every slot of these lines (event numbers, in file order)."""
        e = self.events
        rows = lines
        if len(lines) and lines[-1] - lines[0] == len(lines) - 1 and (np.diff(lines) == 1).all():
            rows = slice(int(lines[0]), int(lines[-1]) + 1)  # no duplicate inside: views, not copies
        index = np.empty((len(lines), self.width), dtype=np.int32)

        def put(slot: int, base: int, values: np.ndarray) -> None:
            np.add(values, np.int32(base), out=index[:, slot], casting="unsafe")

        high, low = np.divmod(lines, 100_000)
        put(_SEQUENCE, self.sequence_high, high)
        put(_SEQUENCE + 1, self.sequence_low, low)
        ms = e.ms[rows]
        duration = e.duration[rows]
        for slot, base, instant in ((_REQUEST, self.request_minute, ms),
                                    (_RESPONSE, self.response_minute, ms + duration)):
            minute, millisecond = np.divmod(instant, 60_000)
            put(slot, base - self.first_minute, minute)
            put(slot + 1, self.seconds, millisecond)
        put(_MODEL, self.model, e.model[rows])
        input_tokens, output_tokens = e.input_tokens[rows], e.output_tokens[rows]
        put(_MODEL + 1, self.input, input_tokens)
        put(_MODEL + 2, self.output, output_tokens)
        put(_MODEL + 3, self.reasoning, e.reasoning_tokens[rows])
        put(_MODEL + 4, self.cache_read, e.cache_read[rows])
        put(_MODEL + 5, self.cache_creation, e.cache_creation[rows])
        put(_MODEL + 6, self.total_tokens, input_tokens + output_tokens)
        mode = e.cost_mode[rows]
        self.cost.indexes(e.total_cost[rows], mode == 0, index[:, _COST:_PARTY])
        parts = np.flatnonzero(mode == 1)
        if len(parts):
            index[parts, _COST] = self.cost_parts + e.parts_index[rows][parts]
        put(_PARTY, self.party, 2 * e.party[rows])
        high, low = np.divmod(duration, 1000)
        put(_PARTY + 1, self.duration_high, high)
        low += 1000 * (high > 0)
        low += np.int32(2000) * e.flags[rows]
        put(_PARTY + 2, self.duration_low, low)
        for number, (base, values) in enumerate(zip(self.extra_bases, e.extras, strict=True)):
            put(_PARTY + 3 + number, base, values[rows])
        if e.extras:
            put(self.width - 1, self.end, e.has_units[rows])
        kind = e.kind[rows]
        bad = np.flatnonzero(kind >= 0)
        if len(bad):
            self._break(index, bad, kind[bad])
        return index

    def _break(self, index: np.ndarray, bad: np.ndarray, kind: np.ndarray) -> None:
        index[bad[kind == BAD_KINDS.index("missing_subscriber")], _PARTY] += 1
        index[bad[kind == BAD_KINDS.index("negative_tokens")], _MODEL] += self.model_count
        index[bad[kind == BAD_KINDS.index("bad_timestamp")], _RESPONSE] += self.minute_count
        index[bad[kind == BAD_KINDS.index("wrong_type")], _MODEL + 1] = self.many
        cut = bad[kind == BAD_KINDS.index("not_json")]
        if len(cut):  # truncated: the slots up to about half the line, then the newline
            if self._lengths is None:
                self._lengths = np.diff(np.frombuffer(self.table.buffers()[1], dtype=np.int32))
            rows = index[cut]
            length = np.cumsum(self._lengths[rows], axis=1)
            keep = np.minimum((length < (length[:, -1] // 2)[:, None]).sum(axis=1), self.width - 2)
            rows[np.arange(self.width)[None, :] > keep[:, None]] = _EMPTY
            rows[:, -1] = self.end + 2
            index[cut] = rows

    def render(self, lines: np.ndarray) -> list[memoryview]:
        """The bytes of these lines, in pieces (copied out in small blocks: the table's hot parts and
        the result stay in the CPU caches)."""
        index = self.indexes(lines)
        pieces = []
        for first in range(0, len(index), TAKE_LINES):
            texts = pc.take(self.table, int32_array(index[first: first + TAKE_LINES].reshape(-1)))
            offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)
            start, stop = offsets[texts.offset], offsets[texts.offset + len(texts)]
            pieces.append(memoryview(texts.buffers()[2])[start:stop])
        return pieces


def _size(largest: int) -> int:
    """A table size above ``largest``, rounded up (cached tables get reused across calls)."""
    return (int(largest) // 4096 + 1) * 4096


def _cost_parts(e: _Events, prices: list[np.ndarray]) -> pa.Array:
    """The cost-parts text of each event that carries its cost in parts (``cost_mode`` 1), rendered
    like lines: 12 slots from a small table of cost texts, joined."""
    rows = np.flatnonzero(e.cost_mode == 1)
    e.parts_index = np.zeros(len(e), dtype=np.int32)
    e.parts_index[rows] = np.arange(len(rows), dtype=np.int32)
    if not len(rows):
        return text_array([])
    model = e.model[rows]
    input_price, output_price, read_price, creation_price = prices
    costs = [e.input_tokens[rows] * input_price[model],
             (e.output_tokens[rows] + e.reasoning_tokens[rows]) * output_price[model],
             e.cache_read[rows] * read_price[model], e.cache_creation[rows] * creation_price[model]]
    names = ("inputTokenCost", "outputTokenCost", "cacheReadTokenCost", "cacheCreationTokenCost")
    table = _Table()
    index = np.empty((len(rows), 12), dtype=np.int32)
    for number, (name, cost) in enumerate(zip(names, costs, strict=True)):
        # input and output cost always, the cache ones when not 0
        _CostTexts(table, f',"{name}":', int(cost.max() // COST_UNIT)).indexes(
            cost, cost > 0 if number >= 2 else np.ones(len(rows), dtype=bool),
            index[:, 3 * number: 3 * number + 3])
    texts = pc.take(table.texts(), int32_array(index.reshape(-1)))
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset: texts.offset + len(texts) + 1]
    return pa.StringArray.from_buffers(len(rows), pa.py_buffer(np.ascontiguousarray(offsets[::12])),
                                       texts.buffers()[2])


class _CostTexts:
    """An exact decimal amount of 1e-10 USD in three slots: ``prefix`` + whole, then the fraction
    without trailing zeros as ".ddddd" + "ddddd" (no "." when it is 0)."""

    def __init__(self, table: _Table, prefix: str, largest_whole: int) -> None:
        self.whole = table.add(_numbers(prefix, largest_whole + 1))
        self.fraction_high = table.add(_five_digits("."))
        self.fraction_high_last = table.add(_five_digits(".", strip=True))
        self.fraction_low = table.add(_five_digits(strip=True))

    def indexes(self, amount: np.ndarray, present: np.ndarray, out: np.ndarray) -> None:
        whole, fraction = np.divmod(amount, COST_UNIT)
        high, low = np.divmod(fraction, 100_000)
        out[:, 0] = whole
        out[:, 0] += self.whole
        out[:, 1] = high
        out[:, 1] += np.where(low > 0, self.fraction_high, self.fraction_high_last)
        out[:, 2] = low
        out[:, 2] += self.fraction_low
        out[~present] = _EMPTY


# gzip without a file name and with mtime 0 (RFC 1952): deterministic bytes
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _deflate(renderer: _Renderer, lines: np.ndarray) -> tuple[list[memoryview], list[bytes]]:
    """The lines' bytes and their deflate blocks (compressed on the worker thread; the blocks of a
    day's chunks, one after the other, make one deflate stream, as pigz does)."""
    pieces = renderer.render(lines)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    blocks = [deflate.compress(piece) for piece in pieces]
    blocks.append(deflate.flush(zlib.Z_SYNC_FLUSH))
    return pieces, blocks


def _write_days(renderer: _Renderer, lines: _Lines, directory: Path, compress: bool, progress: bool,
                report: GenerateReport, pool: ThreadPoolExecutor) -> None:
    """One file per UTC day; chunks of lines rendered (and compressed) on the thread pool, written
    in order."""
    day = lines.day
    boundaries = np.flatnonzero(np.diff(day)) + 1
    starts = np.concatenate(([0], boundaries)).tolist()
    ends = np.concatenate((boundaries, [len(day)])).tolist()
    chunks = [(number, first, min(first + CHUNK_LINES, last))
              for number, (start, last) in enumerate(zip(starts, ends, strict=True))
              for first in range(start, last, CHUNK_LINES)]
    directory.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("days", total=len(starts))
    handle = path = None
    crc = size = 0
    work = _deflate if compress else renderer.render
    rendered = (pool.submit(work, renderer, lines.event[first:last]) if compress
                else pool.submit(work, lines.event[first:last]) for _, first, last in chunks)
    pending = deque(itertools.islice(rendered, 2 * THREADS))  # a few chunks ahead, not all in memory
    try:
        for number, first, last in chunks:
            future = pending.popleft()
            pending.extend(itertools.islice(rendered, 1))
            if first == starts[number]:
                name = f"{datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(day[first])):%Y-%m-%d}"
                path = directory / (f"{name}.jsonl.gz" if compress else f"{name}.jsonl")
                handle = path.open("wb")
                if compress:
                    handle.write(_GZIP_HEADER)
                    crc = size = 0
            if compress:
                pieces, blocks = future.result()
                for piece in pieces:
                    crc = zlib.crc32(piece, crc)
                    size += len(piece)
                handle.writelines(blocks)
            else:
                handle.writelines(future.result())
            if last == ends[number]:
                if compress:  # the final (empty) block, CRC-32 and size of the day's data
                    handle.write(zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH))
                    handle.write(struct.pack("<II", crc, size & 0xFFFFFFFF))
                handle.close()
                handle = None
                report.files.append(path)
                report.bytes_written += path.stat().st_size
                report.lines_written += last - starts[number]
                if bar is not None:
                    bar.update(task, advance=1)
    finally:
        for future in pending:
            future.cancel()
        if handle is not None:
            handle.close()
        if bar is not None:
            bar.stop()
