"""Load new metering files from ``landing/events/`` into ``raw.*`` (SPEC §1, §1.1, §1.2).

``load_new_files(connection, data_dir, as_of)`` finds every ``landing/events/**/*.jsonl`` and
``*.jsonl.gz`` under the data directory, in order of relative path, and loads the ones not loaded
before. Plain Python + DuckDB, no Dagster: the asset in ``assets.py`` calls it.

Decisions (SPEC-visible behaviour is in SPEC §1; these fill in the rest):

Files
  * A file is identified by (path relative to the data dir, '/'-separated; sha256 of its bytes as
    stored, i.e. of the compressed bytes for .gz). A (path, sha256) already in
    ``raw.loaded_files`` is skipped; a changed file (new hash) or a copy under a new path is
    loaded again, and its old lines then become duplicates. A file whose size matches a loaded
    version is hashed again unless it has not changed since the load that read it: its mtime and
    ctime are older than that load's start (``loaded_at``) by ``UNCHANGED_MARGIN``; then it is
    that content and is skipped unread. A file hashed again and found unchanged records that
    load's start (``verified_at``), so a file that arrived just before the load that read it is
    hashed again once, not at every load. Any write to a file moves its ctime (which no tool can set
    back), so a changed file is always read again; history is not re-read on every run. (This
    trusts the file system's clock to within the margin, e.g. an NFS server's.) A new size is
    known new.
  * A file that cannot be read (truncated or corrupt gzip, I/O error) is not a crash: it is
    recorded in ``raw.loaded_files`` and gets one ``raw.rejected_events`` row with line_number 0,
    no raw text and reason ``unreadable_file: <error>``; none of its lines are loaded (a partial
    upload will arrive again, complete, with a new hash). It counts as one line read, rejected.

Lines
  * Lines are split on LF; a CR before it is stripped (CRLF files, so a CRLF and an LF
    copy of a line are identical); a UTF-8 BOM at the start of the file is stripped. A trailing
    newline does not start another line; a last line without one is a line.
  * Line numbers are physical, 1-based, so they match an editor.
  * A line that is empty or holds only spaces/tabs/CRs is not an event: it is neither counted
    as read nor rejected (JSON treats that whitespace as insignificant; editors add such lines).
    Other lines are stored as they are (``raw`` of a rejected line, ``attributes_json`` of an
    event: the exact text, so numbers are never re-printed through a float).
  * A line that is not valid UTF-8 is rejected ``invalid_utf8`` (its raw text is stored with
    replacement characters).
  * Per file: ``lines_read = accepted + duplicates + rejected``.

Validation (``validation.py``): set-based DuckDB SQL generated from the pydantic contract; one
reason per line (``"<code>: <message>"``) and the dotted field it is about. A fast path
(``validation.fast_sql``) vouches for the plain, clean line with one cheap conjunction per field;
only the lines it cannot vouch for (bad ones, and valid but unusual forms) go through the full
CASE over every check (``validation_sql``). A test checks that both give the same rows.

Identity and duplicates
  * ``transaction_id`` is ``transactionId``; when absent it is the sha256 of the line's canonical
    JSON: keys sorted recursively, no whitespace, numbers normalised exactly (``1.50`` and ``1.5``
    are the same, through ``Decimal``, never a float). That is computed in Python for such lines
    only, so reloading or reformatting an id-less line keeps it one event.
  * A repeat of a transactionId is a duplicate (``raw.duplicate_events``) when its payload is the
    first one's, else it is quarantined as ``duplicate_conflict`` naming where the first one came
    from. Lines with a ``transactionId`` compare their text as sent (without the line end, i.e.
    ``attributes_json``) with the first one's; id-less lines compare their canonical JSON's
    sha256, which ``payload_sha256`` keeps for them (it is null for lines with an id: hashing every
    line cost ~1.3 CPU-s and storing the hash ~27 % of the warehouse per 1 M lines, to serve the
    few repeats). Warehouses from before keep the hashes they stored for lines with an id; a
    repeat compares hashes only when both sides have one, else texts. So a byte-identical
    re-send is a duplicate; a re-send with the same id but re-formatted text is a conflict
    (visible, never billed twice, never silently dropped).
  * The first accepted line with an id wins: across loads (raw.events is never rewritten), and
    within a load by file order then line number. Each batch looks its ids up in raw.events with
    one hash join, built on the batch's ids and probed with raw.events' ``transaction_id_hash``
    column alone (63 bits of the id's md5: 8 bytes a row to read instead of the id text); the rows
    it finds are fetched by row id and matched by the id itself, so a hash collision is harmless
    (earlier blocks of a big file's transaction are in raw.events already, with transaction-local
    row ids). Rows without a hash (older warehouses) get it at the start of the next load. raw.events has no primary key: at
    scale the key cost more than all the rest of the load (DuckDB's index on random ids, written
    again at every checkpoint and held in memory: a 10 M-row load 5x slower, one more day into it
    6x slower than this join; docs/performance.md). ``INSERT ... ON CONFLICT`` would need the key
    and runs as a MERGE scanning raw.events anyway. Uniqueness is checked again where it matters,
    before invoices are released: a data test on ``stg_raw__events.transaction_id``.

Transactions and batches
  * Small files are grouped into batches of about ``BATCH_BYTES``; a file larger than that is a
    batch of its own, read in blocks (bounded memory). Each batch (events, rejects, duplicates
    and the ``raw.loaded_files`` rows) is one transaction, so a crash leaves every file either
    fully loaded or not at all. The connection must not be inside a transaction already.
  * Batches and blocks ("units") are validated on a second connection to the same database (a
    cursor), in one background thread, while this connection writes the unit before it and
    reads the one after it; they are written in file order. Batches, blocks and files form one
    stream, so the validating thread is not left waiting at a big file's start or end: a file
    larger than a block on disk is known to be a big one before it is read (its first block is
    validated while the second is read; a gzip file smaller than a block on disk holds its first
    block until a second one shows), and a big file's end takes no place among the units read
    ahead. The first batch is a quarter of ``BATCH_BYTES``, so that the overlap starts early.
  * ``loaded_at``/``rejected_at`` are the wall clock (UTC); ``as_of`` only decides what is "in
    the future" (``requestTime > as_of + MAX_FUTURE_SKEW_HOURS``). Timestamps never depend on the
    session TimeZone of the connection.

Speed (measured 2026-11-27 on 2 vCPUs shared with other work, load_new_files alone into a fresh
on-disk warehouse, 1 M generated events = 1,001,000 lines, 530 MB in 31 files): 12-14 s, ~75 K
lines/s, plus ~1.6 s for the checkpoint when the warehouse closes. Per 1 M lines, about 12 CPU-s
validating (half of it the JSON parse: json_valid, json_type over the contract's 33 paths,
from_json; then the fast predicate, timestamps and output columns), 2 s hashing lines (hashlib:
about half the CPU of DuckDB's sha256; not done since 2026-11-29), the single-threaded insert into
raw.events and ~1 s committing; reading and splitting files is vectorised (numpy) and costs ~1 s.
Validation and inserting overlap (two threads). ``attributes_json`` (the raw text) is compressed
with zstd: DuckDB's default string compression made the checkpoint twice as long (3.3 s vs 1.6 s
at 1 M). The load is CPU-bound (~18-20 CPU-s per 1 M lines on two cores): the raw text is not
copied through the validation's temp table and back (it stays in the batch's arrow table and is
put back by position), and the write uses left joins, not NOT EXISTS (DuckDB copies a NOT EXISTS's
outer rows to decorrelate it); together ~40 % fewer page faults, 1 M lines in 9-13 s instead of
12-14 s (2026-11-28, docs/performance.md). 20 M events (20,020,000 lines, 11 GB) with a 2 GB
DuckDB limit: 306 s with the checkpoint (325 s before that change), and 228 s once the lookup of
earlier ids read only the id column (it read each row's hash and file too: 0.9-2.2 s a batch at 20
M rows instead of 0.37 s), peak RSS 2.9 GB; one more day (666,666 events) into those 20 M 9.8 s vs
9.3 s into an empty warehouse (with the primary key: a 10 M-row table took 5x longer to fill, and
the checkpoint rewrote the whole key index, 2.8 s at 1 M events vs 0.2 s empty). Since 2026-11-28
evening: no row-group vacuum at checkpoints (warehouse.py: it rewrote every newly loaded row, 12 s
after 5 M lines) and units validated ahead across file boundaries: 20 M lines in 209 s. Since
2026-11-29: no sha256 of every line (lines with an id are compared by text on a repeat) and big
files known by their size, measured side by side with the code before: 20 M lines 268 -> 208 ->
176 s, peak RSS 2.9 -> 2.2 -> 2.5 GB. The floor for any load that stores the typed columns and the
raw text in DuckDB on two cores is ~2.7 s per 1 M lines (13.6 s for 5 M; docs/performance.md,
"Where the floor is").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dagster_project.ingest import validation
from dagster_project.lib import arrow_arrays
from dagster_project.lib.faults import fault_point
from dagster_project.warehouse import ensure_schema

EVENTS_DIR = Path("landing") / "events"
# Decompressed bytes read and validated at once; also the target size of a batch of small files.
BLOCK_BYTES = 128 * 1024 * 1024
BATCH_BYTES = BLOCK_BYTES
ARROW_BATCH_ROWS = 16_384
_TEMP_TABLES = ("_mh_files", "_mh_prior", "_mh_repeats")
_STAGER_TEMP_TABLES = ("_mh_checked", "_mh_slow")
_SEQ_SHIFT = 40  # seq = file_order << 40 | line_number: order of lines within a batch
_BOM = b"\xef\xbb\xbf"
# A loaded file whose mtime and ctime are older than the start of the load that read it, by this
# margin (timestamp granularity, clock skew), is that same content: it is not read again.
UNCHANGED_MARGIN = timedelta(seconds=2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_EVENT_COLUMNS = (
    "transaction_id", "payload_sha256", "event_type", "request_time", "response_time", "provider", "model",
    "input_tokens", "output_tokens", "reasoning_tokens", "cache_read_tokens", "cache_creation_tokens",
    "total_tokens", "reported_cost_usd", "organization_id", "organization_name", "product_id", "product_name",
    "subscriber_id", "subscriber_email", "credential_name", "credential_value", "subscription_id", "units_json",
    "attributes_json", "transaction_id_hash",
)
# raw.events.transaction_id_hash: 63 bits of the id's md5 (a fixed function: the column is kept), what
# each batch probes raw.events with, instead of the id text
_ID_HASH = "(md5_number_lower(transaction_id) >> 1)::bigint"


@dataclass
class FileReport:
    source_file: str
    size_bytes: int
    content_sha256: str
    status: str  # loaded | skipped | unreadable
    lines_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None


@dataclass
class LoadReport:
    load_id: str
    files_loaded: int = 0  # includes unreadable files, which are recorded as loaded
    files_skipped: int = 0
    files_unreadable: int = 0
    lines_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    files: list[FileReport] = field(default_factory=list)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.lines_read / self.seconds if self.seconds else 0.0


class _Unreadable(Exception):
    pass


class _HashingReader:
    """File wrapper that hashes and counts every byte read through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _utc_naive(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def find_event_files(data_dir: Path) -> list[tuple[str, Path]]:
    """(relative posix path, absolute path) of every landing file, ordered by relative path."""
    root = data_dir / EVENTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.rglob("*"):
        if path.is_file() and (path.name.endswith(".jsonl") or path.name.endswith(".jsonl.gz")):
            found.append((path.relative_to(data_dir).as_posix(), path))
    return sorted(found)


def _unchanged_since(stat: os.stat_result, loaded_at: datetime) -> bool:
    """True when the file (content or metadata: mtime, ctime) last changed before ``loaded_at``
    (naive UTC, the start of the load that read it), by ``UNCHANGED_MARGIN``."""
    limit = loaded_at.replace(tzinfo=UTC) - UNCHANGED_MARGIN
    limit_ns = (limit - _EPOCH) // timedelta(microseconds=1) * 1000
    return max(stat.st_mtime_ns, stat.st_ctime_ns) < limit_ns


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _read_blocks(path: Path, reader: _HashingReader, block_bytes: int) -> Iterator[bytes]:
    """Decompressed content in blocks that end at a newline (the last one may not)."""
    try:
        stream: Any = gzip.GzipFile(fileobj=reader, mode="rb") if path.name.endswith(".gz") else reader
        carry = b""
        while True:
            data = stream.read(block_bytes)
            if not data:
                break
            if carry:
                data = carry + data
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1:]
            data = data[: cut + 1]  # rebound, not copied beside it: the block held while suspended is the one yielded
            yield data
        if carry:
            yield carry
        reader.drain()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        message = str(exc) or type(exc).__name__
        if isinstance(exc, EOFError):
            message = f"truncated gzip file ({message})"
        raise _Unreadable(message) from exc


