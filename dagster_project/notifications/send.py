"""Send every due notification once, recording each in ``billing.notifications``.

A notification's row is committed as ``pending`` before delivery and updated after it
(``sent`` to SMTP, ``written`` to the outbox, ``failed`` with the reason). Rows ``sent``,
``written``, ``skipped`` and ``superseded`` are final: a rerun derives the same keys and
sends nothing new. ``failed`` and ``pending`` (a run that died mid-delivery) are tried again
on the next run, at most :data:`MAX_DELIVERY_ATTEMPTS` times; a crash between the SMTP
server's acceptance and our update can therefore repeat one message, with the same
Message-ID so mail clients can fold it. Without an SMTP server, messages go to the outbox
directory, one ``.eml`` file per key, and the rows are written in batches (``_Rows``).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import duckdb
from jinja2 import Environment

from dagster_project.lib import arrow_arrays
from dagster_project.lib.faults import fault_point
from dagster_project.lib.workers import process_pool
from dagster_project.notifications.config import (
    NotificationSettings,
    load_notification_settings,
    templates_override_dir,
)
from dagster_project.notifications.delivery import DeliveryError, ServerUnavailable, open_delivery
from dagster_project.notifications.events import Notification, due_notifications
from dagster_project.notifications.render import build_message, environment, message_bytes, message_id, render
from dagster_project.payments.ledger import ensure_payment_tables

logger = logging.getLogger(__name__)

MAX_DELIVERY_ATTEMPTS = 5
OUTBOX_BATCH_ROWS = 500
FINAL = ("sent", "written", "skipped", "superseded")

NOTIFICATIONS_DDL = """
create schema if not exists billing;
create table if not exists billing.notifications (
    notification_key  varchar   not null primary key,  -- see dagster_project/notifications/events.py
    type              varchar   not null,
    subscription_id   varchar,
    invoice_number    varchar,
    period_start      timestamp,
    recipient         varchar,
    cc                varchar,                         -- comma-separated
    subject           varchar,
    status            varchar   not null,              -- pending | sent | written | failed | skipped | superseded
    detail            varchar,                         -- SMTP host:port, .eml path, error or skip reason
    message_id        varchar,
    attempts          integer   not null,
    event_at          timestamp,                       -- when the notified event happened
    run_as_of         timestamp not null,
    sent_at           timestamp                        -- wall clock of delivery, UTC
);
"""


@dataclass
class NotificationReport:
    delivered: list[str] = field(default_factory=list)      # keys sent or written this run
    failed: dict[str, str] = field(default_factory=dict)    # key -> reason
    skipped: dict[str, str] = field(default_factory=dict)   # key -> reason (disabled, no address, before since)
    superseded: list[str] = field(default_factory=list)
    already_handled: int = 0
    by_type: Counter = field(default_factory=Counter)        # delivered per type
    server_unavailable: str | None = None                     # the run stopped delivering: SMTP unreachable

    def as_metadata(self) -> dict:
        return {
            "delivered": len(self.delivered), "failed": len(self.failed), "skipped": len(self.skipped),
            "superseded": len(self.superseded), "already_handled": self.already_handled,
        }


def ensure_notification_tables(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(NOTIFICATIONS_DDL)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# billing.notifications' columns, in order
_ROW_COLUMNS = (
    "notification_key", "type", "subscription_id", "invoice_number", "period_start", "recipient", "cc", "subject",
    "status", "detail", "message_id", "attempts", "event_at", "run_as_of", "sent_at",
)


class _Rows:
    """Writes ``billing.notifications`` rows: each at once (SMTP: the pending row must be committed
    before the server sees the message), or, for the outbox, in batches of
    :data:`OUTBOX_BATCH_ROWS`: an outbox file written again replaces itself, so rows lost in a
    crash only mean the rerun writes those files again, and one insert per row was a third of an
    e-mail's cost."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, batched: bool):
        self.connection, self.batched = connection, batched
        self.waiting: dict[str, tuple] = {}

    def record(
        self, notification: Notification, status: str, as_of: datetime, *,
        detail: str | None = None, subject: str | None = None, message: str | None = None, attempts: int = 0,
        sent_at: datetime | None = None,
    ) -> None:
        row = (notification.key, notification.type.value, notification.subscription_id, notification.invoice_number,
               notification.period_start, notification.recipient, ", ".join(notification.cc) or None, subject,
               status, detail, message, attempts, notification.event_at, as_of, sent_at)
        if not self.batched:
            self.connection.execute(
                "insert or replace into billing.notifications values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                list(row),
            )
            return
        self.waiting[notification.key] = row  # a later row of the same key (written after pending) wins
        if status != "pending" and len(self.waiting) >= OUTBOX_BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.waiting:
            return
        # texts, cast to the columns' types on insert (lib/arrow_arrays.py: no pandas import)
        batch = arrow_arrays.text_table(
            [dict(zip(_ROW_COLUMNS, row, strict=True)) for row in self.waiting.values()], _ROW_COLUMNS
        )
        self.connection.register("_mh_notification_rows", batch)
        try:
            self.connection.execute("insert or replace into billing.notifications select * from _mh_notification_rows")
        finally:
            self.connection.unregister("_mh_notification_rows")
        self.waiting.clear()


