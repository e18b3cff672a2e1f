"""Dagster resources shared by every domain."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb

from dagster_project import settings, warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The data directory and its DuckDB warehouse, plus the run's ``as_of`` clock.

    ``as_of`` is empty in production (the wall clock at the start of each step); the CLI and
    tests set it so that which periods are closed is reproducible.
    """

    data_dir: str
    as_of: str = ""

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def clock(self) -> datetime:
        return settings.as_of(self.as_of or None)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.root, read_only=read_only) as connection:
            yield connection