def _newlines(data: np.ndarray) -> np.ndarray:
    """Positions of LF bytes; in 1 MiB steps, which keeps numpy's temporaries in the CPU cache."""
    step = 1 << 20
    parts = [np.flatnonzero(data[offset: offset + step] == 10) + offset for offset in range(0, len(data), step)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _lines_table(block: bytes, file_order: int, first_line: int, first_block: bool) -> tuple[pa.Table, int]:
    """Arrow table (file_order, line_number, raw, blank, pre_reason) of one block; and its line count.

    Vectorised (no Python loop per line): CRLF becomes LF, numpy finds the LFs, ``bytes.replace``
    drops them, and arrow gets the remaining bytes with the line offsets. Only lines that are
    empty or start with whitespace are looked at one by one (to flag blank ones), and only a
    block with invalid UTF-8 is decoded line by line.
    """
    if first_block and block.startswith(_BOM):
        block = block[len(_BOM):]
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
        if block.endswith(b"\r"):
            block = block[:-1]  # a last line without LF but with CR
    data = np.frombuffer(block, dtype=np.uint8)
    newlines = _newlines(data)
    ends = newlines.astype(np.int64)
    if len(newlines) == 0 or newlines[-1] != len(block) - 1:
        ends = np.append(ends, len(block))  # a last line without a newline
    count = len(ends)
    starts = np.zeros(count, dtype=np.int64)
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    kept = block.replace(b"\n", b"")
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    blank = lengths == 0
    first_byte = np.full(count, 0, dtype=np.uint8)
    first_byte[~blank] = data[starts[~blank]]
    for index in np.flatnonzero(~blank & ((first_byte == 32) | (first_byte == 9) | (first_byte == 13))):
        blank[index] = not kept[offsets[index]: offsets[index + 1]].strip(b" \t\r")
    raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(kept))
    pre_reason: pa.Array = pa.nulls(count, pa.string())
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        text = kept
        lines, reasons = [], []
        for start, end in zip(offsets[:-1], offsets[1:], strict=True):
            piece = text[start:end]
            try:
                lines.append(piece.decode("utf-8"))
                reasons.append(None)
            except UnicodeDecodeError as exc:
                lines.append(piece.decode("utf-8", errors="replace"))
                reasons.append(f"{validation.INVALID_UTF8}: byte {exc.start + 1} of the line is not valid UTF-8")
        raw = arrow_arrays.text_array(lines, large=True)
        pre_reason = arrow_arrays.text_array(reasons)
    table = pa.Table.from_arrays(
        [arrow_arrays.int32_array(np.full(count, file_order)),
         arrow_arrays.int64_array(np.arange(first_line, first_line + count)),
         raw, arrow_arrays.bool_array(blank), pre_reason],
        names=["file_order", "line_number", "raw", "blank", "pre_reason"],
    )
    return table, count


