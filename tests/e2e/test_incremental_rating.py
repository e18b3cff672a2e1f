"""The event-level rating table (intermediate.int_events_attributed) is extended, not rebuilt,
while the catalog and the dbt project stay the same; any change to those rebuilds it whole.

One data dir, three billing runs of October 2026 (catalog and events worked out by hand):

  sub-a (alice, credential "alice-key" = sk-a) and sub-b (bob, no credential), both Pro Plan.
  run 1: a1 a2 a3 by alice with sk-a          -> rule credential, credential "alice-key", sub-a
         b1 b2 by bob with "laptop" = sk-x    -> sk-x is in no catalog: rule subscriber, sub-b,
                                                 credential name as the event sends it, "laptop"
  run 2: a4 by alice (a late file)            -> added; a1..a3 b1 b2 are not attributed again
  run 3: the catalog gives sub-b the credential "bob-laptop" = sk-x
                                              -> b1 b2 (already rated) become rule credential,
                                                 credential "bob-laptop": the table was rebuilt

To see whether a run attributed an event again, a row of run 1 is marked by hand in between:
an incremental run leaves the mark, a rebuild replaces it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from dagster_project.runner import bill_partition
from tests.conftest import event, write_jsonl

pytestmark = pytest.mark.slow

AS_OF = "2026-11-02T00:00:00"
CATALOG = """
products:
  - id: pro-plan
    name: Pro Plan
    recurring_charge: "10.00"
    metrics:
      - name: Calls
        element: requests
        tiers:
          - {name: "All calls", up_to: null, unit_rate: "0.10"}
subscribers:
  - {id: alice, email: alice@acme.example}
  - {id: bob, email: bob@globex.example}
subscriptions:
  - id: sub-a
    subscriber: alice
    product: pro-plan
    start: 2026-10-01T00:00:00Z
    credentials: [{name: alice-key, value: sk-a}]
  - id: sub-b
    subscriber: bob
    product: pro-plan
    start: 2026-10-01T00:00:00Z
"""
BOB_CREDENTIAL = """    credentials: [{name: bob-laptop, value: sk-x}]
"""
ROWS = ("select transaction_id, subscription_id, attribution_rule, credential_name"
        " from intermediate.int_events_attributed order by transaction_id")


def _call(transaction: str, day: int, subscriber: str, credential: tuple[str, str]) -> dict:
    body = event(transaction, datetime(2026, 10, day, 12), subscriber, "Pro Plan")
    body["subscriber"]["credential"] = {"name": credential[0], "value": credential[1]}
    return body


def _rows(root: Path) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(ROWS).fetchall()


def _mark(root: Path, transaction: str) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.execute(
            "update intermediate.int_events_attributed set credential_name = 'MARK' where transaction_id = ?",
            [transaction],
        )


def test_new_loads_are_added_and_a_catalog_change_rebuilds(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "catalog").mkdir(parents=True)
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    alice, laptop = ("ignored-name", "sk-a"), ("laptop", "sk-x")
    write_jsonl(root / "landing" / "events" / "first.jsonl",
                [_call(f"a{i}", i, "alice", alice) for i in (1, 2, 3)]
                + [_call(f"b{i}", 10 + i, "bob", laptop) for i in (1, 2)])

    bill_partition(root, "2026-10-01", AS_OF)
    assert _rows(root) == [
        ("a1", "sub-a", "credential", "alice-key"), ("a2", "sub-a", "credential", "alice-key"),
        ("a3", "sub-a", "credential", "alice-key"),
        ("b1", "sub-b", "subscriber", "laptop"), ("b2", "sub-b", "subscriber", "laptop"),
    ]

    # run 2: one more file, same catalog: only its event is attributed
    _mark(root, "a1")
    write_jsonl(root / "landing" / "events" / "late.jsonl", [_call("a4", 20, "alice", alice)])
    bill_partition(root, "2026-10-01", AS_OF)
    assert _rows(root) == [
        ("a1", "sub-a", "credential", "MARK"), ("a2", "sub-a", "credential", "alice-key"),
        ("a3", "sub-a", "credential", "alice-key"),
        ("a4", "sub-a", "credential", "alice-key"),
        ("b1", "sub-b", "subscriber", "laptop"), ("b2", "sub-b", "subscriber", "laptop"),
    ]

    # run 3: the catalog changed, no new events: every event is attributed again
    (root / "catalog" / "catalog.yaml").write_text(CATALOG + BOB_CREDENTIAL, encoding="utf-8")
    bill_partition(root, "2026-10-01", AS_OF)
    assert _rows(root) == [
        ("a1", "sub-a", "credential", "alice-key"), ("a2", "sub-a", "credential", "alice-key"),
        ("a3", "sub-a", "credential", "alice-key"),
        ("a4", "sub-a", "credential", "alice-key"),
        ("b1", "sub-b", "credential", "bob-laptop"), ("b2", "sub-b", "credential", "bob-laptop"),
    ]


def test_a_warehouse_without_a_stored_fingerprint_is_rebuilt(tmp_path: Path) -> None:
    # a warehouse rated before this existed (or whose last rating failed) has no fingerprint:
    # its table is not trusted, even with the same catalog
    root = tmp_path / "data"
    (root / "catalog").mkdir(parents=True)
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    write_jsonl(root / "landing" / "events" / "first.jsonl", [_call("a1", 1, "alice", ("k", "sk-a"))])
    bill_partition(root, "2026-10-01", AS_OF)
    _mark(root, "a1")
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.execute("delete from billing.rating_state")
    bill_partition(root, "2026-10-01", AS_OF)
    assert _rows(root) == [("a1", "sub-a", "credential", "alice-key")]
