"""``<data dir>/notifications.yaml``: sender, logo, which notification types are on.

Every type is on unless the file turns it off::

    sender: "Acme Billing <billing@acme.example>"
    reply_to: accounts@acme.example
    company_name: Acme
    logo_url: https://acme.example/logo.png
    enabled:
      quota_warning: false
    notify_events_since: 2026-10-01T00:00:00Z   # older events are never notified

Templates are overridden by files of the same name in ``<data dir>/notifications/templates/``
(see ``dagster_project/notifications/templates/`` for the names and the context they get).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dagster_project.lib.periods import as_utc_naive


class NotificationType(StrEnum):
    new_invoice = "new_invoice"
    subscription_created = "subscription_created"
    subscription_canceled = "subscription_canceled"
    subscription_expiration = "subscription_expiration"
    free_trial = "free_trial"
    quota_warning = "quota_warning"
    quota_tier_warning = "quota_tier_warning"
    successful_payment = "successful_payment"
    payment_failed = "payment_failed"


ADDRESS_PATTERN = r"^[^@\s<>]+@[^@\s<>]+$"


class NotificationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sender: str = Field(default="Meterhouse Billing <billing@meterhouse.example>", min_length=3, max_length=300)
    reply_to: str | None = Field(default=None, pattern=ADDRESS_PATTERN)
    company_name: str = Field(default="Meterhouse", min_length=1, max_length=200)
    logo_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    support_email: str | None = Field(default=None, pattern=ADDRESS_PATTERN)
    enabled: dict[NotificationType, bool] = Field(default_factory=dict)
    notify_events_since: datetime | None = None

    @field_validator("sender")
    @classmethod
    def _one_line_with_address(cls, value: str) -> str:
        if "\n" in value or "\r" in value or "@" not in value:
            raise ValueError("must be one line holding an e-mail address, e.g. 'Billing <billing@example.com>'")
        return value

    @field_validator("notify_events_since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamp needs an offset or Z")
        return as_utc_naive(value) if value is not None else None

    def is_enabled(self, notification_type: NotificationType | str) -> bool:
        return self.enabled.get(NotificationType(notification_type), True)


class NotificationConfigError(ValueError):
    pass


def settings_path(data_dir: Path) -> Path:
    return data_dir / "notifications.yaml"


def templates_override_dir(data_dir: Path) -> Path:
    return data_dir / "notifications" / "templates"


def load_notification_settings(data_dir: Path) -> NotificationSettings:
    path = settings_path(data_dir)
    if not path.exists():
        return NotificationSettings()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise NotificationConfigError(f"{path.name}: invalid YAML: {error}") from None
    if not isinstance(document, dict):
        raise NotificationConfigError(f"{path.name}: (top level): must be a mapping")
    try:
        return NotificationSettings.model_validate(document)
    except ValidationError as error:
        problems = [
            f"{path.name}: {'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
            for item in error.errors()
        ]
        raise NotificationConfigError("; ".join(problems)) from None
