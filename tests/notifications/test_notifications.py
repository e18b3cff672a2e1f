"""Notifications against a real SMTP server on loopback, and the outbox without one."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path

import dagster as dg
import pytest

from dagster_project import warehouse
from dagster_project.catalog.loader import load_catalog_into
from dagster_project.notifications.assets import NOTIFICATIONS, notifications
from dagster_project.notifications.config import NotificationConfigError, load_notification_settings
from dagster_project.notifications.send import send_due_notifications
from dagster_project.resources import WarehouseResource
from tests.payments.builders import add_invoice

AS_OF = datetime(2026, 11, 20)  # November is the open period
NOVEMBER = (datetime(2026, 11, 1), datetime(2026, 12, 1))
EVIL_NAME = '<script>alert("pwned")</script> & Sons'

CATALOG = """
products:
  - id: pro
    name: Pro Plan
    currency: USD
    payment: stripe
    notification_cc: [provider-billing@meterhouse.example]
    metrics:
      - name: Summaries
        element: requests
        tiers:
          - {name: "First 1,000", up_to: 1000, unit_rate: "1.50"}
          - {name: "1,000 to 5,000", up_to: 5000, unit_rate: "1.40"}
          - {name: "5,000+", up_to: null, unit_rate: "1.35"}
        notify_at_percent: [80, 100]
  - id: trial-plan
    name: Trial Plan
    currency: USD
    free_trial_days: 14
  - id: basic
    name: Basic
    currency: USD
subscribers:
  - {id: acme-ap, email: ap@acme.example, name: '<script>alert("pwned")</script> & Sons'}
  - {id: globex, email: billing@globex.example, name: Globex}
  - {id: nobody, name: No Address}
subscriptions:
  - id: acme-pro
    name: "Acme <b>summaries</b>"
    subscriber: acme-ap
    product: pro
    start: 2026-10-01T00:00:00Z
  - id: globex-trial
    subscriber: globex
    product: trial-plan
    start: 2026-11-10T00:00:00Z
  - id: globex-old
    subscriber: globex
    product: pro
    start: 2026-08-01T00:00:00Z
    end: 2026-10-15T00:00:00Z
  - id: globex-term
    subscriber: globex
    product: basic
    start: 2026-06-01T00:00:00Z
    end: 2026-09-01T00:00:00Z
    metadata: {end_reason: expired}
  - id: nobody-pro
    subscriber: nobody
    product: pro
    start: 2027-01-01T00:00:00Z
"""


def build(data_dir: Path, usage: dict[str, int] | None = None) -> None:
    """The catalog through the real loader, one October invoice per state, November usage."""
    (data_dir / "catalog").mkdir(parents=True, exist_ok=True)
    (data_dir / "catalog" / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    with warehouse.connect(data_dir) as connection:
        load_catalog_into(connection, data_dir, AS_OF)
        add_invoice(connection, "MH-2026-000001", "acme-ap", subscription_id="acme-pro", total="199.00",
                    payment_status="paid", email="ap@acme.example")
        add_invoice(connection, "MH-2026-000002", "globex", subscription_id="globex-old", total="12.34",
                    payment_status="failed", email="billing@globex.example")
        connection.execute(
            "update marts.invoices set subscription_name = 'Acme <b>summaries</b>' where invoice_number = 'MH-2026-000001'"
        )
        set_usage(connection, usage or {})


def set_usage(connection, usage: dict[str, int]) -> None:
    """A stand-in for dbt's marts.usage_by_period (breakdown 'total' rows of the open period)."""
    connection.execute(
        """
        create table if not exists marts.usage_by_period (
            draft_key varchar, subscription_id varchar, product_id varchar, period_start timestamp,
            period_end timestamp, metric varchar, breakdown varchar, credential_name varchar,
            quantity decimal(21, 10), event_count bigint
        )
        """
    )
    connection.execute("delete from marts.usage_by_period")
    for subscription, quantity in usage.items():
        connection.execute(
            "insert into marts.usage_by_period values (?, ?, 'pro', ?, ?, 'Summaries', 'total', null, ?, ?)",
            [f"{subscription}|nov", subscription, *NOVEMBER, quantity, quantity],
        )
        # a credential row must not count twice
        connection.execute(
            "insert into marts.usage_by_period values (?, ?, 'pro', ?, ?, 'Summaries', 'credential', 'k', ?, ?)",
            [f"{subscription}|nov", subscription, *NOVEMBER, quantity, quantity],
        )


