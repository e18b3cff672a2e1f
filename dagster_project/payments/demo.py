"""Test-mode Stripe customers for the demo: one per subscriber, with a test card or none.

``make demo`` can start localstripe (or use a Stripe *test* key), then run::

    python -m dagster_project.payments.demo --data-dir data acme-ap=visa globex-billing=declined

so that billing shows a paid invoice, a failed one and the e-mails they caused. The cards
are Stripe's canonical test PaymentMethods (``pm_card_visa`` ...), which both Stripe test
mode and localstripe accept. The customers are recorded in ``billing.stripe_customers``,
where the charge step looks when the catalog has no ``stripe_customer_id``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import duckdb

from dagster_project import settings, warehouse
from dagster_project.payments.gateway import StripeGateway
from dagster_project.payments.ledger import ensure_payment_tables

TEST_CARDS = {
    "visa": "pm_card_visa",                            # every charge succeeds
    "declined": "pm_card_chargeCustomerFail",          # attaches, every charge is declined
    "none": None,                                      # no card: charges fail with no_payment_method
}


def seed_test_customers(
    connection: duckdb.DuckDBPyConnection, gateway: StripeGateway, cards: dict[str, str]
) -> dict[str, str]:
    """Create (or reuse) a customer per subscriber with the named test card; returns their ids."""
    ensure_payment_tables(connection)
    created = {}
    for subscriber_id, card in cards.items():
        if card not in TEST_CARDS:
            raise ValueError(f"{subscriber_id}: card {card!r}; expected one of {', '.join(TEST_CARDS)}")
        row = connection.execute(
            "select email, subscriber_name from catalog.subscribers where subscriber_id = ?", [subscriber_id]
        ).fetchone()
        email, name = row if row else (None, None)
        customer_id = gateway.find_customer(subscriber_id, email) or gateway.create_customer(subscriber_id, email, name)
        test_method = TEST_CARDS[card]
        if test_method is not None and gateway.default_payment_method(customer_id) is None:
            method = gateway.call(
                "attach test card",
                lambda m=test_method, c=customer_id: gateway.client.v1.payment_methods.attach(m, params={"customer": c}),
            )
            gateway.call(
                "set default card",
                lambda m=method.id, c=customer_id: gateway.client.v1.customers.update(
                    c, params={"invoice_settings": {"default_payment_method": m}}
                ),
            )
        connection.execute(
            "insert or replace into billing.stripe_customers values (?, ?, 'created', ?)",
            [subscriber_id, customer_id, datetime.now(UTC).replace(tzinfo=None)],
        )
        created[subscriber_id] = customer_id
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.payments.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("cards", nargs="+", metavar="SUBSCRIBER=CARD", help=f"CARD: {', '.join(TEST_CARDS)}")
    arguments = parser.parse_args(argv)
    key = settings.stripe_api_key()
    if not key:
        print("STRIPE_API_KEY is not set", file=sys.stderr)
        return 1
    if not key.startswith("sk_test_") and not settings.stripe_api_base():
        print("refusing to create demo customers with a live key", file=sys.stderr)
        return 1
    cards = {}
    for item in arguments.cards:
        subscriber_id, _, card = item.partition("=")
        cards[subscriber_id] = card or "visa"
    with warehouse.connect(settings.data_dir(arguments.data_dir)) as connection:
        created = seed_test_customers(connection, StripeGateway.connect(key, settings.stripe_api_base()), cards)
    for subscriber_id, customer_id in created.items():
        print(f"{subscriber_id}: {customer_id} ({cards[subscriber_id]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