# ---------------------------------------------------------------------------------------------
# canonical JSON of id-less lines


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(
            json.dumps(key, ensure_ascii=False) + ":" + _canonical(value[key]) for key in sorted(value)
        ) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        normal = value.normalize()
        return "0" if normal.is_zero() else str(normal)
    if isinstance(value, float):  # NaN / Infinity literals
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def canonical_json(line: str) -> str:
    """Keys sorted, no whitespace, numbers as normalised exact decimals."""
    parsed = json.loads(line, parse_float=Decimal, parse_int=Decimal)
    return _canonical(parsed)


def canonical_sha256(line: str) -> str:
    try:
        text = canonical_json(line)
    except (ValueError, InvalidOperation, RecursionError):
        text = line  # DuckDB accepted what Python's json does not (e.g. a trailing comma)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# one batch: validate, dedupe, insert


@dataclass
class _FileState:
    order: int
    report: FileReport


@dataclass
class _Staged:
    """One validated batch, handed from the staging connection to the writing one."""

    checked: pa.Table  # every non-blank line: reason and field, or the raw.events columns; seq, payload hash
    multi: pa.Table  # ids seen more than once in the batch, and the seq of the first line
    files: list[_FileState]


@dataclass
class _Batch:
    files: list[_FileState] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)
    nbytes: int = 0