def send_due_notifications(
    connection: duckdb.DuckDBPyConnection,
    data_dir: Path,
    as_of: datetime,
    *,
    window_end: datetime | None = None,
    smtp_url: str | None = None,
    settings: NotificationSettings | None = None,
) -> NotificationReport:
    """Derive the due notifications (events.py), deliver the new ones, record every one."""
    ensure_payment_tables(connection)
    ensure_notification_tables(connection)
    settings = settings or load_notification_settings(data_dir)
    handled = dict(connection.execute("select notification_key, status from billing.notifications").fetchall())
    tries = dict(connection.execute("select notification_key, attempts from billing.notifications").fetchall())
    report = NotificationReport()
    due = list(due_notifications(connection, data_dir, as_of, window_end=window_end))

    def already_handled(notification: Notification) -> bool:
        status, attempts = handled.get(notification.key), tries.get(notification.key, 0)
        return status in FINAL or (status == "failed" and attempts >= MAX_DELIVERY_ATTEMPTS)

    to_send = [
        notification for notification in due
        if not already_handled(notification) and _skip_reason(notification, settings) is None
        and not notification.superseded
    ]
    rows = _Rows(connection, batched=not smtp_url)
    delivery = None
    built_messages = _built_messages(to_send, settings, templates_override_dir(data_dir), for_outbox=not smtp_url)
    try:
        for notification in due:
            attempts = tries.get(notification.key, 0)
            if already_handled(notification):
                report.already_handled += 1
                continue
            reason = _skip_reason(notification, settings)
            if reason is not None:
                rows.record(notification, "skipped", as_of, detail=reason)
                report.skipped[notification.key] = reason
                continue
            if notification.superseded:
                rows.record(notification, "superseded", as_of, detail="a higher threshold was crossed")
                report.superseded.append(notification.key)
                continue
            built = next(built_messages)
            if built.error is not None:  # a broken override template fails this notification, not the run
                rows.record(notification, "failed", as_of, detail=built.error, attempts=attempts + 1)
                report.failed[notification.key] = built.error
                continue
            subject = built.subject
            identifier = message_id(notification.key, settings.sender)
            rows.record(notification, "pending", as_of, subject=subject, message=identifier,
                    attempts=attempts + 1)
            if delivery is None:
                delivery = open_delivery(data_dir, smtp_url)
            try:
                where = delivery.deliver(built.message, notification.key)
                fault_point("notify.after_delivery")
            except DeliveryError as error:
                rows.record(notification, "failed", as_of, detail=str(error), subject=subject,
                        message=identifier, attempts=attempts + 1)
                report.failed[notification.key] = str(error)
                logger.warning("notification %s: %s", notification.key, error)
                if isinstance(error, ServerUnavailable):
                    report.server_unavailable = str(error)
                    break
                continue
            rows.record(notification, delivery.status, as_of, detail=where, subject=subject,
                    message=identifier, attempts=attempts + 1, sent_at=_now())
            report.delivered.append(notification.key)
            fault_point("notify.recorded")
            report.by_type[notification.type.value] += 1
        rows.flush()  # not on an exception: those files are written again by the rerun
    finally:
        built_messages.close()  # stops the message workers, if any
        if delivery is not None:
            delivery.close()
    return report


