"""Fixtures: a real localstripe server on loopback (one per session, emptied before each test)
and a Stripe client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from dagster_project.payments.gateway import StripeGateway
from tests.payments.builders import (
    API_KEY,
    flush_localstripe,
    localstripe,
    work_around_duckdb_timezone_config,
)


@pytest.fixture(autouse=True, scope="session")
def duckdb_timezone_workaround() -> bool:
    return work_around_duckdb_timezone_config()


@pytest.fixture(scope="session")
def localstripe_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with localstripe(tmp_path_factory.mktemp("localstripe")) as base:
        yield base


@pytest.fixture
def stripe_base(localstripe_base: str) -> str:
    flush_localstripe(localstripe_base)
    return localstripe_base


@pytest.fixture
def stripe_client(stripe_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": stripe_base}, max_network_retries=0)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def gateway(stripe_base: str, sleeps: list[float]) -> StripeGateway:
    return StripeGateway.connect(API_KEY, stripe_base, sleep=sleeps.append)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