@dataclass
class _Unit:
    """What is written next, in file order: a batch of small files (one transaction), one block
    of a big file (the file is one transaction: begun at its first block, committed at its
    ``file_end``), or a file that could not be read (its blocks written before are rolled back)."""

    kind: str  # batch | block | file_end | unreadable
    files: list[_FileState]
    table: pa.Table | None = None  # lines to validate; None: nothing to validate (empty files)
    first: bool = True  # block: the file's first block
    staged: Future[_Staged] | None = None


class _Loader:
    def __init__(self, connection: duckdb.DuckDBPyConnection, as_of: datetime, report: LoadReport,
                 loaded_at: datetime):
        self.connection = connection
        self.report = report
        self.loaded_at = loaded_at
        self.fast_sql = validation.fast_sql("_mh_lines", _utc_naive(as_of))
        # the full validation, for the lines the fast path could not vouch for
        self.sql = validation.validation_sql(
            "(select file_order, line_number, raw, pre_reason, false as blank from _mh_checked where not clean)",
            _utc_naive(as_of),
        )
        self.reasons: Counter[str] = Counter()
        # validation runs on a second connection to the same database, in one background thread,
        # while this connection inserts the batch validated before (the insert is single-threaded)
        self.stager = connection.cursor()
        validation.install_macros(self.stager)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meterhouse-ingest")

    # -- SQL helpers
    def _execute(self, sql: str, parameters: list[Any] | None = None,
                 connection: duckdb.DuckDBPyConnection | None = None) -> list[tuple[Any, ...]]:
        # always fetch: DuckDB refuses register() while a result is pending
        return (connection or self.connection).execute(sql, parameters or []).fetchall()

    def _scalar(self, sql: str, parameters: list[Any] | None = None,
                connection: duckdb.DuckDBPyConnection | None = None) -> Any:
        return self._execute(sql, parameters, connection)[0][0]

    def submit_stage(self, table: pa.Table, files: list[_FileState]) -> Future[_Staged]:
        return self.executor.submit(self.stage, table, files)

    def close(self) -> None:
        """Wait for the staging thread and release what the last batches held."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        for con, tables in ((self.connection, _TEMP_TABLES), (self.stager, _STAGER_TEMP_TABLES)):
            for table in tables:
                try:
                    con.execute(f"drop table if exists {table}").fetchall()
                except duckdb.Error:
                    pass  # never hide the error that got us here
        self.stager.close()

    def stage(self, table: pa.Table, files: list[_FileState]) -> _Staged:
        """Validate one arrow table of lines (no write to raw.*): on the staging connection, in the
        background thread while the connection writes the batch staged before it."""
        con = self.stager
        # small record batches so that DuckDB scans the arrow table on every thread
        table = pa.Table.from_batches(table.to_batches(max_chunksize=ARROW_BATCH_ROWS))
        con.register("_mh_lines", table)
        try:
            # the raw text stays in the arrow table (it is put back by position below); only the
            # lines read again here keep theirs: by the full validation, or hashed when id-less.
            # payload_sha256 is filled for id-less lines only (_fill_idless_ids)
            self._execute(
                f"create or replace temp table _mh_checked as select * exclude (raw), (file_order::bigint << "
                f"{_SEQ_SHIFT}) + line_number as seq, null::varchar as payload_sha256, "
                f"case when not clean or transaction_id is null then raw end as raw from ({self.fast_sql})",
                connection=con,
            )
        finally:
            _unregister(con, "_mh_lines")
        if self._scalar("select count(*) from _mh_checked where not clean", connection=con):
            self._execute(
                "create or replace temp table _mh_slow as select *, true as clean, "
                f"(file_order::bigint << {_SEQ_SHIFT}) + line_number as seq, "
                "null::varchar as payload_sha256 "
                f"from ({self.sql})",
                connection=con,
            )
            self._execute("delete from _mh_checked where not clean", connection=con)
            self._execute("insert into _mh_checked by name select * from _mh_slow", connection=con)
        self._fill_idless_ids()
        # ids seen more than once in this batch, and the line that comes first (file order, line)
        multi = con.sql(
            """select transaction_id, min(seq) as first_seq from _mh_checked
               where reason is null group by transaction_id having count(*) > 1"""
        ).to_arrow_table()
        checked = con.sql(
            f"select * exclude (clean, pre_reason, raw), {_ID_HASH} as transaction_id_hash from _mh_checked order by seq"
        ).to_arrow_table()
        return _Staged(checked=_with_raw_text(checked, table), multi=multi, files=files)

    def write(self, staged: _Staged) -> None:
        """Insert a staged batch inside the open transaction: events, duplicates, rejects. The
        batch's ids are looked up in raw.events with one hash join (built on the batch's ids;
        earlier blocks of the same transaction are in raw.events already)."""
        self.connection.register("_mh_checked", staged.checked)
        self.connection.register("_mh_multi", staged.multi)
        try:
            self._write(staged.files, staged.multi.num_rows > 0)
        finally:
            _unregister(self.connection, "_mh_checked")
            _unregister(self.connection, "_mh_multi")

    def _write(self, files: list[_FileState], multi: bool) -> None:
        load_id = self.report.load_id
        file_rows = [(state.order, state.report.source_file) for state in files]
        self._execute("create or replace temp table _mh_files (file_order integer, source_file varchar)")
        self._execute("insert into _mh_files select * from (values " + ",".join(["(?, ?)"] * len(file_rows))
                      + ")", [value for row in file_rows for value in row])
        # the first accepted line of each id in the batch. Left joins on tables with one row per id
        # (_mh_multi, _mh_prior), not NOT EXISTS: DuckDB decorrelates a NOT EXISTS by copying its
        # outer rows, the lines' raw text included, once more (~10 % of the load's memory traffic)
        winners = "from _mh_checked c join _mh_files f using (file_order)"
        first_of_batch = "c.reason is null"
        if multi:
            winners += " left join _mh_multi m using (transaction_id)"
            first_of_batch += " and (m.first_seq is null or m.first_seq = c.seq)"
        # ids already in raw.events: earlier loads, batches and blocks of this transaction. The join
        # reads only raw.events' id hashes (and row ids); the few rows it finds are then fetched by
        # row id. A row whose hash collides with a batch id's is fetched too and matches nothing
        # below (everything joins _mh_prior by the id itself). The probe grows with history (every
        # batch reads every earlier row's hash): with the id text 0.35 s a batch at 20 M events,
        # 0.09 s with the hash (comparing the ids here as well made it 0.14-0.30 s); joined with
        # all four columns, 0.9-2.2 s
        self._execute(
            f"""create or replace temp table _mh_prior as
                select transaction_id, payload_sha256, attributes_json as raw, source_file, line_number
                from raw.events
                where rowid in (
                    select e.rowid from (select c.transaction_id_hash {winners} where {first_of_batch}) o
                    join raw.events e using (transaction_id_hash))"""  # noqa: S608
        )
        columns = ", ".join(_EVENT_COLUMNS)
        selected = ", ".join("c.raw" if column == "attributes_json" else f"c.{column}" for column in _EVENT_COLUMNS)
        new = (f"{winners} left join _mh_prior p using (transaction_id) "
               f"where {first_of_batch} and p.transaction_id is null")
        self._execute(
            f"""insert into raw.events ({columns}, source_file, line_number, load_id, loaded_at)
                select {selected}, f.source_file, c.line_number, ?, ? {new}""",  # noqa: S608
            [load_id, self.loaded_at],
        )
        # every accepted line that is not the first of its id (p: in raw.events, else w: in this
        # batch): a duplicate when its payload is the first one's, else a conflict. Id-less lines
        # compare their canonical hashes; lines with an id, their text
        first = "case when p.transaction_id is not null then p.{0} else w.{0} end"
        self._execute(
            f"""create or replace temp table _mh_repeats as
               select c.file_order, f.source_file, c.line_number, c.transaction_id, c.raw,
                      coalesce({first.format("payload_sha256")} = c.payload_sha256,
                               {first.format("raw")} = c.raw) as same_payload,
                      {first.format("source_file")} as first_file,
                      {first.format("line_number")} as first_line
               from _mh_checked c
               join _mh_files f using (file_order)
               left join _mh_multi m using (transaction_id)
               left join _mh_prior p using (transaction_id)
               left join (select c2.transaction_id, c2.payload_sha256, c2.raw, f2.source_file, c2.line_number
                          from _mh_checked c2 join _mh_multi m2
                            on c2.transaction_id = m2.transaction_id and c2.seq = m2.first_seq
                          join _mh_files f2 on f2.file_order = c2.file_order) w using (transaction_id)
               where c.reason is null
                 and (p.transaction_id is not null or (m.transaction_id is not null and c.seq <> m.first_seq))"""  # noqa: S608
        )
        self._execute(
            """insert into raw.duplicate_events (transaction_id, source_file, line_number, load_id)
               select transaction_id, source_file, line_number, ? from _mh_repeats where same_payload
               order by file_order, line_number""",
            [load_id],
        )
        conflict = (
            f"'{validation.DUPLICATE_CONFLICT}: transactionId ' || transaction_id || "
            "' was first loaded from ' || first_file || ':' || first_line || ' with a different payload'"
        )
        self._execute(
            f"""insert into raw.rejected_events (source_file, line_number, reason, field, raw, load_id, rejected_at)
                select c.source_file, c.line_number, c.reason, c.field, c.raw, ?, ? from (
                    select f.source_file, k.line_number, k.reason, k.field, k.raw, k.file_order
                    from _mh_checked k join _mh_files f using (file_order) where k.reason is not null
                    union all
                    select source_file, line_number, {conflict}, 'transactionId', raw, file_order
                    from _mh_repeats where not same_payload
                ) c order by c.file_order, c.line_number""",  # noqa: S608
            [load_id, self.loaded_at],
        )
        by_order = {state.order: state.report for state in files}
        for order, lines_read, invalid in self._execute(
            """select file_order, count(*), count(*) filter (where reason is not null)
               from _mh_checked group by file_order"""
        ):
            by_order[order].lines_read += lines_read
            by_order[order].rejected += invalid
            by_order[order].accepted += lines_read - invalid
        for order, duplicates, conflicts in self._execute(
            """select file_order, count(*) filter (where same_payload), count(*) filter (where not same_payload)
               from _mh_repeats group by file_order"""
        ):
            by_order[order].duplicates += duplicates
            by_order[order].rejected += conflicts
            by_order[order].accepted -= duplicates + conflicts
        for reason, number in self._execute(
            "select split_part(reason, ':', 1), count(*) from _mh_checked where reason is not null group by 1"
        ):
            self.reasons[reason] += number
        conflicts_total = self._scalar("select count(*) from _mh_repeats where not same_payload")
        if conflicts_total:
            self.reasons[validation.DUPLICATE_CONFLICT] += conflicts_total

    def _fill_idless_ids(self) -> None:
        """transaction_id / payload_sha256 for every accepted line (canonical hash when id-less)."""
        con = self.stager
        rows = self._execute(
            "select file_order, line_number, raw from _mh_checked "
            "where reason is null and transaction_id is null", connection=con
        )
        if not rows:
            return
        ids = pa.Table.from_arrays(
            [arrow_arrays.int32_array(np.array([row[0] for row in rows])),
             arrow_arrays.int64_array(np.array([row[1] for row in rows])),
             arrow_arrays.text_array([canonical_sha256(row[2]) for row in rows])],
            names=["file_order", "line_number", "sha"],
        )
        con.register("_mh_ids", ids)
        try:
            self._execute(
                """update _mh_checked c set transaction_id = i.sha, payload_sha256 = i.sha
                   from _mh_ids i where c.file_order = i.file_order and c.line_number = i.line_number""",
                connection=con,
            )
        finally:
            _unregister(con, "_mh_ids")

    def record_files(self, files: list[_FileState]) -> None:
        for state in files:
            file_report = state.report
            self._execute(
                """insert into raw.loaded_files (source_file, size_bytes, content_sha256, load_id, loaded_at,
                                                 lines_read, accepted, duplicates, rejected)
                   values (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [file_report.source_file, file_report.size_bytes, file_report.content_sha256, self.report.load_id,
                 self.loaded_at, file_report.lines_read, file_report.accepted, file_report.duplicates,
                 file_report.rejected],
            )

    def record_unreadable(self, file_report: FileReport) -> None:
        file_report.status = "unreadable"
        file_report.lines_read, file_report.accepted, file_report.duplicates, file_report.rejected = 1, 0, 0, 1
        self._execute(
            """insert into raw.rejected_events (source_file, line_number, reason, field, raw, load_id, rejected_at)
               values (?, 0, ?, null, null, ?, ?)""",
            [file_report.source_file, f"{validation.UNREADABLE_FILE}: {file_report.error}", self.report.load_id,
             self.loaded_at],
        )
        self.reasons[validation.UNREADABLE_FILE] += 1


