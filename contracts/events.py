"""Data contract for one metering event (SPEC §1).

This model is the source of truth for field names, types and bounds. Ingest validates
in SQL for speed (set-based, see ``dagster_project/ingest/validation.py``), and that SQL
is generated from the constants below, so the two cannot drift; a test feeds the same
lines to both and checks they agree.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Provider costs are kept exactly; more decimals than this would be silently cut by a
# DECIMAL column, so such a line is quarantined instead (docs/DECISIONS.md).
COST_SCALE = 10
COST_PRECISION = 20
MAX_TRANSACTION_ID_LENGTH = 128
# Events may arrive with clocks a little ahead; more than this in the future is rejected.
MAX_FUTURE_SKEW_HOURS = 24


class EventType(StrEnum):
    completion = "completion"
    image = "image"
    audio = "audio"
    video = "video"
    tool_call = "tool_call"
    custom = "custom"


AI_EVENT_TYPES = frozenset({EventType.completion, EventType.image, EventType.audio, EventType.video})

TOKEN_FIELDS = (
    "inputTokenCount",
    "outputTokenCount",
    "reasoningTokenCount",
    "cacheReadTokenCount",
    "cacheCreationTokenCount",
)
COST_PART_FIELDS = ("inputTokenCost", "outputTokenCost", "cacheReadTokenCost", "cacheCreationTokenCost")


def _exact_decimal(value: Any) -> Any:
    """Costs arrive as JSON numbers or numeric strings; never let them pass through float."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a decimal number, not a boolean")
    if isinstance(value, int | str):
        try:
            return Decimal(str(value).strip())
        except Exception as exc:  # decimal.InvalidOperation
            raise ValueError("must be a decimal number") from exc
    if isinstance(value, float):
        # json.loads(parse_float=Decimal) is used by the loader; a float here means a caller
        # parsed the line lossy. repr() of a float is its shortest round-trip text.
        return Decimal(repr(value))
    raise ValueError("must be a decimal number")


class Credential(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    value: str = Field(min_length=1)


class Subscriber(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    email: str | None = None
    credential: Credential | None = None


class MeteringEvent(BaseModel):
    """One metered call. Unknown extra fields are kept (extra="allow")."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    transactionId: str | None = Field(default=None, min_length=1, max_length=MAX_TRANSACTION_ID_LENGTH)
    eventType: EventType = EventType.completion
    requestTime: datetime
    responseTime: datetime | None = None
    provider: str | None = None
    model: str | None = None
    inputTokenCount: int = Field(default=0, ge=0)
    outputTokenCount: int = Field(default=0, ge=0)
    reasoningTokenCount: int = Field(default=0, ge=0)
    cacheReadTokenCount: int = Field(default=0, ge=0)
    cacheCreationTokenCount: int = Field(default=0, ge=0)
    totalTokenCount: int | None = Field(default=None, ge=0)
    totalCost: Decimal | None = Field(default=None, ge=0, max_digits=COST_PRECISION, decimal_places=COST_SCALE)
    inputTokenCost: Decimal | None = Field(default=None, ge=0, max_digits=COST_PRECISION, decimal_places=COST_SCALE)
    outputTokenCost: Decimal | None = Field(default=None, ge=0, max_digits=COST_PRECISION, decimal_places=COST_SCALE)
    cacheReadTokenCost: Decimal | None = Field(
        default=None, ge=0, max_digits=COST_PRECISION, decimal_places=COST_SCALE
    )
    cacheCreationTokenCost: Decimal | None = Field(
        default=None, ge=0, max_digits=COST_PRECISION, decimal_places=COST_SCALE
    )
    organizationName: str | None = None
    organizationId: str | None = None
    productName: str | None = None
    productId: str | None = None
    subscriber: Subscriber
    subscriptionId: str | None = None
    units: dict[str, Decimal] | None = None
    payload: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    _exact_costs = field_validator(
        "totalCost", "inputTokenCost", "outputTokenCost", "cacheReadTokenCost", "cacheCreationTokenCost",
        mode="before",
    )(_exact_decimal)

    @field_validator("requestTime", "responseTime")
    @classmethod
    def _needs_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamp needs an offset or Z (RFC 3339)")
        return value

    @field_validator("units")
    @classmethod
    def _units_non_negative(cls, value: dict[str, Decimal] | None) -> dict[str, Decimal] | None:
        for name, amount in (value or {}).items():
            if amount < 0:
                raise ValueError(f"unit {name!r} must be >= 0")
        return value
