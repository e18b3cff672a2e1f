"""Render a notification to an e-mail: subject, plain text and autoescaped HTML.

Templates per type: ``<type>.subject.j2``, ``<type>.txt.j2`` and ``<type>.html.j2`` (the HTML
ones extend ``_layout.html.j2``). A file of the same name in
``<data dir>/notifications/templates/`` wins over the packaged one. Only ``.html.j2``
templates are autoescaped: customer-supplied strings (names, subscription names) can never
inject markup into the HTML part; the subject is flattened to one line.
"""

from __future__ import annotations

import hashlib
import mimetypes
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr

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
    message["Date"] = formatdate(sent_at.timestamp() if sent_at else None, usegmt=True)
    message["X-Meterhouse-Notification"] = notification.type.value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for path in notification.attachments:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        main, _, sub = kind.partition("/")
        message.add_attachment(path.read_bytes(), maintype=main, subtype=sub, filename=path.name)
    return message


def recipients(message: EmailMessage) -> list[str]:
    return [address for _, address in getaddresses(message.get_all("To", []) + message.get_all("Cc", [])) if address]
