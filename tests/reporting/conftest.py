"""One billed data dir for the finance reports: two billing runs (~40 s each), shared by every test
of test_finance_reports.py. Every expected number in the tests is worked out from the catalog and events below.

Catalog (all monthly, calendar periods, no grace):
- chat-pro (USD): recurring 100.00; Requests graduated: first 10 at 1.00, then 0.50.
- chat-eu (EUR): recurring 50.00; Requests volume: up to 5 at 2.00, above at 1.00.
- chat-trial (USD): no recurring fee; 15-day free trial; Requests at 1.00.
- acme-pro (acme, chat-pro, from 2026-09-01, budget 115), globex-eu (globex, chat-eu, from
  2026-09-01), initech-trial (initech, chat-trial, from 2026-10-01: trial until 10-16).
- fx_rates.csv: EUR 1.10 from 2026-01-01, 1.20 from 2026-10-15.

Run 1 bills September at 2026-10-10; run 2 bills October at 2026-11-16 (November is open, half
elapsed), after one late September event arrived for acme-pro.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import event, write_jsonl

CATALOG = """
products:
  - id: chat-pro
    name: Chat Pro
    currency: USD
    recurring_charge: "100.00"
    metrics:
      - name: Requests
        element: requests
        tiers:
          - {name: "First 10", up_to: 10, unit_rate: "1.00"}
          - {name: "10+", up_to: null, unit_rate: "0.50"}
  - id: chat-eu
    name: Chat EU
    currency: EUR
    recurring_charge: "50.00"
    metrics:
      - name: Requests
        element: requests
        tier_mode: volume
        tiers:
          - {name: "Up to 5", up_to: 5, unit_rate: "2.00"}
          - {name: "Above 5", up_to: null, unit_rate: "1.00"}
  - id: chat-trial
    name: Chat Trial
    currency: USD
    recurring_charge: "0"
    free_trial_days: 15
    metrics:
      - name: Requests
        element: requests
        tiers:
          - {name: "All", up_to: null, unit_rate: "1.00"}
organizations:
  - {id: acme, name: Acme Corp}
  - {id: globex, name: Globex}
  - {id: initech, name: Initech}
subscribers:
  - {id: alice, email: alice@acme.example, organization: acme}
  - {id: bob, email: bob@globex.example, organization: globex}
  - {id: carol, email: carol@initech.example, organization: initech}
subscriptions:
  - {id: acme-pro, subscriber: alice, product: chat-pro, start: 2026-09-01T00:00:00Z, budget: "115"}
  - {id: globex-eu, subscriber: bob, product: chat-eu, start: 2026-09-01T00:00:00Z}
  - {id: initech-trial, subscriber: carol, product: chat-trial, start: 2026-10-01T00:00:00Z}
"""

FX_RATES = "currency,usd_per_unit,valid_from\nEUR,1.10,2026-01-01\nEUR,1.20,2026-10-15T00:00:00Z\n"


def _calls(prefix: str, count: int, first: datetime, subscriber: str, product: str, cost: str, **fields) -> list[dict]:
    """``count`` calls an hour apart from ``first``, each costing ``cost`` USD."""
    return [
        event(f"{prefix}-{index}", first + timedelta(hours=index), subscriber, product, totalCost=cost, **fields)
        for index in range(count)
    ]


def _run_one_events() -> list[dict]:
    return [
        # September: acme 12 calls (cost 1.20), globex 4 calls on another model (cost 0.20)
        *_calls("acme-sep", 12, datetime(2026, 9, 3), "alice", "Chat Pro", "0.10"),
        *_calls("globex-sep", 4, datetime(2026, 9, 4), "bob", "chat-eu", "0.05",
                provider="anthropic", model="claude-3-haiku"),
        # nobody subscribes for mallory: unbilled, 0.07 each in September and October
        event("mallory-sep", "2026-09-05T00:00:00Z", "mallory", "Chat Pro", totalCost="0.07"),
        event("mallory-oct", "2026-10-07T00:00:00Z", "mallory", "Chat Pro", totalCost="0.07"),
        # initech's free trial (until 10-16): 3 calls at 0.20, billed at 0
        *_calls("initech-trial", 3, datetime(2026, 10, 5), "carol", "chat-trial", "0.20"),
    ]


def _run_two_events() -> list[dict]:
    return [
        # late: one more September call for acme (13 in all)
        event("acme-sep-late", "2026-09-20T00:00:00Z", "alice", "Chat Pro", totalCost="0.10"),
        # October: acme 15 calls on gpt-4o-mini and 5 on gpt-4o (0.10 each), globex 6, initech 5 after the trial
        *_calls("acme-oct-mini", 15, datetime(2026, 10, 20), "alice", "Chat Pro", "0.10"),
        *_calls("acme-oct-4o", 5, datetime(2026, 10, 21), "alice", "Chat Pro", "0.10", model="gpt-4o"),
        *_calls("globex-oct", 6, datetime(2026, 10, 20), "bob", "chat-eu", "0.05",
                provider="anthropic", model="claude-3-haiku"),
        *_calls("initech-oct", 5, datetime(2026, 10, 20), "carol", "chat-trial", "0.20"),
        # November (open at 11-16): acme 4 calls early, 4 in the last quarter of the elapsed time
        *_calls("acme-nov-early", 4, datetime(2026, 11, 2), "alice", "Chat Pro", "0.10"),
        *_calls("acme-nov-recent", 4, datetime(2026, 11, 14), "alice", "Chat Pro", "0.10"),
    ]


@pytest.fixture(scope="module")
def billed_reporting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dagster_project.runner import bill_partition

    root = tmp_path_factory.mktemp("reporting")
    (root / "catalog").mkdir()
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    (root / "landing").mkdir()
    (root / "landing" / "fx_rates.csv").write_text(FX_RATES, encoding="utf-8")
    write_jsonl(root / "landing" / "events" / "run-1.jsonl", _run_one_events())
    bill_partition(root, "2026-09-01", "2026-10-10T00:00:00")
    write_jsonl(root / "landing" / "events" / "run-2.jsonl", _run_two_events())
    bill_partition(root, "2026-10-01", "2026-11-16T00:00:00")
    return root
