"""Warehouse rows built by hand, and real servers on loopback, for the payments and
notifications suites (imported by both: ``tests/notifications`` reuses them)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import stripe

from contracts.catalog import CURRENCY_MINOR_UNITS

# Imported before dagster on purpose: dagster_project/__init__.py loads every Dagster definition
# (and needs the dbt manifest) when dagster is already imported; these suites need none of it.
from dagster_project import warehouse

# a distinctive key: tests assert it never shows up in logs, errors or asset metadata
API_KEY = "sk_test_MeterhouseSecretKey0123456789"

OCTOBER = (datetime(2026, 10, 1), datetime(2026, 11, 1))
NOVEMBER = (datetime(2026, 11, 1), datetime(2026, 12, 1))


class _DuckdbSetsTimeZoneAfterConnect:
    """duckdb 2.0.1 (uv.lock) refuses ``config={"TimeZone": ...}`` at connect because ICU is not
    loaded yet ("could not be autoloaded"); ``set TimeZone`` right after connecting works.
    Stands in for the ``duckdb`` module inside ``dagster_project.warehouse`` only, and only while
    that bug is there (reported to the lead: warehouse.py is not ours to change)."""

    def __getattr__(self, name: str):
        return getattr(duckdb, name)

    @staticmethod
    def connect(database: str = ":memory:", read_only: bool = False, config: dict | None = None):
        options = dict(config or {})
        zone = options.pop("TimeZone", None)
        connection = duckdb.connect(database, read_only=read_only, config=options)
        if zone:
            connection.execute(f"set TimeZone = '{zone}'")
        return connection


def work_around_duckdb_timezone_config(needed: bool | None = None) -> bool:
    """Apply the stand-in when ``warehouse.connect``'s config fails here; returns whether it did
    (a subprocess is told the answer instead of probing again: the probe costs a second)."""
    if needed is None:
        try:
            duckdb.connect(":memory:", config={"TimeZone": "UTC"}).close()  # exactly what warehouse.connect asks
            needed = False
        except duckdb.InvalidInputException:
            needed = True
    if needed:
        warehouse.duckdb = _DuckdbSetsTimeZoneAfterConnect()
    return needed


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- warehouse rows ------------------------------------------------------------------------

def add_product(
    connection: duckdb.DuckDBPyConnection, product_id: str = "pro", currency: str = "USD",
    payment: str = "stripe", name: str | None = None, free_trial_days: int = 0,
) -> None:
    connection.execute(
        """
        insert into catalog.products (product_id, product_name, currency, minor_units, recurring_charge,
            period_unit, period_every, billing_anchor, invoice_schedule, payment, setup_fee, free_trial_days,
            grace_period_hours)
        values (?, ?, ?, ?, 0, 'month', 1, 'calendar', 'in_arrears', ?, 0, ?, 0)
        """,
        [product_id, name or f"Product {product_id}", currency, CURRENCY_MINOR_UNITS[currency], payment,
         free_trial_days],
    )


def add_subscriber(
    connection: duckdb.DuckDBPyConnection, subscriber_id: str, email: str | None = None,
    name: str | None = None, stripe_customer_id: str | None = None,
) -> None:
    connection.execute(
        "insert into catalog.subscribers values (?, ?, ?, null, ?)",
        [subscriber_id, name, email, stripe_customer_id],
    )


def add_subscription(
    connection: duckdb.DuckDBPyConnection, subscription_id: str, subscriber_id: str, product_id: str,
    start: datetime, end: datetime | None = None, name: str | None = None,
) -> None:
    connection.execute(
        "insert into catalog.subscriptions values (?, ?, ?, ?, ?)",
        [subscription_id, name or subscription_id, subscriber_id, start, end],
    )
    connection.execute(
        "insert into catalog.subscription_phases values (?, 1, ?, ?, ?)", [subscription_id, product_id, start, end]
    )


def add_invoice(
    connection: duckdb.DuckDBPyConnection, number: str, subscriber_id: str, product_id: str = "pro",
    currency: str = "USD", total: str | Decimal = "12.34", period: tuple[datetime, datetime] = OCTOBER,
    payment_status: str = "pending", subscription_id: str | None = None, email: str | None = None,
    status: str = "issued",
) -> None:
    subscription = subscription_id or f"sub-{subscriber_id}"
    connection.execute(
        """
        insert into marts.invoices (invoice_number, draft_key, subscription_id, subscription_name, subscriber_id,
            subscriber_email, product_id, product_name, currency, period_start, period_end, issued_at,
            released_at, status, subtotal, total, payment_status)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [number, f"{subscription}|{period[0]}|{period[1]}|{number}", subscription, subscription, subscriber_id,
         email, product_id, f"Product {product_id}", currency, period[0], period[1], period[1], period[1],
         status, Decimal(total), Decimal(total), payment_status],
    )


def invoice(connection: duckdb.DuckDBPyConnection, number: str) -> dict:
    result = connection.execute("select * from marts.invoices where invoice_number = ?", [number])
    names = [column[0] for column in result.description]
    return dict(zip(names, result.fetchone(), strict=True))


def attempts(connection: duckdb.DuckDBPyConnection, number: str) -> list[dict]:
    result = connection.execute(
        "select * from billing.payment_attempts where invoice_number = ? order by attempt_number", [number]
    )
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


# -- localstripe ---------------------------------------------------------------------------

def _answers(url: str, key: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def localstripe(log_dir: Path) -> Iterator[str]:
    """A localstripe server on a free loopback port (the console script next to this Python);
    yields its base URL and stops it afterwards."""
    executable = Path(sys.executable).parent / "localstripe"
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "localstripe.log").open("wb") as log:
        process = subprocess.Popen(
            [str(executable), "--port", str(port), "--from-scratch"],
            stdout=log, stderr=subprocess.STDOUT, cwd=log_dir,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not _answers(f"{base}/v1/customers", "sk_test_probe"):
                if process.poll() is not None:
                    raise RuntimeError(f"localstripe exited with {process.returncode}; see {log_dir}/localstripe.log")
                if time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not answer within 30 s")
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def flush_localstripe(base: str) -> None:
    request = urllib.request.Request(f"{base}/_config/data", method="DELETE")
    with urllib.request.urlopen(request, timeout=5):
        pass


# -- Stripe objects ------------------------------------------------------------------------

def make_customer(client: stripe.StripeClient, card: str | None, *, default: bool = True, email: str | None = None) -> str:
    """A Stripe customer, with the test card ``card`` attached (and made the default) unless None."""
    customer = client.v1.customers.create(params={"email": email} if email else {})
    if card is not None:
        add_card(client, customer.id, card, default=default)
    return customer.id


def add_card(client: stripe.StripeClient, customer_id: str, card: str, *, default: bool = True) -> str:
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(method.id, params={"customer": customer_id})
    if default:
        client.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": method.id}})
    return method.id


def payment_intents(client: stripe.StripeClient, invoice_number: str | None = None) -> list[dict]:
    found = []
    for intent in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        data = intent.to_dict()
        if invoice_number is None or (data.get("metadata") or {}).get("invoice_number") == invoice_number:
            found.append(data)
    return found