# ---------------------------------------------------------------------------------------------


class _Progress:
    """rich progress: one bar for the files, one for the bytes of the current file."""

    def __init__(self, enabled: bool, total_files: int):
        self.progress = None
        self.lines = self.file_lines = 0  # read so far: in all, in the current file
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), DownloadColumn(),
            TextColumn("{task.fields[lines]:,} lines"), TimeElapsedColumn(),
        )
        self.progress.start()
        self.files_task = self.progress.add_task("files", total=total_files, lines=0)
        self.file_task = self.progress.add_task("", total=1, lines=0)

    def start_file(self, name: str, size: int) -> None:
        self.file_lines = 0
        if self.progress:
            self.progress.reset(self.file_task, total=max(size, 1), description=name[-60:], lines=0)

    def advance_file(self, done_bytes: int, lines: int) -> None:
        """``lines`` more lines read from the current file, ``done_bytes`` of it so far."""
        self.file_lines += lines
        self.lines += lines
        if self.progress:
            self.progress.update(self.file_task, completed=done_bytes, lines=self.file_lines)

    def file_done(self) -> None:
        if self.progress:
            self.progress.update(self.files_task, advance=1, lines=self.lines)

    def stop(self) -> None:
        if self.progress:
            self.progress.stop()


def load_new_files(
    connection: duckdb.DuckDBPyConnection, data_dir: Path, as_of: datetime, progress: bool = False
) -> LoadReport:
    """Load every landing file not loaded before; see the module docstring for the rules."""
    started = datetime.now(UTC)
    data_dir = Path(data_dir)
    ensure_schema(connection)
    loaded_at = started.replace(tzinfo=None)
    report = LoadReport(load_id=f"load-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}")

    known: dict[str, dict[int, set[str]]] = {}
    # (path, size) -> (start of the latest load that read or re-hashed it, the hash it found)
    last_read: dict[tuple[str, int], tuple[datetime, str]] = {}
    for source_file, size, sha, at in connection.execute(
        "select source_file, size_bytes, content_sha256, greatest(loaded_at, coalesce(verified_at, loaded_at))"
        " from raw.loaded_files"
    ).fetchall():
        known.setdefault(source_file, {}).setdefault(size, set()).add(sha)
        if not sha.startswith("unreadable-") and at > last_read.get((source_file, size), (datetime.min, ""))[0]:
            last_read[(source_file, size)] = (at, sha)

    # rows from before the id hash (or written by other tools) get theirs: the lookup finds ids by it
    connection.execute(f"update raw.events set transaction_id_hash = {_ID_HASH} where transaction_id_hash is null")
    files = find_event_files(data_dir)
    loader = _Loader(connection, as_of, report, loaded_at)
    bar = _Progress(progress, len(files))
    verified: list[tuple[str, str]] = []  # (path, hash) found unchanged by hashing the file again

    def to_load() -> Iterator[tuple[_FileState, Path]]:
        for order, (relative, path) in enumerate(files):
            stat = path.stat()
            size = stat.st_size
            file_report = FileReport(source_file=relative, size_bytes=size, content_sha256="", status="loaded")
            report.files.append(file_report)
            if size in known.get(relative, {}):
                last = last_read.get((relative, size))
                if last and _unchanged_since(stat, last[0]):
                    file_report.content_sha256 = last[1]  # what that load read: the file is the same
                    file_report.status = "skipped"
                    bar.file_done()
                    continue
                file_report.content_sha256 = _file_sha256(path)
                if file_report.content_sha256 in known[relative][size]:
                    file_report.status = "skipped"
                    verified.append((relative, file_report.content_sha256))
                    bar.file_done()
                    continue
            yield _FileState(order=order, report=file_report), path
            known.setdefault(relative, {}).setdefault(size, set()).add(file_report.content_sha256)

    writer = _Writer(loader, connection)
    # Each unit is validated on the staging thread while this thread writes the one before it and
    # reads the one after it, across batches, blocks and file boundaries alike (a big file used to
    # write everything before it first, then wait for its own first block's validation).
    ahead: deque[_Unit] = deque()
    units = _units(to_load(), bar, report.load_id)
    try:
        while True:
            # units with nothing to validate (a big file's end, an unreadable file) take no slot:
            # taking one, they left the staging thread idle at every big file's last block
            while (sum(unit.staged is not None for unit in ahead) < _UNITS_AHEAD
                   and (unit := next(units, None)) is not None):
                if unit.table is not None:
                    unit.staged = loader.submit_stage(unit.table, unit.files)
                    unit.table = None  # the stage holds it
                ahead.append(unit)
            if not ahead:
                break
            writer.write(ahead.popleft())
        if verified:
            # the next load can skip these unread, as if this load had read them
            connection.executemany(
                "update raw.loaded_files set verified_at = ? where source_file = ? and content_sha256 = ?",
                [(loaded_at, relative, sha) for relative, sha in verified],
            )
    except BaseException:
        writer.abandon()
        raise
    finally:
        bar.stop()
        loader.close()  # waits for the staging thread; units staged ahead and not written are cancelled

    for file_report in report.files:
        if file_report.status == "skipped":
            report.files_skipped += 1
            continue
        report.files_loaded += 1
        report.files_unreadable += file_report.status == "unreadable"
        report.lines_read += file_report.lines_read
        report.accepted += file_report.accepted
        report.duplicates += file_report.duplicates
        report.rejected += file_report.rejected
    report.rejected_by_reason = dict(sorted(loader.reasons.items()))
    report.seconds = (datetime.now(UTC) - started).total_seconds()
    return report


