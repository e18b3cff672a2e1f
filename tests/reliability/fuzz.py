"""Hypothesis budget for the reliability and security suites.

Applied per test (not as a global profile), so other suites keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"


def budget(default: int, thorough: int = 0):
    """Settings for one property: ``default`` examples, or ``thorough`` (10x) under the thorough profile."""
    return settings(
        max_examples=(thorough or default * 10) if THOROUGH else default,
        deadline=None,
        derandomize=not THOROUGH,  # make test is reproducible; the thorough run explores
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )
