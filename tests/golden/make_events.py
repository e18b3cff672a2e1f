"""Write the golden table's metering events, one file per scenario, into ``events/``.

The output is committed (the test reads the .jsonl files, not this script); rerun
``python tests/golden/make_events.py`` after changing a scenario and re-work its numbers by
hand in SCENARIOS.md. Deterministic: no clock, no randomness. Each event is built explicitly so
that a reader can check the quantities in SCENARIOS.md against the lines below.
"""

from __future__ import annotations

import json
from pathlib import Path

EVENTS_DIR = Path(__file__).resolve().parent / "events"


def ev(tid: str, at: str, subscriber: str, product: str | None = None, *, product_id: str | None = None,
       subscription: str | None = None, credential: str | None = None, credential_name: str | None = None,
       **fields) -> dict:
    """A `custom` event (no provider/model needed) unless ``fields`` say otherwise."""
    body: dict = {"transactionId": tid, "eventType": "custom", "requestTime": at, "subscriber": {"id": subscriber}}
    if credential is not None:
        body["subscriber"]["credential"] = {"value": credential}
        if credential_name is not None:
            body["subscriber"]["credential"]["name"] = credential_name
    if product is not None:
        body["productName"] = product
    if product_id is not None:
        body["productId"] = product_id
    if subscription is not None:
        body["subscriptionId"] = subscription
    body.update(fields)
    return body


def ai(tid: str, at: str, subscriber: str, product: str | None = None, *, model: str = "gpt-4o-mini",
       **fields) -> dict:
    """A `completion` event: provider and model are required for AI event types."""
    return ev(tid, at, subscriber, product, **{"eventType": "completion", "provider": "openai", "model": model,
                                               **fields})


def minutes(day: str, count: int, first_hour: int = 10) -> list[str]:
    """``count`` distinct instants on ``day`` (YYYY-MM-DD), one minute apart."""
    return [f"{day}T{first_hour + i // 60:02d}:{i % 60:02d}:00Z" for i in range(count)]


SCENARIOS: dict[str, list[dict | str]] = {}

# 01: exactly 10 summaries, the first tier's bound
SCENARIOS["01-tier-bound"] = [ev(f"e01-{i}", t, "u01", "DocSum Pro") for i, t in enumerate(minutes("2027-03-10", 10))]

# 02: 12 summaries, 2 above the bound (product named by its id)
SCENARIOS["02-above-bound"] = [ev(f"e02-{i}", t, "u02", product_id="docsum")
                               for i, t in enumerate(minutes("2027-03-10", 12))]

# 03: no events at all (s03)
SCENARIOS["03-zero-usage"] = []

# 04: the half-open month boundary, to the microsecond
SCENARIOS["04-period-end-microsecond"] = [
    ev("e04-before-start", "2026-12-31T23:59:59.999999Z", "u04", "DocSum Pro"),   # unbilled: before start
    ev("e04-jan-last", "2027-01-31T23:59:59.999999Z", "u04", "DocSum Pro"),       # January
    ev("e04-feb-first", "2027-02-01T00:00:00Z", "u04", "DocSum Pro"),             # February
    ev("e04-feb-last", "2027-02-28T23:59:59.999999Z", "u04", "DocSum Pro"),       # February
    ev("e04-at-end", "2027-03-01T00:00:00Z", "u04", subscription="s04"),          # unbilled: at the end
]

SCENARIOS["05-february-2027"] = []
SCENARIOS["06-february-2028-leap-day"] = [ev("e06-leap-day", "2028-02-29T12:00:00Z", "u06", "Seat Plan")]
SCENARIOS["07-april-30-days"] = []
SCENARIOS["08-july-cancelled-mid-period"] = [
    ev("e08-last", "2027-07-21T11:59:59.999999Z", "u08", "Seat Plan"),
    ev("e08-at-end", "2027-07-21T12:00:00Z", "u08", "Seat Plan"),                 # unbilled: at the end
]
SCENARIOS["09-inside-one-period"] = [
    ev("e09-before", "2027-08-10T05:59:59.999999Z", "someone", credential="sk-09"),  # unbilled
    ev("e09-at-start", "2027-08-10T06:00:00Z", "someone", credential="sk-09"),
    ev("e09-last-second", "2027-08-20T17:59:59Z", "someone", credential="sk-09"),
    ev("e09-at-end", "2027-08-20T18:00:00Z", "someone", credential="sk-09"),         # unbilled
]

SCENARIOS["10-jpy-half-even-down"] = [
    ev("e10-a", "2027-09-05T00:00:00Z", "u10", "JP OCR", units={"pages": 2}),
    ev("e10-b", "2027-09-06T00:00:00Z", "u10", "JP OCR", units={"pages": 3}),
]
SCENARIOS["11-jpy-half-even-up"] = [
    ev("e11-a", "2027-09-05T00:00:00Z", "u11", "JP OCR", units={"pages": 4}),
    ev("e11-b", "2027-09-06T00:00:00Z", "u11", "JP OCR", units={"pages": 3}),
]
SCENARIOS["12-kwd-three-decimals"] = [
    ai("e12-a", "2027-10-15T00:00:00Z", "u12", "KW Agent", outputTokenCount=6000, totalCost="0.001"),
    ai("e12-b", "2027-10-20T00:00:00Z", "u12", "KW Agent", outputTokenCount=169, totalCost="0.001"),
]

SCENARIOS["13-attribution-subscription-id"] = [
    # an unknown product and a new credential: billed to s13 anyway; both are recorded
    ev("e13-mystery", "2027-11-03T00:00:00Z", "somebody", "Mystery Bot", subscription="s13",
       credential="sk-13-ci", credential_name="ci"),
    # subscriptionId wins over the credential of s14
    ev("e13-over-credential", "2027-11-04T00:00:00Z", "u14", "Attribution Desk", subscription="s13",
       credential="sk-14"),
]
SCENARIOS["14-attribution-credential"] = [
    ev("e14-no-product", "2027-11-03T00:00:00Z", "stranger", credential="sk-14"),
    # the credential wins over subscriber u15 + product (u15 has s15 on the same product)
    ev("e14-over-subscriber", "2027-11-04T00:00:00Z", "u15", "Attribution Desk", credential="sk-14"),
    # the credential wins over the product the event names: rated on s14's product
    ev("e14-other-product", "2027-11-05T00:00:00Z", "u14", "DocSum Pro", credential="sk-14"),
]
SCENARIOS["15-attribution-subscriber-product-name"] = [
    ev("e15-upper", "2027-11-03T00:00:00Z", "u15", "ATTRIBUTION DESK"),
    # a credential value the catalog does not know: auto-created for s15, masked name
    ev("e15-lower-new-key", "2027-11-04T00:00:00Z", "u15", "attribution desk", credential="sk-15-laptop"),
    ev("e15-ghost", "2027-11-05T00:00:00Z", "u15", "Ghost Product"),              # unbilled: unknown product
    ev("e15-no-product", "2027-11-06T00:00:00Z", "u15"),                           # unbilled: names none
    ev("e15-nobody", "2027-11-07T00:00:00Z", "u-nobody", "DocSum Pro"),            # unbilled: no subscription
]
SCENARIOS["16-attribution-subscriber-product-id"] = [
    ev("e16-upper-id", "2027-11-03T00:00:00Z", "u16", product_id="ATTR"),
    ev("e16-mixed-id", "2027-11-04T00:00:00Z", "u16", product_id="Attr"),
    # id and name point at two products: the id wins
    ev("e16-id-wins", "2027-11-05T00:00:00Z", "u16", "DocSum Pro", product_id="attr"),
]

SCENARIOS["17-trial-ends-mid-period"] = [
    ev("e17-trial-1", "2027-05-12T10:00:00Z", "u17", "Trial Pro"),
    ev("e17-trial-2", "2027-05-23T23:59:59.999999Z", "u17", "Trial Pro"),
    ev("e17-paid-1", "2027-05-24T00:00:00Z", "u17", "Trial Pro"),
    ev("e17-paid-2", "2027-05-25T00:00:00Z", "u17", "Trial Pro"),
    ev("e17-paid-3", "2027-05-31T23:59:59Z", "u17", "Trial Pro"),
]

SCENARIOS["18-plan-change"] = [
    *[ev(f"e18-basic-{i}", t, "u18", credential="sk-18")
      for i, t in enumerate(["2027-06-01T00:00:00Z", "2027-06-03T00:00:00Z", "2027-06-07T00:00:00Z",
                             "2027-06-10T23:59:59.999999Z"])],
    *[ev(f"e18-pro-{i}", t, "u18", credential="sk-18")
      for i, t in enumerate(["2027-06-11T00:00:00Z", "2027-06-12T00:00:00Z", "2027-06-15T00:00:00Z",
                             "2027-06-20T00:00:00Z", "2027-06-30T23:59:59Z"])],
    ev("e18-pro-by-name", "2027-06-25T00:00:00Z", "u18", "Pro"),
    ev("e18-old-product", "2027-06-21T00:00:00Z", "u18", "Basic"),                # unbilled: now on Pro
]

SCENARIOS["19-in-advance-setup-fee"] = [
    ev("e19-first", "2027-10-11T00:00:00Z", "u19", "Advance Pro"),
    ev("e19-october-last", "2027-10-31T23:59:59.999999Z", "u19", "Advance Pro"),
    ev("e19-december", "2027-12-10T00:00:00Z", "u19", "Advance Pro"),
]

SCENARIOS["20-five-minutes-across-an-hour"] = [
    ev("e20-a", "2027-11-20T09:54:59.999999Z", "u20", "Burst Test"),
    ev("e20-b", "2027-11-20T09:55:00Z", "u20", "Burst Test"),
    ev("e20-c", "2027-11-20T09:57:30Z", "u20", "Burst Test"),
    ev("e20-d", "2027-11-20T09:59:59.999999Z", "u20", "Burst Test"),
    ev("e20-e", "2027-11-20T10:00:00Z", "u20", "Burst Test"),
    ev("e20-f", "2027-11-20T10:06:59.999999Z", "u20", "Burst Test"),
    ev("e20-at-end", "2027-11-20T10:07:00Z", "u20", "Burst Test"),                # unbilled: at the end
]

SCENARIOS["21-daily"] = [
    ev("e21-a", "2027-12-01T23:59:59.999999Z", "u21", "Daily Pass"),
    ev("e21-b", "2027-12-02T00:00:00Z", "u21", "Daily Pass"),
]

SCENARIOS["22-yearly-setup-in-arrears"] = [
    ev("e22-reports", "2026-11-15T00:00:00Z", "u22", "Annual Plan", units={"reports": 3}),
]

SCENARIOS["23-every-three-months"] = [
    ev("e23-q1", "2027-03-31T23:59:59.999999Z", "u23", "Quarterly"),
    ev("e23-q2", "2027-04-01T00:00:00Z", "u23", "Quarterly"),
]

SCENARIOS["24-anniversary"] = [
    ev("e24-first", "2027-02-28T11:59:59.999999Z", "u24", "Anniversary Plan"),
    ev("e24-second", "2027-02-28T12:00:00Z", "u24", "Anniversary Plan"),
]

SCENARIOS["25-cost-from-model-prices"] = [
    ai("e25-old-price", "2027-06-14T23:59:59.999999Z", "u25", "Cost Plus",
       inputTokenCount=1_000_000, outputTokenCount=100_000),
    ai("e25-new-price", "2027-06-15T00:00:00Z", "u25", "Cost Plus",
       inputTokenCount=1_000_000, outputTokenCount=100_000, cacheReadTokenCount=200_000),
    ai("e25-reported", "2027-06-20T00:00:00Z", "u25", "Cost Plus",
       inputTokenCount=1_000_000, outputTokenCount=100_000, totalCost="0.11"),
]
SCENARIOS["26-organization-price-override"] = [
    ai("e26-a", "2027-06-01T08:00:00Z", "u26", "Cost Plus", inputTokenCount=1_000_000, outputTokenCount=100_000),
    ai("e26-b", "2027-06-20T00:00:00Z", "u26", "Cost Plus", inputTokenCount=500_000, outputTokenCount=50_000),
]

SCENARIOS["27-pure-usage-token-metrics"] = [
    ai("e27-a", "2027-12-05T00:00:00Z", "u27", "Token Meter", inputTokenCount=1000, outputTokenCount=200,
       totalCost="0.0003"),
    ai("e27-b", "2027-12-06T00:00:00Z", "u27", "Token Meter", inputTokenCount=3000, outputTokenCount=500,
       totalTokenCount=4000, totalCost="0.0009"),
]

