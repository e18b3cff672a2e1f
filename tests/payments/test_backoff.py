"""429 and 5xx answers: bounded exponential backoff, and never a second charge.

A small proxy on loopback sits between the client and localstripe and answers the first
requests itself with 429 or 503, or throws away localstripe's answer after forwarding the
request (the worst case: Stripe charged, we heard a 5xx).
"""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from dagster_project import warehouse
from dagster_project.payments.charge import charge_released_invoices
from dagster_project.payments.gateway import StripeGateway, StripeUnavailable, backoff_seconds
from tests.payments.builders import (
    API_KEY,
    add_invoice,
    add_product,
    add_subscriber,
    attempts,
    invoice,
    make_customer,
    payment_intents,
)

AS_OF = datetime(2026, 11, 2)

seen_keys: list[tuple[str, str, str]] = []  # (method, path, Idempotency-Key) of the last proxy's requests

# decide(method, path) -> None: forward; (status, False): answer status without forwarding;
# (status, True): forward, then answer status instead of localstripe's answer
Decision = tuple[int, bool] | None


@contextlib.contextmanager
def flaky_proxy(upstream: str, decide: Callable[[str, str], Decision]) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    keys: list[tuple[str, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output quiet
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            seen.append(f"{self.command} {self.path}")
            if self.headers.get("Idempotency-Key"):
                keys.append((self.command, self.path, self.headers["Idempotency-Key"]))
            decision = decide(self.command, self.path)
            if decision is None or decision[1]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(upstream + self.path, data=body, method=self.command, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, payload = error.code, error.read()
            if decision is not None:
                status = decision[0]
                kind = "rate_limit_error" if status == 429 else "api_error"
                payload = b'{"error": {"type": "%s", "message": "try again later"}}' % kind.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        seen_keys[:] = []
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
        seen_keys.extend(keys)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _setup(data_dir, customer_id):
    with warehouse.connect(data_dir) as connection:
        add_product(connection, "pro")
        add_subscriber(connection, "acme-ap", email="ap@acme.example", stripe_customer_id=customer_id)
        add_invoice(connection, "MH-2026-000001", "acme-ap")


def test_backoff_doubles_and_is_capped():
    assert [backoff_seconds(index) for index in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_rate_limited_requests_are_retried_with_backoff(data_dir, stripe_base, stripe_client):
    _setup(data_dir, make_customer(stripe_client, "4242424242424242"))
    answered = {"count": 0}

    def two_429s_then_forward(method, path):
        answered["count"] += 1
        return (429, False) if answered["count"] <= 2 else None

    sleeps: list[float] = []
    with flaky_proxy(stripe_base, two_429s_then_forward) as (base, seen):
        gateway = StripeGateway.connect(API_KEY, base, sleep=sleeps.append)
        with warehouse.connect(data_dir) as connection:
            report = charge_released_invoices(connection, gateway, AS_OF)
            assert invoice(connection, "MH-2026-000001")["payment_status"] == "paid"
    assert report.paid == ["MH-2026-000001"]
    assert sleeps == [0.5, 1.0]
    assert seen[0] == seen[1] == seen[2]  # the same request, three times
    assert len(payment_intents(stripe_client, "MH-2026-000001")) == 1
    # the deterministic key went out as the Idempotency-Key header (not a random one)
    assert [key for method, path, key in seen_keys if path == "/v1/payment_intents"] == [
        "meterhouse:MH-2026-000001:attempt-1"
    ]


def test_stripe_down_gives_up_after_bounded_tries_and_leaves_the_invoice_pending(data_dir, stripe_base, stripe_client):
    _setup(data_dir, make_customer(stripe_client, "4242424242424242"))
    sleeps: list[float] = []
    with flaky_proxy(stripe_base, lambda method, path: (503, False)) as (base, seen):
        gateway = StripeGateway.connect(API_KEY, base, sleep=sleeps.append, request_tries=3)
        with warehouse.connect(data_dir) as connection:
            report = charge_released_invoices(connection, gateway, AS_OF)
            pending = invoice(connection, "MH-2026-000001")
            [attempt] = attempts(connection, "MH-2026-000001")
    assert len(seen) == 3 and sleeps == [0.5, 1.0]
    assert report.unresolved == ["MH-2026-000001"] and "gave up after 3 tries" in report.stripe_unavailable
    assert pending["payment_status"] == "pending"
    assert attempt["state"] == "unknown" and "HTTP 503" in attempt["failure_message"]
    assert payment_intents(stripe_client) == []
    # Stripe is back: the same attempt (same idempotency key) goes through, once
    with warehouse.connect(data_dir) as connection:
        charge_released_invoices(connection, StripeGateway.connect(API_KEY, stripe_base), AS_OF)
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "paid"
        assert [(a["attempt_number"], a["state"]) for a in attempts(connection, "MH-2026-000001")] == [
            (1, "succeeded")
        ]
    assert len(payment_intents(stripe_client, "MH-2026-000001")) == 1


def test_a_5xx_after_stripe_charged_is_not_charged_again(data_dir, stripe_base, stripe_client):
    """The create reached Stripe and succeeded but we heard 502: look before asking again."""
    _setup(data_dir, make_customer(stripe_client, "4242424242424242"))
    lost = {"done": False}

    def lose_the_first_create_answer(method, path):
        if method == "POST" and path.startswith("/v1/payment_intents") and not lost["done"]:
            lost["done"] = True
            return (502, True)
        return None

    sleeps: list[float] = []
    with flaky_proxy(stripe_base, lose_the_first_create_answer) as (base, seen):
        gateway = StripeGateway.connect(API_KEY, base, sleep=sleeps.append)
        with warehouse.connect(data_dir) as connection:
            report = charge_released_invoices(connection, gateway, AS_OF)
            paid = invoice(connection, "MH-2026-000001")
    [intent] = payment_intents(stripe_client, "MH-2026-000001")
    assert report.paid == ["MH-2026-000001"] and report.recovered == ["MH-2026-000001"]
    assert paid["payment_reference"] == intent["id"]
    assert sleeps == [0.5]
    assert sum(1 for request in seen if request.startswith("POST /v1/payment_intents")) == 1
    assert [key for method, path, key in seen_keys if path == "/v1/payment_intents"] == [
        "meterhouse:MH-2026-000001:attempt-1"
    ]


def test_non_transient_errors_are_not_retried(stripe_base):
    sleeps: list[float] = []
    gateway = StripeGateway.connect(API_KEY, stripe_base, sleep=sleeps.append)
    with pytest.raises(stripe.InvalidRequestError):
        gateway.call("retrieve customer", lambda: gateway.client.v1.customers.retrieve("cus_missing"))
    assert sleeps == []


def test_unreachable_stripe_is_reported_without_the_key():
    sleeps: list[float] = []
    gateway = StripeGateway.connect(API_KEY, "http://127.0.0.1:9", sleep=sleeps.append, request_tries=2)
    with pytest.raises(StripeUnavailable) as raised:
        gateway.call("list customers", lambda: gateway.client.v1.customers.list())
    assert sleeps == [0.5]
    assert API_KEY not in str(raised.value)