def run(data_dir: Path, smtp_url: str | None = None, as_of: datetime = AS_OF):
    with warehouse.connect(data_dir) as connection:
        return send_due_notifications(connection, data_dir, as_of, smtp_url=smtp_url)


def statuses(data_dir: Path) -> dict[str, str]:
    with warehouse.connect(data_dir) as connection:
        return dict(connection.execute("select notification_key, status from billing.notifications").fetchall())


def by_type(received) -> dict[str, list]:
    found: dict[str, list] = {}
    for item in received:
        found.setdefault(item.message["X-Meterhouse-Notification"], []).append(item)
    return found


def parts(message) -> tuple[str, str]:
    return (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content())


def test_smtp_delivery_renders_escaped_html_and_a_rerun_sends_nothing(data_dir, smtp_server):
    build(data_dir, usage={"acme-pro": 10})
    report = run(data_dir, smtp_server.url)
    received = by_type(smtp_server.received)
    assert sorted(received) == [
        "free_trial", "new_invoice", "payment_failed", "subscription_canceled", "subscription_created",
        "subscription_expiration", "successful_payment",
    ]
    assert len(received["new_invoice"]) == 2 and len(received["subscription_created"]) == 4
    assert not report.failed

    [invoice_mail] = [r for r in received["new_invoice"] if r.message["To"] == "ap@acme.example"]
    message = invoice_mail.message
    assert message["Subject"] == "Invoice MH-2026-000001 from Meterhouse: 199.00 USD"
    assert message["From"] == "Meterhouse Billing <billing@meterhouse.example>"
    assert message["Cc"] == "provider-billing@meterhouse.example"
    assert sorted(invoice_mail.rcpt_tos) == ["ap@acme.example", "provider-billing@meterhouse.example"]
    text, html = parts(message)
    # customer strings are escaped in HTML, verbatim in plain text
    assert "<script>" not in html and "<b>summaries</b>" not in html
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; &amp; Sons" in html
    assert "Acme &lt;b&gt;summaries&lt;/b&gt;" in html
    assert f"Hello {EVIL_NAME}," in text
    assert "Total:        199.00 USD" in text and "2026-10-01 to 2026-11-01" in text

    [failed] = received["payment_failed"]
    assert "Subject: Payment failed for invoice MH-2026-000002" in failed.message.as_string()
    [expired] = received["subscription_expiration"]
    assert "globex-term" in expired.message["Subject"]
    [canceled] = received["subscription_canceled"]
    assert "globex-old" in canceled.message["Subject"]
    [trial] = received["free_trial"]
    assert "14-day free trial of Trial Plan" in trial.message["Subject"]
    assert "until 2026-11-24 00:00 UTC" in parts(trial.message)[0]

    recorded = statuses(data_dir)
    assert set(recorded.values()) == {"sent"}
    assert "subscription_created:nobody-pro" not in recorded  # starts after as_of

    count = len(smtp_server.received)
    again = run(data_dir, smtp_server.url)
    assert len(smtp_server.received) == count
    assert again.delivered == [] and again.already_handled == len(recorded)


def test_outbox_gets_eml_files_without_an_smtp_server(data_dir):
    build(data_dir)
    report = run(data_dir)
    outbox = sorted((data_dir / "outbox").glob("*.eml"))
    assert len(outbox) == len(report.delivered) == 11
    assert set(statuses(data_dir).values()) == {"written"}
    [invoice_file] = [path for path in outbox if path.name == "new_invoice_MH-2026-000001.eml"]
    message = message_from_bytes(invoice_file.read_bytes(), policy=policy.default)
    assert message["To"] == "ap@acme.example"
    assert "&lt;script&gt;" in message.get_body(("html",)).get_content()
    run(data_dir)
    assert sorted((data_dir / "outbox").glob("*.eml")) == outbox


