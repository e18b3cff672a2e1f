"""The Dagster definitions load with the whole graph, and the dbt project parses."""

from __future__ import annotations

import dagster as dg


def test_definitions_hold_every_domain_and_the_dbt_models() -> None:
    from dagster_project.definitions import defs

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    for expected in (
        "raw/events", "raw/rejected_events", "catalog/products", "catalog/subscription_periods",
        "marts/usage_by_period", "marts/invoice_drafts", "marts/invoice_lines", "marts/invoices",
        "billing/payment_attempts", "billing/notifications",
    ):
        assert expected in keys
    job = defs.resolve_job_def("bill_period")
    assert job.partitions_def is not None
    assert defs.resolve_schedule_def("bill_period_schedule") is not None


def test_dbt_sources_meet_the_python_assets() -> None:
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    # Python-written tables are the dbt sources' upstream, and dbt drafts feed the invoice ledger
    events = graph.get(dg.AssetKey(["staging", "stg_raw__events"]))
    assert dg.AssetKey(["raw", "events"]) in events.parent_keys
    invoices = graph.get(dg.AssetKey(["marts", "invoices"]))
    assert dg.AssetKey(["marts", "invoice_drafts"]) in invoices.parent_keys
