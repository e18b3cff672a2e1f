"""The Stripe API as the payments step uses it: a thin wrapper over the official client.

What it adds to ``stripe.StripeClient``:

* bounded exponential backoff on 429, 409, 5xx and connection errors (the client's own
  retries are switched off, so there is one retry policy and tests can inject the sleep);
* plain ``dict`` answers (stripe-python objects are not dicts);
* lookups that work both against Stripe and against localstripe, which lacks the
  ``customer`` filter on PaymentIntent lists and the search API;
* errors that never carry the API key: every message that leaves this module is passed
  through :func:`redact`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import stripe
# stripe (~0.2 s with aiohttp) is imported where a call is made: a run with no Stripe key
# configured never pays for it

T = TypeVar("T")

_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9]+|\b(?:sk|rk)_[A-Za-z0-9_]{6,}")

DEFAULT_REQUEST_TRIES = 4
DEFAULT_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
LIST_PAGE_SIZE = 100


class PaymentsError(RuntimeError):
    """A payments failure whose message is safe to log (no secrets)."""


class StripeUnavailable(PaymentsError):
    """Stripe kept answering 429/5xx or could not be reached after the bounded retries."""


class StripeConfigurationError(PaymentsError):
    """The key was refused (401/403): no charge can succeed until the configuration is fixed."""


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


def is_transient(error: stripe.StripeError) -> bool:
    import stripe

    if isinstance(error, stripe.RateLimitError | stripe.APIConnectionError):
        return True
    status = error.http_status
    return status is not None and (status in (409, 429) or status >= 500) and not isinstance(error, stripe.CardError)


def backoff_seconds(retry_index: int, base: float = DEFAULT_BACKOFF_SECONDS) -> float:
    """0.5 s, 1 s, 2 s, 4 s, ... capped at 8 s."""
    return min(base * 2**retry_index, MAX_BACKOFF_SECONDS)


def error_summary(error: stripe.StripeError, secrets: tuple[str, ...] = ()) -> str:
    status = f"HTTP {error.http_status}" if error.http_status else "no HTTP answer"
    code = f" {error.code}" if error.code else ""
    message = error.user_message or (error.error.message if error.error else None) or type(error).__name__
    return redact(f"{type(error).__name__} ({status}{code}): {message}", secrets)


class StripeGateway:
    def __init__(
        self,
        client: stripe.StripeClient,
        *,
        secrets: tuple[str, ...] = (),
        sleep: Callable[[float], None] = time.sleep,
        request_tries: int = DEFAULT_REQUEST_TRIES,
        backoff_base: float = DEFAULT_BACKOFF_SECONDS,
    ):
        if request_tries < 1:
            raise ValueError("request_tries must be at least 1")
        self.client = client
        self._secrets = tuple(secret for secret in secrets if secret)
        self.sleep = sleep
        self.request_tries = request_tries
        self.backoff_base = backoff_base
        self._payment_intent_customer_filter = True

    @classmethod
    def connect(cls, api_key: str, api_base: str | None = None, **options: Any) -> StripeGateway:
        if not api_key:
            raise StripeConfigurationError("no Stripe API key configured (STRIPE_API_KEY)")
        import stripe

        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=0,  # one retry policy: ours (call), with an injectable sleep
        )
        return cls(client, secrets=(api_key,), **options)

    @classmethod
    def wrap(cls, client: stripe.StripeClient | StripeGateway, **options: Any) -> StripeGateway:
        if isinstance(client, StripeGateway):
            return client
        key = getattr(getattr(getattr(client, "_requestor", None), "_options", None), "api_key", None)
        return cls(client, secrets=(key,) if key else (), **options)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def describe(self, error: stripe.StripeError) -> str:
        return error_summary(error, self._secrets)

    # -- the retry policy ------------------------------------------------------------------
    def call(self, what: str, request: Callable[[], T]) -> T:
        """Run one Stripe request; retry 429/409/5xx/connection errors with exponential backoff.

        Every other Stripe error is re-raised unchanged for the caller to classify, except
        authentication and permission errors, which become :class:`StripeConfigurationError`.
        """
        import stripe

        for retry_index in range(self.request_tries):
            try:
                return request()
            except (stripe.AuthenticationError, stripe.PermissionError) as error:
                raise StripeConfigurationError(f"{what}: Stripe refused the API key: {self.describe(error)}") from None
            except stripe.StripeError as error:
                if not is_transient(error):
                    raise
                if retry_index == self.request_tries - 1:
                    raise StripeUnavailable(
                        f"{what}: gave up after {self.request_tries} tries: {self.describe(error)}"
                    ) from None
                self.sleep(backoff_seconds(retry_index, self.backoff_base))
        raise AssertionError("unreachable")

    def _pages(self, what: str, list_call: Callable[[dict], Any], params: dict) -> Iterator[dict]:
        """Every object of a list endpoint, one page at a time, each page with the retry policy."""
        page_params = {**params, "limit": LIST_PAGE_SIZE}
        while True:
            page = self.call(what, lambda p=dict(page_params): list_call(p))
            items = [item.to_dict() for item in page.data]
            yield from items
            if not page.has_more or not items:
                return
            page_params["starting_after"] = items[-1]["id"]

    # -- customers -------------------------------------------------------------------------
    def find_customer(self, subscriber_id: str, email: str | None) -> str | None:
        """A customer created for this subscriber earlier (metadata ``subscriber_id``).

        Lists by e-mail when there is one (a filter Stripe and localstripe both have), else
        every customer. The list API, unlike search, is read-after-write consistent.
        """
        params = {"email": email} if email else {}
        for customer in self._pages("list customers", lambda p: self.client.v1.customers.list(params=p), params):
            if (customer.get("metadata") or {}).get("subscriber_id") == subscriber_id and not customer.get("deleted"):
                return customer["id"]
        return None

    def create_customer(self, subscriber_id: str, email: str | None, name: str | None) -> str:
        params: dict[str, Any] = {"metadata": {"subscriber_id": subscriber_id}}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        customer = self.call(
            "create customer",
            lambda: self.client.v1.customers.create(
                params=params, options={"idempotency_key": f"meterhouse:customer:{subscriber_id}"}
            ),
        )
        return customer.id

    def default_payment_method(self, customer_id: str) -> str | None:
        """``invoice_settings.default_payment_method``, else the legacy default source, else the
        first card attached to the customer; None when the customer has no card."""
        customer = self.call("retrieve customer", lambda: self.client.v1.customers.retrieve(customer_id)).to_dict()
        chosen = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if isinstance(chosen, dict):
            chosen = chosen.get("id")
        if chosen:
            return chosen
        source = customer.get("default_source")
        if source:
            return source if isinstance(source, str) else source.get("id")
        cards = self.call(
            "list payment methods",
            lambda: self.client.v1.payment_methods.list(params={"customer": customer_id, "type": "card", "limit": 1}),
        )
        return cards.data[0].id if cards.data else None

    # -- payment intents -------------------------------------------------------------------
    def payment_intents_for(self, customer_id: str, invoice_number: str) -> list[dict]:
        """Every PaymentIntent of the customer whose metadata names the invoice, oldest first.

        Stripe filters the list by customer; localstripe refuses that filter, so on a 400 the
        unfiltered list is read and filtered here (small in tests, never used against Stripe).
        """
        import stripe

        service = self.client.v1.payment_intents
        found: list[dict] = []
        if self._payment_intent_customer_filter:
            try:
                found = list(self._pages(
                    "list payment intents", lambda p: service.list(params=p), {"customer": customer_id}
                ))
            except stripe.InvalidRequestError:
                self._payment_intent_customer_filter = False
        if not self._payment_intent_customer_filter:
            found = list(self._pages("list payment intents", lambda p: service.list(params=p), {}))
        matching = [
            intent for intent in found
            if intent.get("customer") == customer_id
            and (intent.get("metadata") or {}).get("invoice_number") == invoice_number
        ]
        return sorted(matching, key=lambda intent: (intent.get("created") or 0, intent["id"]))

    def create_payment_intent(self, params: dict, idempotency_key: str) -> dict:
        """One POST, no retry here: the caller looks the intent up before trying again."""
        return self.client.v1.payment_intents.create(
            params=params, options={"idempotency_key": idempotency_key}
        ).to_dict()
