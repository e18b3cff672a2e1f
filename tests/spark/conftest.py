"""The Spark parity suite: registers its marker (pyproject.toml's list is the lead's to edit)."""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "spark: runs the dbt models on Apache Spark (pyspark + Java 17); part of `make test`"
    )