SCENARIOS["28-units-pages"] = [
    ev("e28-a", "2027-12-05T00:00:00Z", "u28", "Page Reader", units={"pages": 12}),
    ev("e28-b", "2027-12-06T00:00:00Z", "u28", "Page Reader", units={"pages": 30}),
    ev("e28-c", "2027-12-07T00:00:00Z", "u28", "Page Reader", units={"pages": 7.5}),
]
SCENARIOS["29-average-of-an-event-field"] = [
    ev("e29-a", "2027-12-05T00:00:00Z", "u29", "Latency Meter", requestDuration=100),
    ev("e29-b", "2027-12-06T00:00:00Z", "u29", "Latency Meter", requestDuration=200),
    ev("e29-c", "2027-12-07T00:00:00Z", "u29", "Latency Meter", requestDuration=250),
    ev("e29-no-value", "2027-12-08T00:00:00Z", "u29", "Latency Meter"),
]
SCENARIOS["30-max"] = [
    ai("e30-a", "2027-12-05T00:00:00Z", "u30", "Peak Meter", outputTokenCount=200, totalCost="0"),
    ai("e30-b", "2027-12-06T00:00:00Z", "u30", "Peak Meter", outputTokenCount=950, totalCost="0"),
    ai("e30-c", "2027-12-07T00:00:00Z", "u30", "Peak Meter", outputTokenCount=400, totalCost="0"),
]
SCENARIOS["31-count-unique"] = [
    ai("e31-a", "2027-12-05T00:00:00Z", "u31", "Model Mix", model="gpt-4o-mini", totalCost="0"),
    ai("e31-b", "2027-12-06T00:00:00Z", "u31", "Model Mix", model="gpt-4o-mini", totalCost="0"),
    ai("e31-c", "2027-12-07T00:00:00Z", "u31", "Model Mix", model="gpt-4o", totalCost="0"),
    ai("e31-d", "2027-12-08T00:00:00Z", "u31", "Model Mix", model="o3-mini", totalCost="0"),
]
SCENARIOS["32-match"] = [
    ev("e32-a", "2027-12-05T00:00:00Z", "u32", "Stream Meter", isStreamed=True),
    ev("e32-b", "2027-12-06T00:00:00Z", "u32", "Stream Meter", isStreamed=False),
    ev("e32-c", "2027-12-07T00:00:00Z", "u32", "Stream Meter", isStreamed=True),
    ev("e32-d", "2027-12-08T00:00:00Z", "u32", "Stream Meter"),
]
SCENARIOS["33-filter-on-model"] = [
    ai("e33-a", "2027-12-05T00:00:00Z", "u33", "Reasoning Meter", model="o3-mini", totalCost="0"),
    ai("e33-b", "2027-12-06T00:00:00Z", "u33", "Reasoning Meter", model="o3-mini", totalCost="0"),
    ai("e33-c", "2027-12-07T00:00:00Z", "u33", "Reasoning Meter", model="gpt-4o", totalCost="0"),
    ai("e33-d", "2027-12-08T00:00:00Z", "u33", "Reasoning Meter", model="o3-mini", totalCost="0"),
    ai("e33-e", "2027-12-09T00:00:00Z", "u33", "Reasoning Meter", model="gpt-4o", totalCost="0"),
]
SCENARIOS["34-count-with-filter"] = [
    ev("e34-a", "2027-12-05T00:00:00Z", "u34", "Prod Counter", environment="prod"),
    ev("e34-b", "2027-12-06T00:00:00Z", "u34", "Prod Counter", environment="staging"),
    ev("e34-c", "2027-12-07T00:00:00Z", "u34", "Prod Counter", environment="prod"),
    ev("e34-d", "2027-12-08T00:00:00Z", "u34", "Prod Counter"),
    ev("e34-e", "2027-12-09T00:00:00Z", "u34", "Prod Counter", environment="prod"),
]

SCENARIOS["35-volume-fixed-fee"] = [
    ev("e35-a", "2027-12-05T00:00:00Z", "u35", "Volume Plan", units={"credits": 20}),
    ev("e35-b", "2027-12-06T00:00:00Z", "u35", "Volume Plan", units={"credits": 5}),
]
SCENARIOS["36-graduated-fixed-fees"] = [
    ev("e36-a", "2027-12-05T00:00:00Z", "u36", "Graduated Plan", units={"credits": 20}),
    ev("e36-b", "2027-12-06T00:00:00Z", "u36", "Graduated Plan", units={"credits": 5}),
]
SCENARIOS["37-volume-on-a-bound"] = [
    ev("e37-a", "2027-12-05T00:00:00Z", "u37", "Volume Plan", units={"credits": 10}),
]
SCENARIOS["38-graduated-on-a-bound"] = [
    ev("e38-a", "2027-12-05T00:00:00Z", "u38", "Graduated Plan", units={"credits": 30}),
    ev("e38-b", "2027-12-06T00:00:00Z", "u38", "Graduated Plan", units={"credits": 20}),
]

SCENARIOS["39-organization-with-two-subscribers"] = [
    *[ev(f"e39a-{i}", t, "u39a", "DocSum Pro") for i, t in enumerate(minutes("2027-04-10", 3))],
    *[ev(f"e39b-{i}", t, "u39b", "DocSum Pro") for i, t in enumerate(minutes("2027-04-11", 11))],
]