def test_outbox_rows_are_written_in_batches_and_a_crash_mid_batch_rewrites_files_once(data_dir, monkeypatch):
    """11 notifications, batches of 4: a failure at the 7th file keeps the first batch's rows;
    the rerun writes the other 7 (replacing the 2 already written), one file per key."""
    from dagster_project.notifications import delivery, send

    build(data_dir)
    monkeypatch.setattr(send, "OUTBOX_BATCH_ROWS", 4)
    original = delivery.OutboxDelivery.deliver
    calls = []

    def failing_seventh(self, message, name):
        calls.append(name)
        if len(calls) == 7:
            raise OSError("disk went away")
        return original(self, message, name)

    monkeypatch.setattr(delivery.OutboxDelivery, "deliver", failing_seventh)
    with pytest.raises(OSError, match="disk went away"):
        run(data_dir)
    assert set(statuses(data_dir).values()) == {"written"} and len(statuses(data_dir)) == 4
    assert len(list((data_dir / "outbox").glob("*.eml"))) == 6

    monkeypatch.setattr(delivery.OutboxDelivery, "deliver", original)
    report = run(data_dir)
    assert len(report.delivered) == 7 and report.already_handled == 4
    keys = statuses(data_dir)
    assert len(keys) == 11 and set(keys.values()) == {"written"}
    files = sorted(path.name for path in (data_dir / "outbox").glob("*.eml"))
    assert files == sorted(key.replace(":", "_") + ".eml" for key in keys)  # one file per key
    assert not list((data_dir / "outbox").glob("*.tmp"))


def test_invoice_document_is_attached_when_it_exists(data_dir):
    build(data_dir)
    (data_dir / "invoices").mkdir()
    (data_dir / "invoices" / "MH-2026-000001.html").write_text("<html>invoice</html>", encoding="utf-8")
    run(data_dir)
    message = message_from_bytes(
        (data_dir / "outbox" / "new_invoice_MH-2026-000001.eml").read_bytes(), policy=policy.default
    )
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "MH-2026-000001.html"


def test_quota_warning_at_80_percent_is_sent_once_then_the_tier_warning(data_dir, smtp_server):
    build(data_dir, usage={"acme-pro": 799})
    run(data_dir, smtp_server.url)
    assert "quota_warning" not in by_type(smtp_server.received)

    with warehouse.connect(data_dir) as connection:
        set_usage(connection, {"acme-pro": 850})
    run(data_dir, smtp_server.url)
    run(data_dir, smtp_server.url)  # rerun: nothing new
    [warning] = by_type(smtp_server.received)["quota_warning"]
    assert warning.message["To"] == "ap@acme.example"
    assert "80% of First 1,000 used for Summaries" in warning.message["Subject"]
    text, html = parts(warning.message)
    assert "850 of 1,000" in text and "1.40 USD per unit" in text

    with warehouse.connect(data_dir) as connection:
        set_usage(connection, {"acme-pro": 1000})
    run(data_dir, smtp_server.url)
    run(data_dir, smtp_server.url)
    received = by_type(smtp_server.received)
    assert len(received["quota_warning"]) == 1
    [tier] = received["quota_tier_warning"]
    assert "First 1,000 used up for Summaries" in tier.message["Subject"]
    keys = statuses(data_dir)
    assert keys["quota:acme-pro:2026-11-01T00:00:00:Summaries:1:80"] == "sent"
    assert keys["quota:acme-pro:2026-11-01T00:00:00:Summaries:1:100"] == "sent"


def test_crossing_several_thresholds_at_once_sends_only_the_highest(data_dir, smtp_server):
    build(data_dir, usage={"acme-pro": 4200})  # past 80% and 100% of tier 1 and 80% of tier 2
    run(data_dir, smtp_server.url)
    received = by_type(smtp_server.received)
    assert "quota_tier_warning" not in received
    [warning] = received["quota_warning"]
    assert "80% of 1,000 to 5,000" in warning.message["Subject"]
    keys = statuses(data_dir)
    assert keys["quota:acme-pro:2026-11-01T00:00:00:Summaries:1:80"] == "superseded"
    assert keys["quota:acme-pro:2026-11-01T00:00:00:Summaries:1:100"] == "superseded"
    assert keys["quota:acme-pro:2026-11-01T00:00:00:Summaries:2:80"] == "sent"