# units read before one is taken to be written: it, and the next one, validated meanwhile (each
# holds up to a block's lines, ~2x BLOCK_BYTES in memory)
_UNITS_AHEAD = 2


def _units(files: Iterator[tuple[_FileState, Path]], bar: _Progress, load_id: str) -> Iterator[_Unit]:
    """The files' lines as units to write, in file order: files of one block are gathered into
    batches of about ``BATCH_BYTES`` (the first a quarter of it, so that the overlap starts
    early); a file of several blocks ends the batch before it and is a unit per block. A file
    larger than a block on disk is known to be big before it is read; a smaller one (gzip) is
    known to be big when its second block shows, its first block held until then."""
    batch, limit = _Batch(), BATCH_BYTES // 4
    for state, path in files:
        file_report = state.report
        bar.start_file(file_report.source_file, file_report.size_bytes)
        reader = _HashingReader(path.open("rb"))
        try:
            blocks = _read_blocks(path, reader, BLOCK_BYTES)
            line_number, block_index, first_block = 1, 0, None
            big = file_report.size_bytes > BLOCK_BYTES
            if big and batch.files:
                yield _Unit("batch", batch.files, _concat(batch.tables))
                batch, limit = _Batch(), BATCH_BYTES
            try:
                for block in blocks:
                    size = len(block)
                    table, count = _lines_table(block, state.order, line_number, block_index == 0)
                    del block  # its lines are in the table now
                    line_number += count
                    bar.advance_file(reader.size, count)
                    if big:  # validated while the next block is read (holding it left the stager idle)
                        yield _Unit("block", [state], table, first=block_index == 0)
                    elif block_index == 0:
                        first_block = (table, size)  # held until a second block shows
                    else:
                        if block_index == 1:  # big after all: the batch before it, then the file block by block
                            big = True
                            if batch.files:
                                yield _Unit("batch", batch.files, _concat(batch.tables))
                                batch, limit = _Batch(), BATCH_BYTES
                            yield _Unit("block", [state], first_block[0], first=True)
                            first_block = None
                        yield _Unit("block", [state], table, first=False)
                    block_index += 1
            except _Unreadable as error:
                file_report.content_sha256 = file_report.content_sha256 or _safe_sha256(path, load_id)
                file_report.error = str(error)
                yield _Unit("unreadable", [state])
                bar.file_done()
                continue
            file_report.content_sha256 = reader.sha256.hexdigest()
            file_report.size_bytes = reader.size
            if big:
                yield _Unit("file_end", [state])
            else:
                batch.files.append(state)
                if first_block is not None:
                    batch.tables.append(first_block[0])
                    batch.nbytes += first_block[1]
                if batch.nbytes >= limit:
                    yield _Unit("batch", batch.files, _concat(batch.tables))
                    batch, limit = _Batch(), BATCH_BYTES
            bar.file_done()
        finally:
            reader.raw.close()
    if batch.files:
        yield _Unit("batch", batch.files, _concat(batch.tables))


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    return pa.concat_tables(tables) if tables else None


