"""The event-level rating table (intermediate.int_events_attributed) is extended, not rebuilt,
while the catalog and the dbt project stay the same; any change to those rebuilds it whole.

One data dir, three billing runs of October 2026 (catalog and events worked out by hand):

  sub-a (alice, credential "alice-key" = sk-a) and sub-b (bob, no credential), both Pro Plan.
  run 1: a1 a2 a3 by alice with sk-a          -> rule credential, credential "alice-key", sub-a
         b1 b2 by bob with "laptop" = sk-x    -> sk-x is in no catalog: rule subscriber, sub-b,
                                                 credential name as the event sends it, "laptop"
  run 2: a4 by alice (a late file)            -> added; a1..a3 b1 b2 are not attributed again;
         b3 by bob on 1 November                 sub-a's October and sub-b's November usage are
                                                 aggregated (again), sub-b's October is kept:
                                                 sub-a Oct 4 calls, sub-b Oct 2, sub-b Nov 1
  run 3: the catalog gives sub-b the credential "bob-laptop" = sk-x
                                              -> b1 b2 (already rated) become rule credential,
                                                 credential "bob-laptop": the table was rebuilt

To see whether a run attributed an event (or aggregated a period) again, a row of run 1 is
marked by hand in between: an incremental run leaves the mark, a rebuild replaces it.
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


USAGE = ("select subscription_id, strftime(period_start, '%Y-%m'), breakdown, credential_name, billable_quantity"
         " from intermediate.int_usage_aggregated order by all")


def _call(transaction: str, day: int, subscriber: str, credential: tuple[str, str], month: int = 10) -> dict:
    body = event(transaction, datetime(2026, month, day, 12), subscriber, "Pro Plan")
    body["subscriber"]["credential"] = {"name": credential[0], "value": credential[1]}
    return body


def _rows(root: Path, query: str = ROWS) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(query).fetchall()


def _mark(root: Path, transaction: str) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.execute(
            "update intermediate.int_events_attributed set credential_name = 'MARK' where transaction_id = ?",
            [transaction],
        )


def _mark_usage(root: Path, subscription: str) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.execute(
            "update intermediate.int_usage_aggregated set credential_name = 'MARK'"
            " where subscription_id = ? and breakdown = 'credential'",
            [subscription],
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

    assert _rows(root, USAGE) == [
        ("sub-a", "2026-10", "credential", "alice-key", 3), ("sub-a", "2026-10", "total", None, 3),
        ("sub-b", "2026-10", "credential", "laptop", 2), ("sub-b", "2026-10", "total", None, 2),
    ]

    # run 2: one more file, same catalog: only its events are attributed, and only the periods
    # they fall in are aggregated again (over all their events: a1's mark is in sub-a's October)
    _mark(root, "a1")
    _mark_usage(root, "sub-a")
    _mark_usage(root, "sub-b")
    write_jsonl(root / "landing" / "events" / "late.jsonl",
                [_call("a4", 20, "alice", alice), _call("b3", 1, "bob", laptop, month=11)])
    bill_partition(root, "2026-10-01", AS_OF)
    assert _rows(root) == [
        ("a1", "sub-a", "credential", "MARK"), ("a2", "sub-a", "credential", "alice-key"),
        ("a3", "sub-a", "credential", "alice-key"),
        ("a4", "sub-a", "credential", "alice-key"),
        ("b1", "sub-b", "subscriber", "laptop"), ("b2", "sub-b", "subscriber", "laptop"),
        ("b3", "sub-b", "subscriber", "laptop"),
    ]
    assert _rows(root, USAGE) == [
        ("sub-a", "2026-10", "credential", "MARK", 1), ("sub-a", "2026-10", "credential", "alice-key", 3),
        ("sub-a", "2026-10", "total", None, 4),
        ("sub-b", "2026-10", "credential", "MARK", 2), ("sub-b", "2026-10", "total", None, 2),
        ("sub-b", "2026-11", "credential", "laptop", 1), ("sub-b", "2026-11", "total", None, 1),
    ]
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.execute(
            "select subscription_id, strftime(period_start, '%Y-%m'), event_count"
            " from intermediate.int_period_events_aggregated order by all"
        ).fetchall() == [("sub-a", "2026-10", 4), ("sub-b", "2026-10", 2), ("sub-b", "2026-11", 1)]

    # run 3: the catalog changed, no new events: every event is attributed again
    (root / "catalog" / "catalog.yaml").write_text(CATALOG + BOB_CREDENTIAL, encoding="utf-8")
    bill_partition(root, "2026-10-01", AS_OF)
    assert _rows(root) == [
        ("a1", "sub-a", "credential", "alice-key"), ("a2", "sub-a", "credential", "alice-key"),
        ("a3", "sub-a", "credential", "alice-key"),
        ("a4", "sub-a", "credential", "alice-key"),
        ("b1", "sub-b", "credential", "bob-laptop"), ("b2", "sub-b", "credential", "bob-laptop"),
        ("b3", "sub-b", "credential", "bob-laptop"),
    ]
    assert _rows(root, USAGE) == [
        ("sub-a", "2026-10", "credential", "alice-key", 4), ("sub-a", "2026-10", "total", None, 4),
        ("sub-b", "2026-10", "credential", "bob-laptop", 2), ("sub-b", "2026-10", "total", None, 2),
        ("sub-b", "2026-11", "credential", "bob-laptop", 1), ("sub-b", "2026-11", "total", None, 1),
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


def test_a_subset_of_the_rating_leaves_its_loads_to_the_next_whole_rating(tmp_path: Path) -> None:
    # Materializing only some of the dbt assets (the UI allows it) must not mark the loads rated:
    # here the event table and one aggregate take in a late event, the usage aggregate is not
    # built; the next whole rating still has to aggregate its period (sub-a: 3 calls, then 4).
    import dagster as dg

    from dagster_project.definitions import build_defs
    from dagster_project.lib.event_log import write_instance_config

    root = tmp_path / "data"
    (root / "catalog").mkdir(parents=True)
    (root / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    alice = ("ignored-name", "sk-a")
    write_jsonl(root / "landing" / "events" / "first.jsonl", [_call(f"a{i}", i, "alice", alice) for i in (1, 2, 3)])
    bill_partition(root, "2026-10-01", AS_OF)
    rated = "select event_count from billing.rated_loads"
    assert _rows(root, rated) == [(3,)]

    write_jsonl(root / "landing" / "events" / "late.jsonl", [_call("a4", 20, "alice", alice)])
    write_instance_config(root / ".dagster")
    job = build_defs(data_dir=str(root), as_of=AS_OF).resolve_job_def("bill_period")
    load = [dg.AssetKey(["raw", name]) for name in ("events", "rejected_events", "duplicate_events")]
    rate_some = [dg.AssetKey(["intermediate", name]) for name in ("int_events_attributed", "int_period_events_aggregated")]
    with dg.DagsterInstance.from_config(str(root / ".dagster")) as instance:
        for subset in (load, rate_some):
            result = job.execute_in_process(partition_key="2026-10-01", instance=instance, asset_selection=subset)
            assert result.success
    assert [row[0] for row in _rows(root)] == ["a1", "a2", "a3", "a4"]
    assert _rows(root, rated) == [(3,)]
    assert ("sub-a", "2026-10", "total", None, 3) in _rows(root, USAGE)

    bill_partition(root, "2026-10-01", AS_OF)
    assert ("sub-a", "2026-10", "total", None, 4) in _rows(root, USAGE)
    assert sorted(_rows(root, rated)) == [(1,), (3,)]
