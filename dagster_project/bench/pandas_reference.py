"""The rating an analyst would write with pandas, for the benchmark's bench catalog (the
tutorial's two products): a reference for speed and, independently, for the amounts.

Rules, straight from docs/billing-rules.md, kept deliberately plain: ``json.loads`` per line; a
line is dropped when it is not JSON, has no subscriber id, a negative or non-integer token count,
or a timestamp without an offset; the first line of each transactionId wins; cost is
``totalCost``, else the sum of the cost parts, else tokens × the model's list price per million
(half-even to 10 decimals); events in October 2026 are attributed by subscriber and product (the
bench catalog gives each subscriber one subscription). Summaries and research reports (o3 calls)
are graduated: 1,000 at 1.50, the rest at 1.35; reasoning cost passes through at 1.25. Each line
is rounded half-even to cents. Prints JSON: usage amount per subscription and the peak RSS.

Run as ``python -m dagster_project.bench.pandas_reference <data dir>``.
"""

from __future__ import annotations

import csv
import json
import resource
import sys
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pandas as pd
import yaml

CENT = Decimal("0.01")
COST_QUANTUM = Decimal("1e-10")
MILLION = Decimal(1_000_000)
OCTOBER = (pd.Timestamp("2026-10-01", tz="UTC"), pd.Timestamp("2026-11-01", tz="UTC"))
TOKEN_FIELDS = ("inputTokenCount", "outputTokenCount", "cacheReadTokenCount", "cacheCreationTokenCount")
PRICE_FIELDS = ("input_per_million", "output_per_million", "cache_read_per_million", "cache_creation_per_million")
COST_PARTS = ("inputTokenCost", "outputTokenCost", "cacheReadTokenCost", "cacheCreationTokenCost")


def _event(line: str, prices: dict[str, tuple[Decimal, ...]]) -> dict | None:
    try:
        data = json.loads(line, parse_float=Decimal)
    except ValueError:
        return None
    subscriber = (data.get("subscriber") or {}).get("id")
    stamp = data.get("requestTime", "")
    tokens = [data.get(name, 0) for name in TOKEN_FIELDS]
    if not subscriber or not (stamp.endswith("Z") or stamp[-6:-5] in "+-"):
        return None
    if any(type(count) is not int or count < 0 for count in tokens):
        return None
    if "totalCost" in data:
        cost = Decimal(data["totalCost"])
    elif any(part in data for part in COST_PARTS):
        cost = sum((Decimal(data.get(part, 0)) for part in COST_PARTS), Decimal(0))
    else:
        price = prices[data["model"]]
        cost = (sum((count * rate for count, rate in zip(tokens, price, strict=True)), Decimal(0)) / MILLION)
        cost = cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)
    return {"transaction_id": data["transactionId"], "subscriber": subscriber, "product": data["productName"],
            "model": data.get("model"), "request_time": stamp, "cost": cost}


def _graduated(quantity: Decimal) -> Decimal:
    first = min(quantity, Decimal(1000))
    return _cents(first * Decimal("1.50")) + (_cents((quantity - first) * Decimal("1.35")) if quantity > 1000 else 0)


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def rate(data_dir: Path) -> dict[str, Decimal]:
    catalog = yaml.safe_load(next((data_dir / "catalog").glob("*.yaml")).read_text())
    product_ids = {p["name"]: p["id"] for p in catalog["products"]} | {p["id"]: p["id"] for p in catalog["products"]}
    subscription_of = {(s["subscriber"], s["product"]): s["id"] for s in catalog["subscriptions"]}
    with (data_dir / "landing" / "model_prices.csv").open() as handle:
        prices = {row["model"]: tuple(Decimal(row[name]) for name in PRICE_FIELDS) for row in csv.DictReader(handle)}

    records = []
    for path in sorted((data_dir / "landing" / "events").rglob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            records += [event for line in handle if line.strip() and (event := _event(line, prices))]
    events = pd.DataFrame.from_records(records).drop_duplicates("transaction_id", keep="first")
    events["request_time"] = pd.to_datetime(events["request_time"], utc=True, format="ISO8601")
    events = events[(events["request_time"] >= OCTOBER[0]) & (events["request_time"] < OCTOBER[1])]
    events["subscription"] = [
        subscription_of.get((subscriber, product_ids.get(product)))
        for subscriber, product in zip(events["subscriber"], events["product"], strict=True)
    ]
    amounts: dict[str, Decimal] = {}
    for (subscription, product), group in events.dropna(subset=["subscription"]).groupby(["subscription", "product"]):
        if product_ids[product] == "docsum-summaries":
            amount = _graduated(Decimal(len(group)))
        else:
            reports = Decimal(int((group["model"] == "o3").sum()))
            amount = (_graduated(reports) if reports else Decimal(0)) + _cents(sum(group["cost"], Decimal(0))
                                                                              * Decimal("1.25"))
        amounts[subscription] = amounts.get(subscription, Decimal(0)) + amount
    return amounts


def main() -> None:
    started = datetime.now()
    amounts = rate(Path(sys.argv[1]))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"amounts": {k: str(v) for k, v in sorted(amounts.items())}, "peak_rss_mb": peak_mb,
                      "seconds": (datetime.now() - started).total_seconds()}))


if __name__ == "__main__":
    main()
