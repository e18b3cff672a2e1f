"""Payments: external status updates, then Stripe charges for released invoices."""

# no `from __future__ import annotations` here: Dagster 1.13 checks the `context` annotation
# with inspect.signature, which would see the string "dg.AssetExecutionContext" and refuse it.

import dagster as dg

from dagster_project import settings
from dagster_project.partitions import monthly_billing_periods
from dagster_project.payments.charge import charge_released_invoices
from dagster_project.payments.external import apply_external_payments
from dagster_project.payments.gateway import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_REQUEST_TRIES,
    PaymentsError,
    StripeGateway,
)
from dagster_project.payments.ledger import ensure_payment_tables
from dagster_project.resources import WarehouseResource

INVOICES = dg.AssetKey(["marts", "invoices"])
PAYMENTS = dg.AssetKey(["billing", "payment_attempts"])


class StripeResource(dg.ConfigurableResource):
    """The Stripe API. ``api_key`` comes from ``dg.EnvVar("STRIPE_API_KEY")`` (never a literal in
    code or config files); when it is absent, Stripe charging is off and invoices stay pending.
    ``api_base`` points the client at a local fake (localstripe) in tests."""

    api_key: str | None = None
    api_base: str | None = None
    request_tries: int = DEFAULT_REQUEST_TRIES      # per request, on 429/409/5xx/connection errors
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS  # first backoff; doubles per retry, capped at 8 s

    @property
    def configured(self) -> bool:
        return bool(self.api_key)

    def gateway(self) -> StripeGateway:
        return StripeGateway.connect(
            self.api_key or "", self.api_base or None, request_tries=self.request_tries,
            backoff_base=self.backoff_seconds,
        )


def stripe_resource_from_env() -> StripeResource:
    """The resource as production wires it: the key and base through ``dg.EnvVar``, so their
    values never enter Dagster's run config or UI; no key set means charging is off."""
    return StripeResource(
        api_key=dg.EnvVar(settings.STRIPE_API_KEY_ENV) if settings.stripe_api_key() else None,
        api_base=dg.EnvVar(settings.STRIPE_API_BASE_ENV) if settings.stripe_api_base() else None,
    )


def _stripe_invoice_counts(connection) -> dict[str, int]:
    rows = connection.execute(
        """
        select i.payment_status, count(*)
        from marts.invoices as i join catalog.products as p on p.product_id = i.product_id
        where i.status = 'issued' and p.payment in ('stripe', 'external')
        group by all order by 1
        """
    ).fetchall()
    return {status: count for status, count in rows}


@dg.asset(
    key=PAYMENTS,
    deps=[INVOICES],
    partitions_def=monthly_billing_periods,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="payments",
    kinds={"duckdb", "python", "stripe"},
    description="Charge ledger (SPEC §3.10): one Stripe PaymentIntent per released invoice of a stripe "
    "product, status updates for external products from landing/payments/*.csv.",
)
def payments(context: dg.AssetExecutionContext, warehouse: WarehouseResource, stripe: StripeResource):
    """Apply external payment files, then charge every due stripe invoice of this billing
    period and earlier (first charges and scheduled retries)."""
    window_end = context.partition_time_window.end.replace(tzinfo=None)
    as_of = warehouse.clock()
    metadata: dict = {}
    with warehouse.connect() as connection:
        ensure_payment_tables(connection)
        external = apply_external_payments(connection, warehouse.root)
        for problem in external.problems:
            context.log.warning(f"external payments: {problem}")
        metadata["external_updates_applied"] = len(external.applied)
        metadata["external_problems"] = dg.MetadataValue.json(external.problems)
        if stripe.configured:
            try:
                report = charge_released_invoices(connection, stripe.gateway(), as_of, window_end=window_end)
            except PaymentsError as error:
                # messages are already redacted; don't chain the Stripe error into Dagster's record
                raise dg.Failure(description=f"payments: {error}") from None
            metadata.update(report.as_metadata())
            metadata["paid_invoices"] = dg.MetadataValue.json(report.paid)
            metadata["failed_invoices"] = dg.MetadataValue.json(report.failed)
            context.log.info(
                f"stripe: {len(report.paid)} paid, {len(report.failed)} failed, {len(report.unresolved)} unresolved, "
                f"{len(report.not_due)} retries not due, {len(report.exhausted)} out of retries"
            )
            if report.stripe_unavailable:
                context.log.warning(f"stripe unavailable, the rest waits for the next run: {report.stripe_unavailable}")
        else:
            waiting = connection.execute(
                """
                select count(*) from marts.invoices as i join catalog.products as p on p.product_id = i.product_id
                where i.status = 'issued' and p.payment = 'stripe' and i.payment_status = 'pending'
                """
            ).fetchone()[0]
            metadata["stripe_configured"] = False
            context.log.info(
                f"stripe: {settings.STRIPE_API_KEY_ENV} is not set; {waiting} stripe invoice(s) stay pending"
            )
        metadata["payment_status_counts"] = dg.MetadataValue.json(_stripe_invoice_counts(connection))
    return dg.MaterializeResult(metadata=metadata)


defs = dg.Definitions(assets=[payments])