def test_a_new_failed_attempt_notifies_again(data_dir):
    build(data_dir)
    run(data_dir)
    with warehouse.connect(data_dir) as connection:
        connection.execute(
            """
            insert into billing.payment_attempts (invoice_number, attempt_number, state, amount_minor, currency,
                idempotency_key, run_as_of, started_at)
            values ('MH-2026-000002', 1, 'failed', 1234, 'usd', 'k1', '2026-11-02', '2026-11-02'),
                   ('MH-2026-000002', 2, 'failed', 1234, 'usd', 'k2', '2026-11-03', '2026-11-03')
            """
        )
    report = run(data_dir)
    assert report.delivered == ["payment_failed:MH-2026-000002:2"]


def test_settings_turn_types_off_and_templates_are_overridden(data_dir, smtp_server):
    build(data_dir)
    (data_dir / "notifications.yaml").write_text(
        "sender: 'Acme Billing <billing@acme.example>'\n"
        "company_name: Acme\n"
        "logo_url: https://acme.example/logo.png\n"
        "enabled: {subscription_created: false, free_trial: false}\n",
        encoding="utf-8",
    )
    overrides = data_dir / "notifications" / "templates"
    overrides.mkdir(parents=True)
    (overrides / "new_invoice.subject.j2").write_text("Your bill {{ invoice.number }}\n", encoding="utf-8")
    (overrides / "new_invoice.html.j2").write_text(
        '{% extends "_layout.html.j2" %}{% block heading %}Bill{% endblock %}'
        "{% block body %}<p>Custom for {{ subscriber.name }}</p>{% endblock %}",
        encoding="utf-8",
    )
    report = run(data_dir, smtp_server.url)
    received = by_type(smtp_server.received)
    assert "subscription_created" not in received and "free_trial" not in received
    skipped = {key for key in report.skipped if key.startswith(("subscription_created", "free_trial"))}
    assert len(skipped) == 5
    [invoice_mail] = [r for r in received["new_invoice"] if r.message["To"] == "ap@acme.example"]
    assert invoice_mail.message["Subject"] == "Your bill MH-2026-000001"
    assert invoice_mail.message["From"] == "Acme Billing <billing@acme.example>"
    assert invoice_mail.mail_from == "billing@acme.example"
    html = parts(invoice_mail.message)[1]
    assert '<img src="https://acme.example/logo.png" alt="Acme"' in html
    assert "<p>Custom for &lt;script&gt;" in html  # overrides are autoescaped too
    assert "Acme" in parts(invoice_mail.message)[0]  # text part: packaged template, new company name
    # turning a type on later does not send the backlog
    (data_dir / "notifications.yaml").write_text("company_name: Acme\n", encoding="utf-8")
    count = len(smtp_server.received)
    run(data_dir, smtp_server.url)
    assert len(smtp_server.received) == count


def test_invalid_settings_name_the_file_and_field(data_dir):
    data_dir.mkdir(parents=True)
    (data_dir / "notifications.yaml").write_text("enabled: {weekly_digest: true}\nsender: nobody\n", encoding="utf-8")
    with pytest.raises(NotificationConfigError) as raised:
        load_notification_settings(data_dir)
    assert "notifications.yaml: sender:" in str(raised.value)
    assert "notifications.yaml: enabled.weekly_digest" in str(raised.value)


def test_unreachable_smtp_fails_without_the_password_and_is_retried(data_dir, smtp_server):
    build(data_dir)
    from tests.payments.builders import free_port

    closed = f"smtp://mailer:Sup3rSecretPw@127.0.0.1:{free_port()}"
    report = run(data_dir, closed)
    assert report.server_unavailable and "127.0.0.1" in report.server_unavailable
    assert "Sup3rSecretPw" not in report.server_unavailable
    assert len(report.failed) == 1  # the run stops delivering at the first connection failure
    with warehouse.connect(data_dir) as connection:
        details = [row[0] for row in connection.execute("select detail from billing.notifications").fetchall()]
    assert all("Sup3rSecretPw" not in (detail or "") for detail in details)
    run(data_dir, smtp_server.url)
    assert set(statuses(data_dir).values()) == {"sent"}
    assert len(smtp_server.received) == 11


def test_notifications_asset_uses_the_smtp_url_from_the_environment(data_dir, smtp_server, monkeypatch):
    build(data_dir)
    monkeypatch.setenv("METERHOUSE_SMTP_URL", smtp_server.url)
    result = dg.materialize(
        [notifications],
        partition_key="2026-11-01",
        resources={"warehouse": WarehouseResource(data_dir=str(data_dir), as_of=AS_OF.isoformat())},
    )
    [event] = result.get_asset_materialization_events()
    assert event.asset_key == NOTIFICATIONS
    metadata = event.materialization.metadata
    assert metadata["delivered"].value == len(smtp_server.received) == 11
    assert metadata["delivery"].value == "smtp"
    again = dg.materialize(
        [notifications],
        partition_key="2026-11-01",
        resources={"warehouse": WarehouseResource(data_dir=str(data_dir), as_of=AS_OF.isoformat())},
    )
    assert again.get_asset_materialization_events()[0].materialization.metadata["delivered"].value == 0
    assert len(smtp_server.received) == 11


def _without_date(eml: bytes) -> bytes:
    """The Date header is the wall clock when the message was built and the MIME boundaries are
    random (the email package's); everything else comes from the data."""
    eml = re.sub(rb"={15}\d+==", b"(boundary)", eml)
    return b"\n".join(line for line in eml.split(b"\n") if not line.startswith(b"Date: "))


def test_outbox_messages_built_by_worker_processes_are_the_ones_built_here(data_dir, tmp_path, monkeypatch):
    """Past OUTBOX_PARALLEL_FROM messages, spawned workers build the e-mails: the same files and
    rows, in the same order, and a template that fails still fails one notification only."""
    from dagster_project.notifications import send

    build(data_dir)
    overrides = data_dir / "notifications" / "templates"
    overrides.mkdir(parents=True)
    # the "subscription created" subject names a variable it does not have: those notifications fail
    (overrides / "subscription_created.subject.j2").write_text("{{ no_such_variable }}\n", encoding="utf-8")
    pooled_dir = Path(shutil.copytree(data_dir, tmp_path / "pooled"))

    monkeypatch.setattr(send, "OUTBOX_PARALLEL_FROM", 10**6)
    here = run(data_dir)
    monkeypatch.setattr(send, "OUTBOX_PARALLEL_FROM", 1)
    monkeypatch.setattr(send.os, "cpu_count", lambda: 2)
    pooled = run(pooled_dir)

    # four subscriptions with an e-mail address (acme-pro, globex-trial, globex-old, globex-term):
    # their four "created" e-mails fail, the other 7 of the 11 are written
    assert sorted(here.failed) == [f"subscription_created:{subscription}" for subscription in
                                   ("acme-pro", "globex-old", "globex-term", "globex-trial")]
    assert all(reason.startswith("rendering failed: UndefinedError") for reason in here.failed.values())
    assert (here.delivered, here.failed) == (pooled.delivered, pooled.failed) and len(here.delivered) == 7
    files = sorted(path.name for path in (data_dir / "outbox").glob("*.eml"))
    assert files == sorted(path.name for path in (pooled_dir / "outbox").glob("*.eml")) and len(files) == 7
    for name in files:
        assert _without_date((data_dir / "outbox" / name).read_bytes()) == _without_date(
            (pooled_dir / "outbox" / name).read_bytes())

    def recorded(root: Path) -> list[tuple]:
        with warehouse.connect(root) as connection:
            return connection.execute(
                "select notification_key, status, subject, detail is null, message_id, attempts"
                " from billing.notifications order by notification_key").fetchall()

    assert recorded(data_dir) == recorded(pooled_dir)
