"""Stripe charges against a real localstripe server on loopback (SPEC §3.10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import stripe

from dagster_project import warehouse
from dagster_project.payments.charge import (
    MAX_ATTEMPTS,
    RETRY_DELAYS,
    charge_released_invoices,
    idempotency_key,
    next_retry_at,
)
from dagster_project.payments.gateway import StripeGateway
from dagster_project.payments.ledger import stripe_amount
from tests.payments.builders import (
    API_KEY,
    add_card,
    add_invoice,
    add_product,
    add_subscriber,
    attempts,
    invoice,
    make_customer,
    payment_intents,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 2)
SUCCESS_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000341"  # attaches fine, every charge is declined


def _setup(data_dir: Path, customer_id: str | None, *, currency: str = "USD", total: str = "12.34",
           number: str = "MH-2026-000001", email: str | None = "ap@acme.example") -> None:
    with warehouse.connect(data_dir) as connection:
        add_product(connection, "pro", currency=currency, payment="stripe")
        add_subscriber(connection, "acme-ap", email=email, name="Acme AP", stripe_customer_id=customer_id)
        add_invoice(connection, number, "acme-ap", currency=currency, total=total)


def test_successful_charge_marks_the_invoice_paid_with_the_payment_intent(data_dir, stripe_client, gateway):
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD))
    with warehouse.connect(data_dir) as connection:
        report = charge_released_invoices(connection, gateway, AS_OF)
        paid = invoice(connection, "MH-2026-000001")
        ledger = attempts(connection, "MH-2026-000001")
    assert report.paid == ["MH-2026-000001"]
    [intent] = payment_intents(stripe_client, "MH-2026-000001")
    assert intent["status"] == "succeeded"
    assert intent["amount"] == 1234 and intent["currency"] == "usd"
    assert intent["metadata"]["invoice_number"] == "MH-2026-000001"
    assert paid["payment_status"] == "paid"
    assert paid["payment_reference"] == intent["id"]
    assert paid["payment_failure_code"] is None
    assert [(a["attempt_number"], a["state"], a["payment_intent_id"], a["amount_minor"]) for a in ledger] == [
        (1, "succeeded", intent["id"], 1234)
    ]
    assert ledger[0]["idempotency_key"] == idempotency_key("MH-2026-000001", 1) == "meterhouse:MH-2026-000001:attempt-1"
    assert ledger[0]["finished_at"] is not None


def test_declined_card_marks_the_invoice_failed_with_stripes_decline_code(data_dir, stripe_client, gateway):
    _setup(data_dir, make_customer(stripe_client, DECLINE_CARD))
    with warehouse.connect(data_dir) as connection:
        report = charge_released_invoices(connection, gateway, AS_OF)
        failed = invoice(connection, "MH-2026-000001")
        [attempt] = attempts(connection, "MH-2026-000001")
    [intent] = payment_intents(stripe_client, "MH-2026-000001")
    assert report.failed == {"MH-2026-000001": "card_declined"}
    assert failed["payment_status"] == "failed"
    assert failed["payment_failure_code"] == "card_declined"
    assert failed["payment_failure_message"] == "Your card was declined."
    assert failed["payment_reference"] == intent["id"]
    assert (attempt["state"], attempt["decline_code"], attempt["payment_intent_id"]) == (
        "failed", "card_declined", intent["id"]
    )


def test_card_that_needs_authentication_fails_off_session(data_dir, stripe_client, gateway):
    _setup(data_dir, make_customer(stripe_client, "4000002500003155"))  # 3-D Secure required
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        failed = invoice(connection, "MH-2026-000001")
        [attempt] = attempts(connection, "MH-2026-000001")
    [intent] = payment_intents(stripe_client, "MH-2026-000001")
    assert intent["status"] == "requires_action"
    assert (failed["payment_status"], failed["payment_failure_code"]) == ("failed", "authentication_required")
    assert (attempt["state"], attempt["payment_intent_id"]) == ("requires_action", intent["id"])


def test_customer_without_a_card_fails_with_no_payment_method(data_dir, stripe_client, gateway):
    _setup(data_dir, make_customer(stripe_client, None))
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        failed = invoice(connection, "MH-2026-000001")
    assert failed["payment_status"] == "failed"
    assert failed["payment_failure_code"] == "no_payment_method"
    assert "has no card" in failed["payment_failure_message"]
    assert payment_intents(stripe_client) == []


def test_attached_card_is_used_when_there_is_no_default(data_dir, stripe_client, gateway):
    customer = make_customer(stripe_client, SUCCESS_CARD, default=False)
    _setup(data_dir, customer)
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "paid"


def test_missing_customer_is_created_once_and_found_again_after_a_lost_write(data_dir, stripe_client, gateway):
    _setup(data_dir, None)
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        first = invoice(connection, "MH-2026-000001")
        [(customer_id, origin)] = connection.execute(
            "select stripe_customer_id, origin from billing.stripe_customers where subscriber_id = 'acme-ap'"
        ).fetchall()
        # a crash right after the customer was created loses our record of it ...
        connection.execute("delete from billing.stripe_customers")
        add_invoice(connection, "MH-2026-000002", "acme-ap", period=(datetime(2026, 11, 1), datetime(2026, 12, 1)))
        charge_released_invoices(connection, gateway, AS_OF)
        [(found_id, found_origin)] = connection.execute(
            "select stripe_customer_id, origin from billing.stripe_customers"
        ).fetchall()
    # ... and the next run finds it by metadata instead of creating a second one
    customers = [c.to_dict() for c in stripe_client.v1.customers.list(params={"limit": 100}).auto_paging_iter()]
    assert len(customers) == 1
    assert customers[0]["id"] == customer_id == found_id
    assert customers[0]["metadata"] == {"subscriber_id": "acme-ap"}
    assert customers[0]["email"] == "ap@acme.example"
    assert (origin, found_origin) == ("created", "found")
    # a new customer has no card: its charge fails with a clear reason
    assert (first["payment_status"], first["payment_failure_code"]) == ("failed", "no_payment_method")


def test_rerun_after_success_creates_no_new_payment_intent(data_dir, stripe_client, gateway):
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD))
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        second = charge_released_invoices(connection, gateway, AS_OF + timedelta(days=10))
        # even with the invoice's status lost, the attempt ledger and Stripe say it is paid
        connection.execute("update marts.invoices set payment_status = 'pending'")
        third = charge_released_invoices(connection, gateway, AS_OF + timedelta(days=10))
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "paid"
        assert len(attempts(connection, "MH-2026-000001")) == 1
    assert second.paid == [] and third.recovered == ["MH-2026-000001"]
    assert len(payment_intents(stripe_client, "MH-2026-000001")) == 1


_KILLED_CHARGE = """
import os, signal, sys
from datetime import datetime
from pathlib import Path

