"""The Dagster instance of a data dir: default SQLite storage, with an event log that keeps its
connections open.

Dagster's ``SqliteEventLogStorage`` creates an engine, opens a connection, commits with an fsync
and disposes of it for every event, up to three times for an asset event. A billing run stores
about a thousand events (each dbt model and test is one or more), which cost ~10 s of a small
run (docs/performance.md). :class:`FastSqliteEventLogStorage` is the same storage, same files
and schema, with one engine per shard kept for the life of the instance, ``synchronous=off``,
and a table of the index remembered once found (Dagster asks SQLite again for every asset
event). The event log is run history, not billing data (the ledger is DuckDB, with its own
write-ahead log), and ``synchronous=off`` loses nothing when a process is killed, only on an
operating-system crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

# the same wait Dagster gives a locked SQLite file (another process writing the index shard)
BUSY_TIMEOUT_SECONDS = 15


class FastSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with a kept engine per shard and no fsync per event."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: dict[str, Engine] = {}
        self._tables_found: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> FastSqliteEventLogStorage:
        # the parent's names its own class, not cls
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            # one connection per shard, used under the storage's own lock from any thread
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _without_fsync)
            self._engines[shard] = engine
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # Dagster's opens a new engine on the index file for every answer, and asks again for
        # every asset and check event (~250 times, ~0.7 s, in a small billing run); migrations
        # only ever add tables, so a table once found is not asked about again
        if table_name in self._tables_found:
            return True
        found = super().has_table(table_name)
        if found:
            self._tables_found.add(table_name)
        return found

    def _dispose_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
            self._tables_found.clear()

    def delete_events(self, run_id: str) -> None:
        # the run's shard file is removed: a kept connection must not write to the unlinked file
        self._dispose_engines()
        super().delete_events(run_id)

    def wipe(self) -> None:
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()


def _without_fsync(dbapi_connection, _record) -> None:
    dbapi_connection.execute("pragma synchronous=off")


def write_instance_config(home: Path) -> None:
    """``<home>/dagster.yaml``: Dagster's default SQLite layout under ``home``, with the event log
    above. ``meterhouse ui`` reads the same file, so the UI shows every billing run."""
    home.mkdir(parents=True, exist_ok=True)
    history = home / "history"
    storages = {
        "run_storage": ("dagster._core.storage.runs", "SqliteRunStorage", history),
        "event_log_storage": (__name__, FastSqliteEventLogStorage.__name__, history / "runs"),
        "schedule_storage": ("dagster._core.storage.schedules", "SqliteScheduleStorage", home / "schedules"),
    }
    config = "# written by Meterhouse (dagster_project/lib/event_log.py)\n" + yaml.safe_dump({
        **{key: {"module": module, "class": name, "config": {"base_dir": str(base_dir)}}
           for key, (module, name, base_dir) in storages.items()},
        # a billing warehouse does not report usage anywhere (and often has no way out)
        "telemetry": {"enabled": False},
    }, sort_keys=False)
    path = home / "dagster.yaml"
    if not path.exists() or path.read_text(encoding="utf-8") != config:
        path.write_text(config, encoding="utf-8")
