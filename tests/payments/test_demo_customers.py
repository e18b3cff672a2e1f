"""The demo's test-mode customers: a paid invoice, a declined one and one without a card."""

from __future__ import annotations

from datetime import datetime

from dagster_project import warehouse
from dagster_project.payments.charge import charge_released_invoices
from dagster_project.payments.demo import main, seed_test_customers
from tests.payments.builders import API_KEY, add_invoice, add_product, add_subscriber, invoice


def test_seeded_customers_give_a_paid_and_two_failed_invoices(data_dir, gateway):
    with warehouse.connect(data_dir) as connection:
        add_product(connection, "pro")
        for number, subscriber in enumerate(("acme-ap", "globex", "initech"), start=1):
            add_subscriber(connection, subscriber, email=f"{subscriber}@example.com")
            add_invoice(connection, f"MH-2026-00000{number}", subscriber)
        cards = {"acme-ap": "visa", "globex": "declined", "initech": "none"}
        first = seed_test_customers(connection, gateway, cards)
        again = seed_test_customers(connection, gateway, cards)  # idempotent: found, not created twice
        charge_released_invoices(connection, gateway, datetime(2026, 11, 2))
        outcomes = {
            number: (invoice(connection, number)["payment_status"], invoice(connection, number)["payment_failure_code"])
            for number in ("MH-2026-000001", "MH-2026-000002", "MH-2026-000003")
        }
    assert first == again
    assert outcomes == {
        "MH-2026-000001": ("paid", None),
        "MH-2026-000002": ("failed", "card_declined"),
        "MH-2026-000003": ("failed", "no_payment_method"),
    }


def test_demo_command_needs_a_test_key(data_dir, monkeypatch, capsys):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    assert main(["--data-dir", str(data_dir), "acme-ap=visa"]) == 1
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_" + API_KEY[8:])
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    assert main(["--data-dir", str(data_dir), "acme-ap=visa"]) == 1
    assert "live key" in capsys.readouterr().err


def test_demo_command_seeds_through_the_environment(data_dir, stripe_base, monkeypatch, capsys):
    with warehouse.connect(data_dir) as connection:
        add_subscriber(connection, "acme-ap", email="ap@acme.example")
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_base)
    assert main(["--data-dir", str(data_dir), "acme-ap=visa"]) == 0
    output = capsys.readouterr()
    assert output.out.startswith("acme-ap: cus_") and API_KEY not in output.out + output.err
