"""Render a notification to an e-mail: subject, plain text and autoescaped HTML.

Templates per type: ``<type>.subject.j2``, ``<type>.txt.j2`` and ``<type>.html.j2`` (the HTML
ones extend ``_layout.html.j2``). A file of the same name in
``<data dir>/notifications/templates/`` wins over the packaged one. Only ``.html.j2``
templates are autoescaped: customer-supplied strings (names, subscription names) can never
inject markup into the HTML part; the subject is flattened to one line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined

from dagster_project.notifications.config import NotificationSettings
from dagster_project.notifications.events import Notification


def _autoescape(name: str | None) -> bool:
    return bool(name) and (name.endswith(".html.j2") or name.endswith(".html"))


def environment(override_dir=None) -> Environment:
    loaders = []
    if override_dir is not None and override_dir.is_dir():
        loaders.append(FileSystemLoader(str(override_dir)))
    loaders.append(PackageLoader("dagster_project.notifications", "templates"))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=_autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["date"] = lambda moment: moment.strftime("%Y-%m-%d") if moment else ""
    env.filters["instant"] = lambda moment: moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""
    return env


def render(env: Environment, notification: Notification, settings: NotificationSettings) -> tuple[str, str, str]:
    context = {
        **notification.context,
        "company": {"name": settings.company_name, "logo_url": settings.logo_url,
                    "support_email": settings.support_email},
        "type": notification.type.value,
    }
    name = notification.type.value
    subject = " ".join(env.get_template(f"{name}.subject.j2").render(context).split())
    text = env.get_template(f"{name}.txt.j2").render(context)
    html = env.get_template(f"{name}.html.j2").render({**context, "subject": subject})
    return subject, text, html


def message_id(notification_key: str, sender: str) -> str:
    """Deterministic, so a message resent after a crash can be recognised as the same one."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "meterhouse.invalid"
    return f"<{hashlib.sha256(notification_key.encode()).hexdigest()[:32]}@{domain}>"


def _date_header(sent_at: datetime | None) -> str:
    """RFC 5322 date of ``sent_at`` (naive means UTC, as everywhere in the warehouse), else now."""
    if sent_at is None:
        return format_datetime(datetime.now(UTC))
    return format_datetime(sent_at.replace(tzinfo=UTC) if sent_at.tzinfo is None else sent_at.astimezone(UTC))


def build_message(
    notification: Notification, settings: NotificationSettings, subject: str, text: str, html: str,
    sent_at: datetime | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = notification.recipient
    if notification.cc:
        message["Cc"] = ", ".join(notification.cc)
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Subject"] = subject
    message["Message-ID"] = message_id(notification.key, settings.sender)
    message["Date"] = _date_header(sent_at)
    message["X-Meterhouse-Notification"] = notification.type.value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for path in notification.attachments:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        main, _, sub = kind.partition("/")
        message.add_attachment(path.read_bytes(), maintype=main, subtype=sub, filename=path.name)
    return message


# The outbox's e-mails are written by ``message_bytes``: the same MIME structure as
# ``build_message`` (multipart/alternative text and HTML, in multipart/mixed with the attachments),
# assembled as text. The email package's policy machinery (header parsing and folding, content
# managers, the generator) was ~90 % of an e-mail's cost: 3.0 ms for an invoice e-mail with its PDF
# against 0.2 ms for rendering its templates. Headers are written as they are only when they are
# plain (printable ASCII; addresses of a conservative shape; unstructured text folded at spaces);
# anything else (non-ASCII names or subjects, quoted display names, long address lists) goes
# through ``build_message`` whole, so such messages are exactly what the email package makes.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")
_PLAIN_NAMED_ADDRESS = re.compile(r"[A-Za-z0-9 -]+ <[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+>")
_PLAIN_TEXT = re.compile(r"[ -~]*")  # printable ASCII: no CR, LF or other control characters
_PLAIN_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,60}")
_ADDRESS_HEADERS = ("From", "To", "Cc", "Reply-To")
_MAX_LINE = 78