_E40 = [ev(f"e40-{i}", t, "u40", "DocSum Pro") for i, t in enumerate(minutes("2027-05-10", 3))]
SCENARIOS["40-duplicates-a"] = _E40
# the same second event again (a duplicate) and its id with another payload (a conflict, quarantined)
SCENARIOS["40-duplicates-b"] = [_E40[1], {**_E40[2], "requestTime": "2027-05-20T00:00:00Z"}]

SCENARIOS["41-trial-across-a-plan-change"] = [
    ev("e41-trial-old-product", "2027-08-05T00:00:00Z", "u41", subscription="s41"),
    ev("e41-trial-new-product", "2027-08-10T00:00:00Z", "u41", subscription="s41"),
    ev("e41-paid", "2027-08-20T00:00:00Z", "u41", subscription="s41"),
]
SCENARIOS["42-plan-change-to-in-advance"] = [
    ev("e42-basic", "2027-09-10T00:00:00Z", "u42", subscription="s42"),
    ev("e42-advance-september", "2027-09-25T00:00:00Z", "u42", subscription="s42"),
    ev("e42-advance-october", "2027-10-15T00:00:00Z", "u42", subscription="s42"),
]
SCENARIOS["43-cost-parts-unpriced-model-named-organization"] = [
    ai("e43-cost-parts", "2027-08-05T00:00:00Z", "u43", "Cost Plus", inputTokenCount=1_000_000,
       inputTokenCost="0.0123", outputTokenCost="0.0456"),
    ai("e43-unpriced-model", "2027-08-06T00:00:00Z", "u43", "Cost Plus", model="mystery-llm",
       inputTokenCount=1_000_000),
    ai("e43-named-organization", "2027-08-07T00:00:00Z", "u43", "Cost Plus", organizationId="acme",
       inputTokenCount=1_000_000, outputTokenCount=100_000),
]
SCENARIOS["44-volume-zero"] = []
SCENARIOS["45-average-of-nothing"] = [ev("e45-no-value", "2027-12-05T00:00:00Z", "u45", "Latency Meter")]
SCENARIOS["46-leap-day-yearly-anniversary"] = [
    ev("e46-leap-day", "2028-02-29T23:59:59.999999Z", "u46", "Leap Annual"),
]
SCENARIOS["47-filters-and-match-on-text"] = [
    ai("e47-image-hit", "2027-12-05T00:00:00Z", "u47", "Multi Filter", eventType="image", cacheStatus="hit"),
    ai("e47-video", "2027-12-06T00:00:00Z", "u47", "Multi Filter", eventType="video", cacheStatus="miss"),
    ai("e47-image-anthropic", "2027-12-07T00:00:00Z", "u47", "Multi Filter", eventType="image",
       provider="anthropic", model="claude-x"),
    ai("e47-completion-hit", "2027-12-08T00:00:00Z", "u47", "Multi Filter", cacheStatus="hit"),
]
SCENARIOS["48-units-in-payload"] = [
    ev("e48-payload", "2027-12-05T00:00:00Z", "u48", "Page Reader", payload={"pages": 4}),
    ev("e48-units-win", "2027-12-06T00:00:00Z", "u48", "Page Reader", units={"pages": 1}, payload={"pages": 100}),
]
SCENARIOS["49-twelve-decimal-rates"] = [
    ev("e49-a", "2027-12-05T00:00:00Z", "u49", "Fine Rates", units={"chars": 1000}),
    ev("e49-b", "2027-12-06T00:00:00Z", "u49", "Fine Rates", units={"chars": 35.5}),
]
SCENARIOS["50-amounts-beyond-unit-rate"] = []

SCENARIOS["51-offset-timestamps-unknown-subscription-id"] = [
    # 2027-03-31T23:59:59.999999Z: March
    ev("e51-tokyo", "2027-04-01T08:59:59.999999+09:00", "u51", "DocSum Pro"),
    # 2027-04-01T00:30:00Z: April; the subscriptionId names no subscription, so rule 3 attributes it
    ev("e51-azores", "2027-03-31T23:30:00-01:00", "u51", "DocSum Pro", subscription="no-such-subscription"),
]
SCENARIOS["52-in-advance-with-trial"] = [
    ev("e52-trial", "2027-04-05T00:00:00Z", "u52", "Advance Trial"),
    ev("e52-paid", "2027-04-20T00:00:00Z", "u52", "Advance Trial"),
]


def main() -> None:
    EVENTS_DIR.mkdir(exist_ok=True)
    for old in EVENTS_DIR.glob("*.jsonl"):
        old.unlink()
    for name, lines in SCENARIOS.items():
        if not lines:
            continue
        text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
        (EVENTS_DIR / f"{name}.jsonl").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
