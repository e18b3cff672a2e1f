"""Delivery: an SMTP server (``METERHOUSE_SMTP_URL``), else ``.eml`` files in ``<data dir>/outbox/``.

``smtp://[user:password@]host:port`` (add ``?starttls=true`` to upgrade the connection) or
``smtps://...`` (TLS from the start). The URL may carry a password: no message that
leaves this module contains more of it than ``host:port``.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from dagster_project.lib.safe_paths import child
from dagster_project.notifications.render import recipients


class DeliveryError(RuntimeError):
    pass


class ServerUnavailable(DeliveryError):
    """No connection to the SMTP server: the rest of the run's notifications wait for the next run."""


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    tls: bool
    starttls: bool
    username: str | None
    password: str | None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise DeliveryError("METERHOUSE_SMTP_URL must look like smtp://host:port or smtps://host:port")
    query = parse_qs(parts.query)
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError:
        raise DeliveryError("METERHOUSE_SMTP_URL has an invalid port") from None
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "smtps",
        starttls=query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class SmtpDelivery:
    status = "sent"

    def __init__(self, url: str, timeout: float = 30):
        self.target = parse_smtp_url(url)
        self.timeout = timeout
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        try:
            if target.tls:
                connection = smtplib.SMTP_SSL(target.host, target.port, timeout=self.timeout,
                                              context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
                if target.starttls:
                    connection.starttls(context=ssl.create_default_context())
            if target.username:
                connection.login(target.username, target.password or "")
        except (OSError, smtplib.SMTPException) as error:
            raise ServerUnavailable(
                f"SMTP {target.where}: {type(error).__name__}: {_clean(error, target)}"
            ) from None
        return connection

    def deliver(self, message: EmailMessage, name: str) -> str:
        if self._connection is None:
            self._connection = self._connect()
        try:
            refused = self._connection.send_message(message, to_addrs=recipients(message))
        except (OSError, smtplib.SMTPException) as error:
            self.close()
            raise DeliveryError(
                f"SMTP {self.target.where}: {type(error).__name__}: {_clean(error, self.target)}"
            ) from None
        if refused:
            return f"{self.target.where} (refused: {', '.join(sorted(refused))})"
        return self.target.where

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._connection = None


class OutboxDelivery:
    status = "written"

    def __init__(self, outbox: Path):
        self.outbox = outbox

    def deliver(self, message: EmailMessage | bytes, name: str) -> str:
        """Write the message (or its bytes, built by a worker) as ``<key>.eml``."""
        self.outbox.mkdir(parents=True, exist_ok=True)
        path = child(self.outbox, _safe(name), ".eml")
        temporary = path.with_suffix(".eml.tmp")
        temporary.write_bytes(message if isinstance(message, bytes) else message.as_bytes())
        os.replace(temporary, path)
        return str(path)

    def close(self) -> None:
        pass


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:180] or "notification"


def _clean(error: Exception, target: SmtpTarget) -> str:
    text = " ".join(str(error).split())
    for secret in (target.password, target.username):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def open_delivery(data_dir: Path, smtp_url: str | None) -> SmtpDelivery | OutboxDelivery:
    if smtp_url:
        return SmtpDelivery(smtp_url)
    return OutboxDelivery(data_dir / "outbox")
