"""Charge released invoices of ``stripe`` products: one off-session PaymentIntent per invoice.

Per invoice and attempt:

1. commit a ``started`` row in ``billing.payment_attempts`` (or resume the ``started`` /
   ``unknown`` row a crashed or interrupted run left behind);
2. make sure the subscriber has a Stripe customer (catalog ``stripe_customer_id``, else one
   recorded in ``billing.stripe_customers``, else found by metadata, else created);
3. look for a PaymentIntent for the invoice in Stripe (metadata ``invoice_number``): a
   succeeded one means the invoice is paid, one created for this very attempt is its
   outcome; only when there is neither is a new one created, with the deterministic
   idempotency key ``meterhouse:<invoice_number>:attempt-<n>``;
4. commit Stripe's answer to the attempt row and the invoice's payment status together.

A process killed between Stripe's answer and step 4 leaves the ``started`` row; the next
run resumes that attempt and finds the PaymentIntent in step 3, so it never charges twice.

Failed charges are retried on :data:`RETRY_DELAYS`, counted from the run clock (``as_of``)
of the first attempt, at most :data:`MAX_ATTEMPTS` attempts in all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb

from dagster_project.lib.faults import fault_point
from dagster_project.payments.gateway import (
    StripeConfigurationError,
    StripeGateway,
    StripeUnavailable,
    backoff_seconds,
    is_transient,
)
from dagster_project.payments.ledger import ensure_payment_tables, stripe_amount

if TYPE_CHECKING:
    import stripe

logger = logging.getLogger(__name__)

# Retry a failed charge 1, 3 and 7 days after the first attempt: 4 attempts at most.
RETRY_DELAYS: tuple[timedelta, ...] = (timedelta(days=1), timedelta(days=3), timedelta(days=7))
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS)

NO_PAYMENT_METHOD = "no_payment_method"
AUTHENTICATION_REQUIRED = "authentication_required"

# called right after Stripe answered a create, before anything is written (tests kill here)
StripeAnswerHook = Callable[[str, int], None]


@dataclass(frozen=True)
class Outcome:
    state: str                          # succeeded | failed | requires_action | unknown
    payment_intent_id: str | None = None
    decline_code: str | None = None
    message: str | None = None
    paid_at: datetime | None = None


@dataclass
class ChargeReport:
    paid: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)      # invoice -> decline code
    unresolved: list[str] = field(default_factory=list)       # attempt state unknown: resolved next run
    recovered: list[str] = field(default_factory=list)        # outcome found in Stripe, not charged again
    not_due: list[str] = field(default_factory=list)          # failed, next retry later
    exhausted: list[str] = field(default_factory=list)        # failed MAX_ATTEMPTS times
    nothing_to_charge: list[str] = field(default_factory=list)
    stripe_unavailable: str | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {
            "paid": len(self.paid), "failed": len(self.failed), "unresolved": len(self.unresolved),
            "recovered": len(self.recovered), "retry_not_due": len(self.not_due),
            "retries_exhausted": len(self.exhausted), "nothing_to_charge": len(self.nothing_to_charge),
        }


def idempotency_key(invoice_number: str, attempt_number: int) -> str:
    return f"meterhouse:{invoice_number}:attempt-{attempt_number}"


def next_retry_at(first_attempt_as_of: datetime, failed_attempts: int) -> datetime | None:
    """When attempt ``failed_attempts + 1`` is due; None when no retry is left."""
    if failed_attempts < 1 or failed_attempts >= MAX_ATTEMPTS:
        return None
    return first_attempt_as_of + RETRY_DELAYS[failed_attempts - 1]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list) -> list[dict]:
    result = connection.execute(sql, parameters)
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def chargeable_invoices(
    connection: duckdb.DuckDBPyConnection, window_end: datetime | None = None, numbers: list[str] | None = None
) -> list[dict]:
    """Issued invoices of ``stripe`` products still ``pending`` or ``failed``."""
    rows = _rows(
        connection,
        """
        select i.invoice_number, i.subscription_id, i.subscriber_id, i.subscriber_email, i.currency, i.total,
               i.payment_status, s.email as catalog_email, s.subscriber_name, s.stripe_customer_id
        from marts.invoices as i
        join catalog.products as p on p.product_id = i.product_id
        left join catalog.subscribers as s on s.subscriber_id = i.subscriber_id
        where i.status = 'issued' and p.payment = 'stripe' and i.payment_status in ('pending', 'failed')
          and (cast(? as timestamp) is null or i.period_end <= ?)
        order by i.invoice_number
        """,
        [window_end, window_end],
    )
    if numbers is not None:
        rows = [row for row in rows if row["invoice_number"] in set(numbers)]
    return rows


def charge_released_invoices(
    connection: duckdb.DuckDBPyConnection,
    client: stripe.StripeClient | StripeGateway,
    as_of: datetime,
    *,
    window_end: datetime | None = None,
    invoice_numbers: list[str] | None = None,
    sleep: Callable[[float], None] | None = None,
    on_stripe_answer: StripeAnswerHook | None = None,
) -> ChargeReport:
    """Charge every due ``stripe`` invoice once (see the module docstring for the protocol).

    ``window_end`` limits the run to invoices whose period ended by then (a billing
    partition); ``sleep`` replaces ``time.sleep`` in the backoff. Raises
    :class:`StripeConfigurationError` when Stripe refuses the key.
    """
    gateway = StripeGateway.wrap(client)
    if sleep is not None:
        gateway.sleep = sleep
    ensure_payment_tables(connection)
    report = ChargeReport()
    for invoice in chargeable_invoices(connection, window_end, invoice_numbers):
        try:
            _charge_one(connection, gateway, invoice, as_of, report, on_stripe_answer)
        except StripeUnavailable as error:
            # Stripe is down or throttling hard: stop here, the rest waits for the next run
            report.stripe_unavailable = str(error)
            report.unresolved.append(invoice["invoice_number"])
            logger.warning("payments: %s", error)
            break
    return report


def _attempts(connection: duckdb.DuckDBPyConnection, number: str) -> list[dict]:
    return _rows(
        connection,
        "select * from billing.payment_attempts where invoice_number = ? order by attempt_number",
        [number],
    )


def _charge_one(
    connection: duckdb.DuckDBPyConnection,
    gateway: StripeGateway,
    invoice: dict,
    as_of: datetime,
    report: ChargeReport,
    on_stripe_answer: StripeAnswerHook | None,
) -> None:
    import stripe  # here, not at import: see payments/gateway.py

    number = invoice["invoice_number"]
    total = Decimal(invoice["total"])
    if total <= 0:
        # nothing to collect: a zero invoice is settled, a credit note is not charged (refunds are manual)
        status = "paid" if total == 0 else "none"
        connection.execute(
            "update marts.invoices set payment_status = ?, payment_failure_code = null,"
            " payment_failure_message = ? where invoice_number = ?",
            [status, "nothing to charge" if total == 0 else "credit note: nothing to charge", number],
        )
        report.nothing_to_charge.append(number)
        return
    attempts = _attempts(connection, number)
    last = attempts[-1] if attempts else None
    if last is not None and last["state"] == "succeeded":
        # the attempt was recorded but the invoice was not: repair it, never charge again
        _finish(connection, number, last["attempt_number"], Outcome("succeeded", last["payment_intent_id"]),
                last["customer_id"])
        report.recovered.append(number)
        report.paid.append(number)
        return
    resuming = last is not None and last["state"] in ("started", "unknown")
    if resuming:
        attempt_number = last["attempt_number"]
    else:
        if len(attempts) >= MAX_ATTEMPTS:
            report.exhausted.append(number)
            return
        if attempts:
            due = next_retry_at(attempts[0]["run_as_of"], len(attempts))
            if due is None or as_of < due:
                report.not_due.append(number)
                return
        attempt_number = len(attempts) + 1
    amount = stripe_amount(total, invoice["currency"])
    currency = invoice["currency"].lower()
    key = idempotency_key(number, attempt_number)
    if not resuming:
        connection.execute(
            """
            insert into billing.payment_attempts (invoice_number, attempt_number, state, amount_minor, currency,
                                                  idempotency_key, run_as_of, started_at)
            values (?, ?, 'started', ?, ?, ?, ?, ?)
            """,
            [number, attempt_number, amount, currency, key, as_of, _now()],
        )
    customer_id = None
    try:
        customer_id = _ensure_customer(connection, gateway, invoice)
        outcome, recovered = _charge_attempt(
            gateway, invoice, attempt_number, amount, currency, key, customer_id, on_stripe_answer
        )
    except (StripeConfigurationError, StripeUnavailable) as error:
        _record_unknown(connection, number, attempt_number, customer_id, str(error))
        raise
    except stripe.StripeError as error:
        # not transient, not a card decline: an invalid request (e.g. amount below Stripe's minimum)
        outcome, recovered = Outcome("failed", None, error.code or "invalid_request", gateway.describe(error)), False
    _finish(connection, number, attempt_number, outcome, customer_id)
    if recovered:
        report.recovered.append(number)
    if outcome.state == "succeeded":
        report.paid.append(number)
    elif outcome.state == "unknown":
        report.unresolved.append(number)
    else:
        report.failed[number] = outcome.decline_code or "failed"


def _ensure_customer(connection: duckdb.DuckDBPyConnection, gateway: StripeGateway, invoice: dict) -> str:
    if invoice["stripe_customer_id"]:
        return invoice["stripe_customer_id"]
    subscriber = invoice["subscriber_id"]
    row = connection.execute(
        "select stripe_customer_id from billing.stripe_customers where subscriber_id = ?", [subscriber]
    ).fetchone()
    if row:
        return row[0]
    email = invoice["catalog_email"] or invoice["subscriber_email"]
    customer_id = gateway.find_customer(subscriber, email)
    origin = "found"
    if customer_id is None:
        customer_id = gateway.create_customer(subscriber, email, invoice["subscriber_name"])
        origin = "created"
    connection.execute(
        "insert or replace into billing.stripe_customers values (?, ?, ?, ?)", [subscriber, customer_id, origin, _now()]
    )
    return customer_id


def _outcome_of(intent: dict) -> Outcome:
    """What a PaymentIntent's status means for the invoice."""
    status = intent.get("status")
    error = intent.get("last_payment_error") or {}
    if status == "succeeded":
        created = intent.get("created")
        paid_at = datetime.fromtimestamp(created, UTC).replace(tzinfo=None) if created else None
        return Outcome("succeeded", intent["id"], paid_at=paid_at)
    if status == "requires_action":
        return Outcome(
            "requires_action", intent["id"], AUTHENTICATION_REQUIRED,
            "the card requires authentication (3-D Secure), which an off-session charge cannot provide",
        )
    if status == "requires_payment_method":
        code = error.get("decline_code") or error.get("code") or "payment_failed"
        return Outcome("failed", intent["id"], code, error.get("message") or "the payment failed")
    if status == "canceled":
        return Outcome("failed", intent["id"], "canceled", "the PaymentIntent was canceled")
    # processing, requires_confirmation, requires_capture: not final; resolved on a later run
    return Outcome("unknown", intent["id"], None, f"PaymentIntent status {status}")


