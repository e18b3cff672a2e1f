"""The outbox's e-mails are assembled as text (``render.message_bytes``): they must read back as
the same message the email package builds (``render.build_message``), header by header and part
by part, and anything that is not plain must go through the email package itself."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from dagster_project.notifications.config import NotificationSettings, NotificationType
from dagster_project.notifications.events import Notification
from dagster_project.notifications.render import build_message, message_bytes

SENT_AT = datetime(2026, 11, 2, 9, 30)  # naive UTC, as the sender passes it
TEXT = "Hello ap@acme.example,\n\nInvoice:      MH-2026-000001\nTotal:        199.00 USD\n\n-- \nMeterhouse\n"
HTML = '<!DOCTYPE html>\n<html lang="en"><body><p style="margin:0">Invoice <b>MH-2026-000001</b></p></body></html>\n'


def notification(tmp_path: Path | None = None, **changes) -> Notification:
    fields = dict(key="new_invoice:MH-2026-000001", type=NotificationType.new_invoice, event_at=None,
                  recipient="ap@acme.example", context={})
    fields.update(changes)
    return Notification(**fields)


def parsed(eml: bytes):
    return message_from_bytes(eml, policy=policy.default)


def shape(message) -> list:
    """Everything a mail client shows: headers (decoded), the part tree, decoded contents, names."""
    found: list = [(name, str(value)) for name, value in message.items() if name != "Content-Type"]
    for part in message.walk():
        if part.is_multipart():
            found.append(("multipart", part.get_content_type()))
        else:
            found.append((part.get_content_type(), part.get_content_charset(), part.get_filename(),
                          part.get_content()))
    return found


def both(item: Notification, settings: NotificationSettings, subject: str, text: str = TEXT, html: str = HTML):
    fast = message_bytes(item, settings, subject, text, html, sent_at=SENT_AT)
    slow = build_message(item, settings, subject, text, html, sent_at=SENT_AT).as_bytes()
    return fast, slow


def test_a_plain_invoice_email_reads_back_as_the_email_packages_with_its_attachments(tmp_path):
    pdf = tmp_path / "MH-2026-000001.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    html_copy = tmp_path / "MH-2026-000001.html"
    html_copy.write_text("<html>invoice</html>", encoding="utf-8")
    item = notification(cc=["finance@acme.example", "Acme AP <ap2@acme.example>"], attachments=[pdf, html_copy])
    settings = NotificationSettings(reply_to="accounts@meterhouse.example")
    fast, slow = both(item, settings, "Invoice MH-2026-000001 from Meterhouse: 199.00 USD")

    assert shape(parsed(fast)) == shape(parsed(slow))
    message = parsed(fast)
    assert message["Date"] == "Mon, 02 Nov 2026 09:30:00 +0000"
    assert message["Cc"] == "finance@acme.example, Acme AP <ap2@acme.example>"
    [first, second] = list(message.iter_attachments())
    assert (first.get_filename(), first.get_content_type()) == ("MH-2026-000001.pdf", "application/pdf")
    assert first.get_content() == pdf.read_bytes()
    assert second.get_content_type() == "text/html" and second.get_content() == "<html>invoice</html>"
    assert message.get_body(("plain",)).get_content() == TEXT
    # assembled here, not by the email package; headers written as they are
    assert b'boundary="=_mh_' in fast
    assert fast.startswith(b"From: Meterhouse Billing <billing@meterhouse.example>\nTo: ap@acme.example\nCc: ")
    # built again from the same inputs: the same bytes (boundaries come from the Message-ID)
    assert message_bytes(item, settings, "Invoice MH-2026-000001 from Meterhouse: 199.00 USD", TEXT, HTML,
                         sent_at=SENT_AT) == fast


def test_without_attachments_the_message_is_the_alternative_alone():
    fast, slow = both(notification(), NotificationSettings(), "Welcome to DocSum Pro")
    assert parsed(fast).get_content_type() == "multipart/alternative"
    assert shape(parsed(fast)) == shape(parsed(slow))


def test_a_long_subject_is_folded_at_spaces_into_lines_of_78():
    subject = ("80% of First 1,000 used for Summaries on subscription acme-docsum-production-eu-west "
               "(DocSum Pro) in the period 2026-11-01 to 2026-12-01")
    fast, slow = both(notification(), NotificationSettings(), subject)
    assert parsed(fast)["Subject"] == subject == parsed(slow)["Subject"]
    head = fast.split(b"\n\n", 1)[0]
    assert max(len(line) for line in head.split(b"\n")) <= 78
    assert b"\n 2026-12-01" in head or b"\n (DocSum" in head or b"\n in" in head  # really folded


def test_text_that_is_not_ascii_or_has_long_lines_is_quoted_printable():
    text = "Total: 199.00 € — thank you\n" + "x" * 120 + "\n"
    fast, slow = both(notification(), NotificationSettings(), "Invoice", text=text)
    assert b"Content-Transfer-Encoding: quoted-printable" in fast.split(b"--", 3)[2]
    assert parsed(fast).get_body(("plain",)).get_content() == text == parsed(slow).get_body(("plain",)).get_content()
    assert max(len(line) for line in fast.split(b"\n")) <= 78


@pytest.mark.parametrize(("field", "value"), [
    ("subject", "Rechnung für Müller GmbH"),            # non-ASCII: an RFC 2047 encoded word
    ("subject", "Price =?utf-8?q?x?= list"),            # reads as an encoded word unless encoded
    ("sender", "Acme, Inc. <billing@acme.example>"),    # a display name that needs quotes
    ("sender", "Zoë Billing <billing@acme.example>"),
    ("cc", [f"a-very-long-address-list-entry-{n}@customers.example" for n in range(3)]),
])
def test_headers_that_are_not_plain_go_through_the_email_package(field, value):
    subject = value if field == "subject" else "Invoice"
    settings = NotificationSettings(sender=value) if field == "sender" else NotificationSettings()
    item = notification(cc=value) if field == "cc" else notification()
    fast, slow = both(item, settings, subject)
    boundary = re.compile(rb"={15}\d+==")
    assert boundary.search(fast), "expected the email package's own message"
    assert boundary.sub(b"-", fast) == boundary.sub(b"-", slow)
    assert shape(parsed(fast)) == shape(parsed(slow))


def test_a_body_holding_the_boundary_gets_another_one():
    first = message_bytes(notification(), NotificationSettings(), "Invoice", TEXT, HTML, sent_at=SENT_AT)
    boundary = re.search(rb'boundary="([^"]+)"', first).group(1).decode()
    text = f"--{boundary}\nContent-Type: text/plain\n\nforged part\n"
    again = message_bytes(notification(), NotificationSettings(), "Invoice", text, HTML, sent_at=SENT_AT)
    assert f'boundary="{boundary}"'.encode() not in again
    message = parsed(again)
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/alternative", "text/plain", "text/html"]
    assert message.get_body(("plain",)).get_content() == text


def test_a_header_with_a_line_break_is_refused_like_the_email_package_refuses_it():
    item = notification(recipient="ap@acme.example\nBcc: victim@example.com")
    with pytest.raises(ValueError) as fast_error:
        message_bytes(item, NotificationSettings(), "Invoice", TEXT, HTML, sent_at=SENT_AT)
    with pytest.raises(ValueError) as slow_error:
        build_message(item, NotificationSettings(), "Invoice", TEXT, HTML, sent_at=SENT_AT)
    assert str(fast_error.value) == str(slow_error.value)


def test_attachment_bytes_are_base64_in_lines_of_76(tmp_path):
    blob = tmp_path / "MH-2026-000009.pdf"
    blob.write_bytes(bytes(range(256)) * 3)
    eml = message_bytes(notification(attachments=[blob]), NotificationSettings(), "Invoice", TEXT, HTML,
                        sent_at=SENT_AT)
    encoded = base64.encodebytes(blob.read_bytes())
    assert encoded in eml and max(len(line) for line in encoded.split(b"\n")) == 76