from dagster_project import settings, warehouse
from dagster_project.payments.charge import charge_released_invoices
from dagster_project.payments.gateway import StripeGateway
from tests.payments.builders import work_around_duckdb_timezone_config

def die(invoice_number, attempt_number):
    os.kill(os.getpid(), signal.SIGKILL)  # Stripe answered; nothing written yet

work_around_duckdb_timezone_config(sys.argv[3] == "1")
with warehouse.connect(Path(sys.argv[1])) as connection:
    gateway = StripeGateway.connect(settings.stripe_api_key(), settings.stripe_api_base())
    charge_released_invoices(connection, gateway, datetime.fromisoformat(sys.argv[2]), on_stripe_answer=die)
print("not killed")
"""


def test_kill_9_between_stripes_answer_and_our_write_never_charges_twice(
    data_dir, stripe_base, stripe_client, duckdb_timezone_workaround
):
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD))
    environment = {**os.environ, "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": stripe_base,
                   "PYTHONPATH": str(REPO_ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_CHARGE, str(data_dir), AS_OF.isoformat(),
         "1" if duckdb_timezone_workaround else "0"],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [charged] = payment_intents(stripe_client, "MH-2026-000001")
    assert charged["status"] == "succeeded"
    with warehouse.connect(data_dir) as connection:
        # the attempt was committed before the call, its outcome never was
        [(state, intent_id)] = connection.execute(
            "select state, payment_intent_id from billing.payment_attempts"
        ).fetchall()
        assert (state, intent_id) == ("started", None)
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "pending"
        report = charge_released_invoices(connection, StripeGateway.connect(API_KEY, stripe_base), AS_OF)
        recovered = invoice(connection, "MH-2026-000001")
        ledger = attempts(connection, "MH-2026-000001")
    assert report.recovered == ["MH-2026-000001"]
    assert len(payment_intents(stripe_client, "MH-2026-000001")) == 1
    assert (recovered["payment_status"], recovered["payment_reference"]) == ("paid", charged["id"])
    assert [(a["attempt_number"], a["state"]) for a in ledger] == [(1, "succeeded")]


def test_jpy_amount_is_sent_in_yen_not_hundredths(data_dir, stripe_client, gateway):
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD), currency="JPY", total="2374")
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "paid"
    [intent] = payment_intents(stripe_client, "MH-2026-000001")
    assert (intent["amount"], intent["currency"]) == (2374, "jpy")


def test_kwd_amount_ends_in_zero(data_dir, stripe_client, gateway):
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD), currency="KWD", total="12.345")
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        [attempt] = attempts(connection, "MH-2026-000001")
    [intent] = payment_intents(stripe_client, "MH-2026-000001")
    assert intent["amount"] == attempt["amount_minor"] == 12340
    assert intent["amount"] % 10 == 0 and intent["currency"] == "kwd"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("12.34", "USD", 1234), ("0.01", "EUR", 1), ("2374", "JPY", 2374), ("2374", "KRW", 2374),
        ("12.345", "KWD", 12340), ("12.355", "KWD", 12360), ("12.346", "BHD", 12350), ("1.004", "OMR", 1000),
        ("2374", "ISK", 237400),
    ],
)
def test_stripe_minor_units(amount, currency, expected):
    assert stripe_amount(Decimal(amount), currency) == expected


def test_retry_schedule_is_bounded_and_decided_from_as_of(data_dir, stripe_client, gateway):
    customer = make_customer(stripe_client, DECLINE_CARD)
    _setup(data_dir, customer)
    schedule = [AS_OF + delay for delay in RETRY_DELAYS]
    assert [next_retry_at(AS_OF, failed) for failed in range(1, MAX_ATTEMPTS + 1)] == [*schedule, None]
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        # not yet due: nothing happens
        early = charge_released_invoices(connection, gateway, schedule[0] - timedelta(seconds=1))
        assert early.not_due == ["MH-2026-000001"]
        assert len(attempts(connection, "MH-2026-000001")) == 1
        for moment in schedule:
            charge_released_invoices(connection, gateway, moment)
            charge_released_invoices(connection, gateway, moment)  # a rerun at the same clock adds nothing
        late = charge_released_invoices(connection, gateway, AS_OF + timedelta(days=90))
        ledger = attempts(connection, "MH-2026-000001")
        final = invoice(connection, "MH-2026-000001")
    assert late.exhausted == ["MH-2026-000001"]
    assert [(a["attempt_number"], a["state"], a["run_as_of"]) for a in ledger] == [
        (number, "failed", moment) for number, moment in enumerate([AS_OF, *schedule], start=1)
    ]
    assert len(ledger) == MAX_ATTEMPTS
    assert len({a["idempotency_key"] for a in ledger}) == MAX_ATTEMPTS
    assert len(payment_intents(stripe_client, "MH-2026-000001")) == MAX_ATTEMPTS
    assert final["payment_status"] == "failed"


def test_a_retry_succeeds_once_the_customer_fixed_the_card(data_dir, stripe_client, gateway):
    customer = make_customer(stripe_client, DECLINE_CARD)
    _setup(data_dir, customer)
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "failed"
        add_card(stripe_client, customer, SUCCESS_CARD)
        charge_released_invoices(connection, gateway, AS_OF + RETRY_DELAYS[0])
        paid = invoice(connection, "MH-2026-000001")
        ledger = attempts(connection, "MH-2026-000001")
    assert paid["payment_status"] == "paid" and paid["payment_failure_code"] is None
    assert [(a["attempt_number"], a["state"]) for a in ledger] == [(1, "failed"), (2, "succeeded")]
    assert paid["payment_reference"] == ledger[1]["payment_intent_id"]


def test_only_issued_stripe_invoices_are_charged(data_dir, stripe_client, gateway):
    customer = make_customer(stripe_client, SUCCESS_CARD)
    _setup(data_dir, customer)
    with warehouse.connect(data_dir) as connection:
        add_product(connection, "manual", payment="invoice_only")
        add_product(connection, "offline", payment="external")
        add_invoice(connection, "MH-2026-000002", "acme-ap", product_id="manual", payment_status="none")
        add_invoice(connection, "MH-2026-000003", "acme-ap", product_id="offline")
        add_invoice(connection, "MH-2026-000004", "acme-ap", status="void")
        add_invoice(connection, "MH-2026-000005", "acme-ap", total="0")
        report = charge_released_invoices(connection, gateway, AS_OF)
        statuses = dict(connection.execute(
            "select invoice_number, payment_status from marts.invoices order by 1"
        ).fetchall())
    assert report.paid == ["MH-2026-000001"]
    assert report.nothing_to_charge == ["MH-2026-000005"]
    assert statuses == {
        "MH-2026-000001": "paid", "MH-2026-000002": "none", "MH-2026-000003": "pending",
        "MH-2026-000004": "pending", "MH-2026-000005": "paid",
    }
    assert len(payment_intents(stripe_client)) == 1


def test_refused_key_stops_the_run_without_showing_the_key(data_dir, stripe_base, stripe_client):
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD))
    bad_key = "xk_live_AnotherSecretThatMustNotLeak42"  # localstripe answers 401 to anything not sk_
    with warehouse.connect(data_dir) as connection:
        with pytest.raises(Exception) as raised:
            charge_released_invoices(connection, StripeGateway.connect(bad_key, stripe_base), AS_OF)
        [attempt] = attempts(connection, "MH-2026-000001")
    assert "refused the API key" in str(raised.value)
    assert bad_key not in str(raised.value) and bad_key not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert attempt["state"] == "unknown" and bad_key not in attempt["failure_message"]
    assert payment_intents(stripe_client) == []


def test_api_key_appears_in_no_log_line(data_dir, stripe_client, gateway, caplog, monkeypatch):
    caplog.set_level("DEBUG")
    monkeypatch.setenv("STRIPE_LOG", "debug")  # make stripe-python log every request it sends
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD))
    with warehouse.connect(data_dir) as connection:
        add_invoice(connection, "MH-2026-000002", "acme-ap", total="3.00",
                    period=(datetime(2026, 11, 1), datetime(2026, 12, 1)))
        charge_released_invoices(connection, gateway, AS_OF)
    assert any(record.name.startswith("stripe") for record in caplog.records)
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in str(record.__dict__)


def test_stripe_error_messages_are_redacted():
    from dagster_project.payments.gateway import redact

    message = f"Invalid API Key provided: {API_KEY} (also sk_live_abcdef123456 and rk_test_xyz987)"
    cleaned = redact(message, (API_KEY,))
    assert "sk_" not in cleaned and "rk_test" not in cleaned
    assert cleaned.count("[redacted]") == 3


def test_payment_intent_lookup_sees_only_this_customers_intents(data_dir, stripe_client, gateway):
    # two customers, the same invoice number in metadata: the lookup must not confuse them
    other = make_customer(stripe_client, SUCCESS_CARD)
    stripe_client.v1.payment_intents.create(params={
        "amount": 100, "currency": "usd", "customer": other, "confirm": True, "off_session": True,
        "payment_method": stripe_client.v1.payment_methods.list(
            params={"customer": other, "type": "card"}).data[0].id,
        "metadata": {"invoice_number": "MH-2026-000001"},
    })
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD))
    with warehouse.connect(data_dir) as connection:
        report = charge_released_invoices(connection, gateway, AS_OF)
    assert report.paid == ["MH-2026-000001"] and report.recovered == []
    assert len(payment_intents(stripe_client, "MH-2026-000001")) == 2


def test_invalid_request_marks_the_attempt_failed(data_dir, stripe_client, gateway, monkeypatch):
    _setup(data_dir, make_customer(stripe_client, SUCCESS_CARD))

    def refuse(params, idempotency_key):
        raise stripe.InvalidRequestError("Amount must be at least $0.50 usd", "amount", code="amount_too_small",
                                         http_status=400)

    monkeypatch.setattr(gateway, "create_payment_intent", refuse)
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, gateway, AS_OF)
        failed = invoice(connection, "MH-2026-000001")
    assert (failed["payment_status"], failed["payment_failure_code"]) == ("failed", "amount_too_small")
    assert "at least $0.50" in failed["payment_failure_message"]