def _charge_attempt(
    gateway: StripeGateway,
    invoice: dict,
    attempt_number: int,
    amount: int,
    currency: str,
    key: str,
    customer_id: str,
    on_stripe_answer: StripeAnswerHook | None,
) -> tuple[Outcome, bool]:
    """The outcome of this attempt, and whether it came from an earlier call (recovered)."""
    import stripe

    number = invoice["invoice_number"]

    def existing() -> Outcome | None:
        intents = gateway.payment_intents_for(customer_id, number)
        succeeded = [intent for intent in intents if intent.get("status") == "succeeded"]
        if len(succeeded) > 1:
            logger.error("payments: invoice %s has %d succeeded PaymentIntents", number, len(succeeded))
        if succeeded:
            return _outcome_of(succeeded[0])
        mine = [i for i in intents if (i.get("metadata") or {}).get("attempt_number") == str(attempt_number)]
        return _outcome_of(mine[-1]) if mine else None

    found = existing()
    if found is not None:
        return found, True
    payment_method = gateway.default_payment_method(customer_id)
    if payment_method is None:
        return Outcome(
            "failed", None, NO_PAYMENT_METHOD,
            f"Stripe customer {customer_id} has no card: no default payment method and no card attached",
        ), False
    params = {
        "amount": amount,
        "currency": currency,
        "customer": customer_id,
        "payment_method": payment_method,
        "off_session": True,
        "confirm": True,
        "metadata": {
            "invoice_number": number,
            "attempt_number": str(attempt_number),
            "subscription_id": invoice["subscription_id"],
        },
    }
    for retry_index in range(gateway.request_tries):
        try:
            intent = gateway.create_payment_intent(params, key)
        except stripe.CardError as error:
            if on_stripe_answer is not None:
                on_stripe_answer(number, attempt_number)
            return _declined(gateway, error, existing), False
        except (stripe.AuthenticationError, stripe.PermissionError) as error:
            raise StripeConfigurationError(
                f"create payment intent: Stripe refused the API key: {gateway.describe(error)}"
            ) from None
        except stripe.StripeError as error:
            if not is_transient(error):
                raise
            if retry_index == gateway.request_tries - 1:
                raise StripeUnavailable(
                    f"create payment intent for {number}: gave up after {gateway.request_tries} tries: "
                    f"{gateway.describe(error)}"
                ) from None
            gateway.sleep(backoff_seconds(retry_index, gateway.backoff_base))
            # the request may have reached Stripe: look before asking again
            found = existing()
            if found is not None:
                return found, True
            continue
        if on_stripe_answer is not None:
            on_stripe_answer(number, attempt_number)
        fault_point("payment.after_stripe_answer")
        return _outcome_of(intent), False
    raise AssertionError("unreachable")