def _fold(name: str, value: str) -> str | None:
    """``Name: value`` as header lines of at most 78 characters, folded at spaces; None when the
    value is not plain (it then needs the email package's encoding rules)."""
    if not _PLAIN_TEXT.fullmatch(value) or value != value.strip() or "  " in value or "=?" in value:
        return None  # "=?" would read as an RFC 2047 encoded word
    if name in _ADDRESS_HEADERS:
        addresses = value.split(", ")
        if not all(_PLAIN_ADDRESS.fullmatch(a) or _PLAIN_NAMED_ADDRESS.fullmatch(a) for a in addresses):
            return None
        return f"{name}: {value}\n" if len(name) + 2 + len(value) <= _MAX_LINE else None
    lines, line = [], f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > _MAX_LINE and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return None if any(len(part) > _MAX_LINE for part in lines) else "\n".join(lines) + "\n"


def _text_part(content: str, subtype: str) -> tuple[str, bytes]:
    """(headers, body) of a UTF-8 text part: 7bit when it is ASCII in short lines (as the email
    package decides), else quoted-printable; line ends normalised to LF, one at the end."""
    body = b"\n".join(content.encode("utf-8").splitlines()) + b"\n"
    if body.isascii() and max(map(len, body.splitlines()), default=0) <= _MAX_LINE:
        encoding = "7bit"
    else:
        body, encoding = binascii.b2a_qp(body, istext=True), "quoted-printable"
    return f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: {encoding}\n', body


def message_bytes(
    notification: Notification, settings: NotificationSettings, subject: str, text: str, html: str,
    sent_at: datetime | None = None,
) -> bytes:
    """The message as the bytes of its ``.eml`` file (LF line ends, as ``EmailMessage.as_bytes``)."""
    identifier = message_id(notification.key, settings.sender)
    headers = [("From", settings.sender), ("To", notification.recipient or "")]
    if notification.cc:
        headers.append(("Cc", ", ".join(notification.cc)))
    if settings.reply_to:
        headers.append(("Reply-To", settings.reply_to))
    headers += [("Subject", subject), ("Message-ID", identifier),
                ("Date", _date_header(sent_at)),
                ("X-Meterhouse-Notification", notification.type.value)]
    folded = [_fold(name, value) for name, value in headers]
    attachments = [(path.name, mimetypes.guess_type(path.name)[0] or "application/octet-stream")
                   for path in notification.attachments]
    if None in folded or not notification.recipient or not all(
            _PLAIN_FILENAME.fullmatch(name) for name, _ in attachments):
        return build_message(notification, settings, subject, text, html, sent_at).as_bytes()

    parts = [_text_part(text, "plain"), _text_part(html, "html")]
    blobs = [base64.encodebytes(path.read_bytes()) for path in notification.attachments]
    # boundaries from the Message-ID, so a message built again is the same bytes; never in a body
    seed = hashlib.sha256(identifier.encode()).hexdigest()
    salt = 0
    while True:
        outer, inner = (f"=_mh_{name}_{seed[:24]}_{salt}" for name in ("mixed", "alternative"))
        if not any(outer.encode() in body or inner.encode() in body for _, body in parts):
            break
        salt += 1
    alternative = [f'Content-Type: multipart/alternative;\n boundary="{inner}"\n\n'.encode()]
    for part_headers, body in parts:
        alternative += [f"--{inner}\n{part_headers}\n".encode(), body, b"\n"]
    alternative.append(f"--{inner}--\n".encode())
    out = ["".join(folded).encode(), b"MIME-Version: 1.0\n"]
    if not attachments:
        out += alternative
        return b"".join(out)
    out += [f'Content-Type: multipart/mixed;\n boundary="{outer}"\n\n--{outer}\n'.encode(), *alternative]
    for (name, kind), blob in zip(attachments, blobs, strict=True):
        out += [f'\n--{outer}\nContent-Type: {kind}\nContent-Transfer-Encoding: base64\n'
                f'Content-Disposition: attachment; filename="{name}"\n\n'.encode(), blob]
    out.append(f"\n--{outer}--\n".encode())
    return b"".join(out)


def recipients(message: EmailMessage) -> list[str]:
    return [address for _, address in getaddresses(message.get_all("To", []) + message.get_all("Cc", [])) if address]