class _Writer:
    """Writes units in order on the loader's connection, one transaction per batch or big file."""

    def __init__(self, loader: _Loader, connection: duckdb.DuckDBPyConnection):
        self.loader, self.connection = loader, connection
        self.open_file: _FileState | None = None  # the big file whose transaction is open
        self.reasons_before: Counter[str] = Counter()

    def write(self, unit: _Unit) -> None:
        loader = self.loader
        if unit.kind == "batch":
            staged = unit.staged.result() if unit.staged else None
            with _committed(self.connection):
                if staged:
                    loader.write(staged)
                loader.record_files(unit.files)
                fault_point("ingest.before_commit")
            fault_point("ingest.after_commit")
        elif unit.kind == "block":
            staged = unit.staged.result()
            if unit.first:
                self.reasons_before = Counter(loader.reasons)
                self.connection.begin()
                self.open_file = unit.files[0]
            loader.write(staged)
        elif unit.kind == "file_end":
            with _committed(self.connection, begin=False):  # the file's transaction, begun at its first block
                loader.record_files(unit.files)
            self.open_file = None
        else:  # unreadable: nothing of the file is loaded, one rejected row says why
            [state] = unit.files
            if self.open_file is state:
                self.connection.rollback()
                self.open_file = None
                loader.reasons = self.reasons_before  # its blocks written before do not count
            file_report = state.report
            file_report.lines_read = file_report.accepted = file_report.duplicates = file_report.rejected = 0
            with _committed(self.connection):
                loader.record_unreadable(file_report)
                loader.record_files([state])

    def abandon(self) -> None:
        """After an error: roll back the big file's transaction, if one is open."""
        if self.open_file is not None:
            self.open_file = None
            try:
                self.connection.rollback()
            except duckdb.Error:
                pass  # the error that got us here is the one to see


