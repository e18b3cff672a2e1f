"""Notifications: e-mail every new event once (SMTP, else ``.eml`` files in the outbox)."""

# no `from __future__ import annotations` here: Dagster 1.13 checks the `context` annotation
# with inspect.signature, which would see the string "dg.AssetExecutionContext" and refuse it.

import dagster as dg

from dagster_project import settings
from dagster_project.notifications.config import NotificationConfigError
from dagster_project.notifications.delivery import DeliveryError, parse_smtp_url
from dagster_project.notifications.send import send_due_notifications
from dagster_project.partitions import monthly_billing_periods
from dagster_project.payments.assets import INVOICES, PAYMENTS
from dagster_project.resources import WarehouseResource

NOTIFICATIONS = dg.AssetKey(["billing", "notifications"])
USAGE_BY_PERIOD = dg.AssetKey(["marts", "usage_by_period"])


@dg.asset(
    key=NOTIFICATIONS,
    deps=[INVOICES, PAYMENTS, USAGE_BY_PERIOD],
    partitions_def=monthly_billing_periods,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="notifications",
    kinds={"python", "email"},
    description="Customer e-mails (new invoice, payment, subscription, free trial, quota): each sent once, "
    "recorded in billing.notifications.",
)
def notifications(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Derive every notification due at the run's clock and deliver the ones not handled yet.
    Quota warnings look at the period open at ``as_of``, so every run that ingests new usage
    checks the thresholds again."""
    window_end = context.partition_time_window.end.replace(tzinfo=None)
    smtp_url = settings.smtp_url()
    try:
        where = f"SMTP {parse_smtp_url(smtp_url).where}" if smtp_url else f"{warehouse.root / 'outbox'}"
        with warehouse.connect() as connection:
            report = send_due_notifications(
                connection, warehouse.root, warehouse.clock(), window_end=window_end, smtp_url=smtp_url
            )
    except (NotificationConfigError, DeliveryError) as error:
        raise dg.Failure(description=f"notifications: {error}") from None
    for key, reason in sorted(report.failed.items()):
        context.log.warning(f"notification {key} failed: {reason}")
    if report.server_unavailable:
        context.log.warning(f"stopped delivering, the rest waits for the next run: {report.server_unavailable}")
    context.log.info(
        f"notifications: {len(report.delivered)} delivered to {where}, {len(report.failed)} failed, "
        f"{len(report.skipped)} skipped, {report.already_handled} already handled"
    )
    return dg.MaterializeResult(metadata={
        **report.as_metadata(),
        "delivered_by_type": dg.MetadataValue.json(dict(sorted(report.by_type.items()))),
        "delivery": "smtp" if smtp_url else "outbox",
    })


defs = dg.Definitions(assets=[notifications])
