"""Arrow arrays built from their buffers, without ``pa.array``.

``pa.array`` (and ``pa.table`` of lists, ``Table.from_pylist``) imports pandas on its first call,
whatever it is given: ~0.25 s in a billing run's process, whose imports are on the path to the
invoices (docs/performance.md). These build the same arrays from numpy buffers instead; they are
also zero-copy where the data is a numpy array already.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa


def int32_array(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(values)])


def int64_array(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def bool_array(values: np.ndarray) -> pa.Array:
    bits = np.packbits(np.ascontiguousarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def string_array(data: np.ndarray, lengths: np.ndarray, valid: np.ndarray | None = None,
                 large: bool = False) -> pa.Array:
    """Strings of the UTF-8 ``data`` bytes, one after the other with these ``lengths``; ``valid``
    (booleans) marks the non-null ones. The caller vouches that the bytes are UTF-8."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = np.ascontiguousarray(data)
    kind = pa.LargeStringArray if large else pa.StringArray
    if valid is None:
        return kind.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data))
    bitmap = pa.py_buffer(np.packbits(np.ascontiguousarray(valid, dtype=bool), bitorder="little"))
    nulls = int(len(valid) - np.count_nonzero(valid))
    return kind.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data), bitmap, nulls)


def text_array(texts: Sequence[str | None], large: bool = False) -> pa.Array:
    """A string array of Python strings (None is null)."""
    valid = None
    if any(text is None for text in texts):
        valid = np.fromiter((text is not None for text in texts), dtype=bool, count=len(texts))
        texts = [text or "" for text in texts]
    joined = "".join(texts)  # type: ignore[arg-type]
    sizes = map(len, texts) if joined.isascii() else (len(text.encode("utf-8")) for text in texts)  # type: ignore[arg-type]
    lengths = np.fromiter(sizes, dtype=np.int64, count=len(texts))
    return string_array(np.frombuffer(joined.encode("utf-8"), dtype=np.uint8), lengths, valid, large)


def sql_text(value: object) -> str | None:
    """A value as the text DuckDB casts back to it exactly: decimals in plain notation, times as
    naive UTC (DuckDB ignores an offset when it casts text to TIMESTAMP)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"no SQL text for {type(value).__name__} {value!r}")


def text_table(rows: Sequence[dict], columns: Sequence[str]) -> pa.Table:
    """Rows of Python values as a table of their SQL texts, one column per name (a missing key is
    null): inserted into a typed DuckDB table, each text is cast to the column's type."""
    return pa.Table.from_arrays(
        [text_array([sql_text(row.get(column)) for row in rows]) for column in columns], names=list(columns)
    )