def _declined(gateway: StripeGateway, error: stripe.CardError, existing: Callable[[], Outcome | None]) -> Outcome:
    body = error.error
    intent = getattr(body, "payment_intent", None) if body is not None else None
    intent_id = intent.get("id") if isinstance(intent, dict) else getattr(intent, "id", None)
    decline_code = (getattr(body, "decline_code", None) if body is not None else None) or error.code or "card_declined"
    message = gateway.redact(error.user_message or "the card was declined")
    if intent_id is None:
        # Stripe puts the PaymentIntent in the error; localstripe doesn't: find it by metadata
        found = existing()
        intent_id = found.payment_intent_id if found is not None else None
    return Outcome("failed", intent_id, decline_code, message)


def _record_unknown(
    connection: duckdb.DuckDBPyConnection, number: str, attempt_number: int, customer_id: str | None, message: str
) -> None:
    connection.execute(
        "update billing.payment_attempts set state = 'unknown', customer_id = coalesce(?, customer_id),"
        " failure_message = ?, finished_at = ? where invoice_number = ? and attempt_number = ?",
        [customer_id, message, _now(), number, attempt_number],
    )


def _finish(
    connection: duckdb.DuckDBPyConnection, number: str, attempt_number: int, outcome: Outcome, customer_id: str | None
) -> None:
    """Record the attempt's outcome and the invoice's payment status in one transaction."""
    connection.execute("begin transaction")
    try:
        connection.execute(
            """
            update billing.payment_attempts
            set state = ?, payment_intent_id = coalesce(?, payment_intent_id), customer_id = coalesce(?, customer_id),
                decline_code = ?, failure_message = ?, finished_at = ?
            where invoice_number = ? and attempt_number = ?
            """,
            [outcome.state, outcome.payment_intent_id, customer_id, outcome.decline_code, outcome.message, _now(),
             number, attempt_number],
        )
        if outcome.state != "unknown":
            paid = outcome.state == "succeeded"
            connection.execute(
                """
                update marts.invoices
                set payment_status = ?, payment_reference = ?,
                    payment_failure_code = ?, payment_failure_message = ?, paid_at = ?
                where invoice_number = ?
                """,
                ["paid" if paid else "failed", outcome.payment_intent_id,
                 None if paid else outcome.decline_code, None if paid else outcome.message,
                 outcome.paid_at if paid else None, number],
            )
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    fault_point("payment.recorded")
