"""Reliability suite: hypothesis budget, the `reliability` marker, and shared helpers.

`make test` runs a representative subset in a few minutes. The full kill -9 matrix is marked
``reliability`` and runs only under ``METERHOUSE_RELIABILITY=1`` (``make reliability``).
Hypothesis examples: a modest default; ``HYPOTHESIS_PROFILE=thorough`` runs many more.
"""

from __future__ import annotations

import os

import pytest

FULL_MATRIX_ENV = "METERHOUSE_RELIABILITY"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability: the full fault-injection matrix (make reliability; METERHOUSE_RELIABILITY=1)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(FULL_MATRIX_ENV):
        return
    skip = pytest.mark.skip(reason=f"full fault matrix: set {FULL_MATRIX_ENV}=1 or run `make reliability`")
    for item in items:
        if item.get_closest_marker("reliability") is not None:
            item.add_marker(skip)
