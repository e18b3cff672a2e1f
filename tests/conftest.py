"""Shared fixtures: data directories built by hand, and runs of the real pipeline."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory):
    """No test may touch ./data or a user's DAGSTER_HOME."""
    home = tmp_path_factory.mktemp("dagster_home")
    previous = {key: os.environ.get(key) for key in ("DAGSTER_HOME", "METERHOUSE_DATA_DIR", "METERHOUSE_AS_OF")}
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.pop("METERHOUSE_DATA_DIR", None)
    os.environ.pop("METERHOUSE_AS_OF", None)
    yield
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def event(
    transaction_id: str,
    request_time: datetime | str,
    subscriber: str,
    product: str | None = None,
    **fields,
) -> dict:
    """One metering event in the SPEC §1 shape, with sensible defaults for a completion."""
    moment = request_time if isinstance(request_time, str) else request_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "transactionId": transaction_id,
        "requestTime": moment,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokenCount": 1000,
        "outputTokenCount": 200,
        "totalCost": "0.000270",
        "subscriber": {"id": subscriber},
    }
    if product is not None:
        body["productName"] = product
    body.update(fields)
    return body


# one product (the tutorial's summaries, paid outside Meterhouse), one subscriber from October
DOCSUM_CATALOG = """
products:
  - id: docsum-summaries
    name: DocSum Summaries
    recurring_charge: "199.00"
    payment: external
    metrics:
      - name: Summaries
        element: requests
        tiers:
          - {name: "First 1,000", up_to: 1000, unit_rate: "1.50"}
          - {name: "1,000+", up_to: null, unit_rate: "1.35"}
subscribers:
  - {id: alice, email: alice@acme.example}
subscriptions:
  - {id: sub-alice, subscriber: alice, product: docsum-summaries, start: 2026-10-01T00:00:00Z}
"""


def spread(count: int, start: datetime, end: datetime) -> list[datetime]:
    """``count`` instants evenly inside [start, end)."""
    step = (end - start) / count
    return [start + step * index + timedelta(microseconds=1) for index in range(count)]


def write_jsonl(path: Path, lines: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


# `make test` runs two xdist workers with --dist loadgroup. A file stays on one worker (its module
# fixtures run once); files that share the reliability harness's reference run (one real billing
# run with Stripe and SMTP state in this process) name the group "reference" and stay together.

def pytest_itemcollected(item: pytest.Item) -> None:
    # as each test is collected: xdist turns groups into node ids in its collection_modifyitems
    if item.get_closest_marker("xdist_group") is None:
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
