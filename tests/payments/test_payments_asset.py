"""The ``payments`` Dagster asset: wiring, an unconfigured Stripe, and no key in metadata or logs."""

from __future__ import annotations

import json
import logging

import dagster as dg

from dagster_project import warehouse
from dagster_project.payments.assets import PAYMENTS, StripeResource, payments, stripe_resource_from_env
from dagster_project.resources import WarehouseResource
from tests.payments.builders import (
    API_KEY,
    add_invoice,
    add_product,
    add_subscriber,
    invoice,
    make_customer,
    payment_intents,
)

AS_OF = "2026-11-02T00:00:00"
PARTITION = "2026-10-01"


def _setup(data_dir, customer_id):
    with warehouse.connect(data_dir) as connection:
        add_product(connection, "pro")
        add_product(connection, "offline", payment="external")
        add_subscriber(connection, "acme-ap", email="ap@acme.example", stripe_customer_id=customer_id)
        add_invoice(connection, "MH-2026-000001", "acme-ap")
        add_invoice(connection, "MH-2026-000002", "acme-ap", product_id="offline")
    (data_dir / "landing" / "payments").mkdir(parents=True)
    (data_dir / "landing" / "payments" / "bank.csv").write_text(
        "invoice_number,status,reference\nMH-2026-000002,paid,BANK-1\nMH-2026-000404,paid,\n", encoding="utf-8"
    )


def _materialize(data_dir, stripe_resource):
    return dg.materialize(
        [payments],
        partition_key=PARTITION,
        resources={"warehouse": WarehouseResource(data_dir=str(data_dir), as_of=AS_OF), "stripe": stripe_resource},
        raise_on_error=False,
    )


def _metadata(result) -> dict:
    [event] = result.get_asset_materialization_events()
    assert event.asset_key == PAYMENTS
    return event.materialization.metadata


def test_asset_charges_and_applies_external_payments_without_leaking_the_key(
    data_dir, stripe_base, stripe_client, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    _setup(data_dir, make_customer(stripe_client, "4242424242424242"))
    result = _materialize(data_dir, StripeResource(api_key=API_KEY, api_base=stripe_base, backoff_seconds=0))
    assert result.success
    metadata = _metadata(result)
    assert metadata["paid"].value == 1
    assert metadata["external_updates_applied"].value == 1
    assert metadata["external_problems"].value == [
        "landing/payments/bank.csv: line 3: unknown invoice 'MH-2026-000404'"
    ]
    with warehouse.connect(data_dir) as connection:
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "paid"
        assert invoice(connection, "MH-2026-000002")["payment_status"] == "external_paid"
    assert len(payment_intents(stripe_client, "MH-2026-000001")) == 1
    # the key appears in no metadata value, no captured log record, no console output
    rendered = json.dumps({key: str(value.value) for key, value in metadata.items()})
    assert API_KEY not in rendered
    assert all(API_KEY not in record.getMessage() for record in caplog.records)
    output = capfd.readouterr()
    assert API_KEY not in output.out and API_KEY not in output.err
    for event in result.all_events:
        assert API_KEY not in (event.message or "")

    # a rerun of the partition charges nothing new
    again = _materialize(data_dir, StripeResource(api_key=API_KEY, api_base=stripe_base))
    assert again.success and _metadata(again)["paid"].value == 0
    assert len(payment_intents(stripe_client, "MH-2026-000001")) == 1


def test_without_a_key_stripe_invoices_stay_pending(data_dir, capfd):
    _setup(data_dir, "cus_never_called")
    result = _materialize(data_dir, StripeResource())
    assert result.success
    metadata = _metadata(result)
    assert metadata["stripe_configured"].value is False
    assert metadata["external_updates_applied"].value == 1
    with warehouse.connect(data_dir) as connection:
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "pending"
    assert "STRIPE_API_KEY is not set; 1 stripe invoice(s) stay pending" in capfd.readouterr().err


def test_refused_key_fails_the_step_without_the_key(data_dir, stripe_base, stripe_client):
    _setup(data_dir, make_customer(stripe_client, "4242424242424242"))
    bad_key = "xk_live_KeyThatLocalstripeRefuses123"
    result = _materialize(data_dir, StripeResource(api_key=bad_key, api_base=stripe_base))
    assert not result.success
    failures = [event for event in result.all_events if event.is_step_failure]
    text = str(failures[0].step_failure_data.error.to_string())
    assert "refused the API key" in text and bad_key not in text


def test_resource_from_env_reads_the_key_through_envvar(monkeypatch):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    assert not stripe_resource_from_env().configured
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    resource = stripe_resource_from_env()
    assert isinstance(resource.api_key, dg.EnvVar) and resource.api_key.env_var_name == "STRIPE_API_KEY"
    assert resource.api_base is None