# Building an outbox e-mail (templates, MIME, the invoice attached) costs ~0.2 ms since its MIME is
# assembled as text (render.message_bytes; ~2.5 ms with the email package, ~5 ms before that: 20 K
# of them were 105 s of a 20 M-event run). Past OUTBOX_PARALLEL_FROM messages, worker processes
# build them ahead, OUTBOX_CHUNK at a time, while this process writes files and rows in order.
# SMTP stays one message at a time, built when its turn comes, after the previous one's row.
OUTBOX_PARALLEL_FROM = 500
OUTBOX_CHUNK = 50  # messages a worker builds per task: one round trip for many


@dataclass(frozen=True)
class _Built:
    """A notification's e-mail (a message, or its bytes from a worker), or why it could not be built."""

    subject: str | None = None
    message: EmailMessage | bytes | None = None
    error: str | None = None


def _build(env: Environment, notification: Notification, settings: NotificationSettings, for_outbox: bool) -> _Built:
    """The e-mail: its bytes for the outbox (``message_bytes``), a message object for SMTP."""
    try:
        subject, text, html = render(env, notification, settings)
        build = message_bytes if for_outbox else build_message
        return _Built(subject, build(notification, settings, subject, text, html, sent_at=_now()))
    except Exception as error:  # noqa: BLE001 - reported as this notification's failure
        return _Built(error=f"rendering failed: {type(error).__name__}: {error}")


@functools.lru_cache(maxsize=4)
def _worker_environment(override_dir: Path) -> Environment:
    return environment(override_dir)


def _build_for_outbox(notifications: list[Notification], settings: NotificationSettings,
                      override_dir: Path) -> list[_Built]:
    """In a worker process: a chunk of messages as the bytes their outbox files will hold."""
    env = _worker_environment(override_dir)
    return [_build(env, notification, settings, for_outbox=True) for notification in notifications]


def _built_messages(to_send: list[Notification], settings: NotificationSettings, override_dir: Path,
                    for_outbox: bool) -> Iterator[_Built]:
    """The messages of ``to_send``, in order."""
    processes = os.cpu_count() or 1
    if not for_outbox or len(to_send) < OUTBOX_PARALLEL_FROM or processes < 2:
        env = environment(override_dir)
        for notification in to_send:
            yield _build(env, notification, settings, for_outbox)
        return
    chunks = (to_send[start:start + OUTBOX_CHUNK] for start in range(0, len(to_send), OUTBOX_CHUNK))
    with process_pool(processes) as pool:
        ahead = deque(pool.submit(_build_for_outbox, chunk, settings, override_dir)
                      for chunk in itertools.islice(chunks, 4 * processes))
        while ahead:
            built = ahead.popleft().result()
            following = next(chunks, None)
            if following is not None:
                ahead.append(pool.submit(_build_for_outbox, following, settings, override_dir))
            yield from built


def _skip_reason(notification: Notification, settings: NotificationSettings) -> str | None:
    if not settings.is_enabled(notification.type):
        return f"{notification.type.value} notifications are turned off in notifications.yaml"
    since = settings.notify_events_since
    if since is not None and notification.event_at is not None and notification.event_at < since:
        return f"the event ({notification.event_at:%Y-%m-%d %H:%M}) is before notify_events_since"
    if not notification.recipient:
        return "the subscriber has no e-mail address"
    return None