@contextmanager
def _committed(connection: duckdb.DuckDBPyConnection, begin: bool = True) -> Iterator[None]:
    """The block's writes as one transaction (``begin=False``: one already open): committed
    when it ends, rolled back when it raises."""
    if begin:
        connection.begin()
    try:
        yield
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def _with_raw_text(checked: pa.Table, lines: pa.Table) -> pa.Table:
    """``checked`` (one row per non-blank line, in line order) with each line's raw text from
    ``lines``: taken by position, so the text is not copied through DuckDB and back."""
    blank = lines.column("blank")
    kept = lines.select(["file_order", "line_number", "raw"])
    if pc.any(blank).as_py():
        kept = kept.filter(pc.invert(blank))
    if not (checked.column("file_order").equals(kept.column("file_order"))
            and checked.column("line_number").equals(kept.column("line_number"))):
        raise RuntimeError("validated lines do not match the batch's lines one to one")
    return checked.append_column("raw", kept.column("raw"))


def _unregister(connection: duckdb.DuckDBPyConnection, name: str) -> None:
    try:
        connection.unregister(name)
    except duckdb.Error:
        pass  # the transaction failed; the original error is what matters


def _safe_sha256(path: Path, load_id: str) -> str:
    try:
        return _file_sha256(path)
    except OSError:
        return f"unreadable-{load_id}"  # unique, so the next load tries the file again
