"""Reading trace files (CSV, optionally gzipped; Parquet; JSON Lines) into numeric arrays.

The fast path is pyarrow (multi-threaded CSV/JSON readers and vectorised casts). Only when
something fails do we go looking for the culprit: a value that does not convert is located by
bisecting the column with the same pyarrow cast, and its row is mapped back to a 1-based file
line by re-reading the file with the ``csv``/``json`` modules (header = line 1). Structural
errors (a short row, invalid JSON) are found by that same line scan.

Parsed traces are cached in-process keyed by path, modification time, size and the columns
asked for, because the same trace is replayed under many policies.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import gzip
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from tidal.core.errors import TidalInputError

logger = logging.getLogger(__name__)

FileKind = Literal["csv", "parquet", "jsonl"]
TimeUnit = Literal["s", "ms", "us", "datetime"]

_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_DEFAULT_INTERVAL = 60.0


# --------------------------------------------------------------------------- parsed results


@dataclass(frozen=True)
class TraceColumns:
    """What to read from a trace file (already resolved from the spec and its preset).

    ``count_column`` may be a glob such as ``minute_*``: a wide layout where each matching column
    is one interval (in natural order of its numeric suffix) and rows are summed.
    """

    format: Literal["request", "rate"]
    timestamp_column: str | None = None
    timestamp_unit: TimeUnit | None = None
    size_column: str | None = None
    key_column: str | None = None
    count_column: str | None = None
    interval: float | None = None


@dataclass(frozen=True)
class RequestTable:
    """A request-level trace: ``times`` in seconds from the first request (ascending)."""

    times: np.ndarray
    sizes: np.ndarray | None
    keys: np.ndarray | None
    rows: int


@dataclass(frozen=True)
class RateTable:
    """A rate-level trace: interval ``k`` starts at ``starts[k]`` (seconds from the first) and
    holds ``counts[k]`` requests over ``width`` seconds. ``empty_counts`` counts blank cells;
    ``overlapping`` says whether some interval starts before the previous one ends (rows with
    timestamps closer together than the interval)."""

    starts: np.ndarray
    width: float
    counts: np.ndarray
    empty_counts: int
    rows: int
    overlapping: bool = False


def load_requests(path: Path, columns: TraceColumns) -> RequestTable:
    """Parse a request-level trace (cached)."""
    result = _load_cached(*_cache_key(path), columns)
    assert isinstance(result, RequestTable)
    return result


def load_rates(path: Path, columns: TraceColumns) -> RateTable:
    """Parse a rate-level trace (cached)."""
    result = _load_cached(*_cache_key(path), columns)
    assert isinstance(result, RateTable)
    return result


def clear_cache() -> None:
    """Forget every parsed trace."""
    _load_cached.cache_clear()


def _cache_key(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise TidalInputError(str(path), "file not found") from None
    except OSError as exc:
        raise TidalInputError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise TidalInputError(str(path), "not a file")
    return str(path), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int, size: int, columns: TraceColumns) -> RequestTable | RateTable:
    del mtime_ns, size  # only part of the cache key: a rewritten file is parsed again
    source = TraceFile(Path(path))
    if columns.format == "rate":
        result: RequestTable | RateTable = _parse_rates(source, columns)
    else:
        result = _parse_requests(source, columns)
    for value in vars(result).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False  # shared by every workload replaying this trace
    logger.debug("parsed trace %s: %d rows", path, result.rows)
    return result


# --------------------------------------------------------------------------- files


def file_kind(path: Path) -> FileKind:
    """The format implied by the file name (``.gz`` is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


class TraceFile:
    """One trace file: its column names, a pyarrow reader, and the slow line scans for errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kind = file_kind(path)
        self._names: list[str] | None = None

    # ---- reading

    def column_names(self) -> list[str]:
        """Columns (CSV header, Parquet schema, keys of the first JSON object)."""
        if self._names is None:
            self._names = self._read_names()
        return self._names

    def _read_names(self) -> list[str]:
        try:
            if self.kind == "parquet":
                return list(pq.read_schema(self.path).names)
            with _open_text(self.path) as handle:
                if self.kind == "csv":
                    return next(csv.reader(handle), [])
                for line in handle:
                    if line.strip():
                        record = json.loads(line)
                        return list(record) if isinstance(record, dict) else []
                return []
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise TidalInputError(str(self.path), f"cannot read: {exc}") from None

    def require(self, name: str) -> str:
        """``name`` if the file has that column, else an error listing the columns it has."""
        if name not in self.column_names():
            available = ", ".join(self.column_names()) or "(none)"
            raise TidalInputError(str(self.path), f"column '{name}' not found; available columns: {available}")
        return name

    def matching(self, pattern: str) -> list[str]:
        """Columns matching a glob, ordered by their numeric suffix (``minute_2`` < ``minute_10``)."""
        names = [n for n in self.column_names() if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            available = _abbreviate(self.column_names())
            raise TidalInputError(str(self.path), f"no column matches '{pattern}'; available columns: {available}")
        return sorted(names, key=_natural_key)

    def read(self, names: list[str]) -> pa.Table:
        """The named columns, types inferred by pyarrow."""
        try:
            return self._read(names, as_strings=False)
        except pa.ArrowInvalid as exc:
            failure = exc
        except (OSError, pa.ArrowException) as exc:
            raise TidalInputError(str(self.path), f"cannot read: {exc}") from None
        if self.kind == "csv":
            # Perhaps a value that does not fit the type pyarrow inferred from the first block:
            # read the columns as text so each cast can point at the bad row.
            try:
                return self._read(names, as_strings=True)
            except (OSError, pa.ArrowException) as exc:
                failure = exc
        if self.kind != "parquet":
            self._raise_structure_error(names)  # a short row, bad quoting, invalid JSON ...
        raise TidalInputError(str(self.path), f"cannot parse: {failure}")

    def _read(self, names: list[str], *, as_strings: bool) -> pa.Table:
        if self.kind == "parquet":
            return pq.read_table(self.path, columns=names)
        if self.kind == "jsonl":
            with pa.input_stream(str(self.path), compression="detect") as stream:
                table = pjson.read_json(stream)
            # A field absent from every record is reported by the caller.
            return table.select([n for n in names if n in table.column_names])
        types = {n: pa.string() for n in names} if as_strings else None
        return pcsv.read_csv(
            self.path,
            # A single-column file's empty line is an empty cell (e.g. a per-second count list).
            parse_options=pcsv.ParseOptions(ignore_empty_lines=len(self.column_names()) > 1),
            # Only an empty cell is missing (a blank count, a missing date): "NA" or "nan" in a
            # number column is a malformed value to report, not a silent gap.
            convert_options=pcsv.ConvertOptions(
                include_columns=names, column_types=types, null_values=[""], strings_can_be_null=True
            ),
        )

    # ---- locating rows in the file

    def where(self, row: int) -> str:
        """``path:line`` of data row ``row`` (0-based), or ``path (row n)`` for Parquet."""
        if self.kind == "parquet":
            return f"{self.path} (row {row + 1})"
        for index, line, _ in self._records():
            if index == row:
                return f"{self.path}:{line}"
        return f"{self.path} (row {row + 1})"

    def _records(self) -> Iterator[tuple[int, int, list[str] | str]]:
        """(data row index, 1-based line, fields or raw JSON line) for each record."""
        with _open_text(self.path) as handle:
            if self.kind == "jsonl":
                index = 0
                for line_no, line in enumerate(handle, start=1):
                    if line.strip():
                        yield index, line_no, line
                        index += 1
                return
            reader = csv.reader(handle)
            next(reader, None)  # header
            skip_blank = len(self.column_names()) > 1
            index = 0
            for fields in reader:
                if skip_blank and not fields:
                    continue
                yield index, reader.line_num, fields
                index += 1

    def _raise_structure_error(self, names: list[str]) -> None:
        """Scan for the first row pyarrow could not parse and raise an error naming its line."""
        header = self.column_names()
        json_kinds: dict[str, str] = {}
        try:
            for _, line, record in self._records():
                where = f"{self.path}:{line}"
                if isinstance(record, str):
                    _check_json_record(where, record, names, json_kinds)
                elif len(record) < len(header) and (len(header) > 1 or record):
                    missing = header[len(record)]
                    raise TidalInputError(
                        where, f"column '{missing}': expected a value, got a row of {len(record)} of {len(header)} fields"
                    )
                elif len(record) > len(header):
                    raise TidalInputError(where, f"expected {len(header)} fields, got {len(record)}")
        except csv.Error as exc:
            raise TidalInputError(str(self.path), f"cannot parse CSV: {exc}") from None

    def fail(self, row: int, column: str, expected: str, got: object) -> TidalInputError:
        """The error for a bad value at data row ``row``."""
        shown = "" if got is None else str(got)
        return TidalInputError(self.where(row), f"column '{column}': expected {expected}, got '{shown}'")


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def _check_json_record(where: str, line: str, names: list[str], kinds: dict[str, str]) -> None:
    """Raise for invalid JSON or a field whose JSON type differs from its first occurrence
    (``kinds`` remembers those; pyarrow rejects such a change of type)."""
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise TidalInputError(where, f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise TidalInputError(where, f"expected a JSON object, got '{line.strip()[:60]}'")
    for name in names:
        kind = _json_kind(record.get(name))
        if kind == "null":
            continue
        expected = kinds.setdefault(name, kind)
        if kind != expected:
            raise TidalInputError(where, f"column '{name}': expected a {expected}, got '{record[name]}'")


def _natural_key(name: str) -> tuple[str, int]:
    match = re.search(r"(\d+)$", name)
    return (name[: match.start()], int(match.group(1))) if match else (name, -1)


def _abbreviate(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") if names else "(none)"


# --------------------------------------------------------------------------- column conversion


def _first_failure(column: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """Index of the first element ``convert`` rejects (the whole column is known to fail).

    Halving keeps the work linear: each probe converts a prefix of the remaining range.
    """
    lo, hi = 0, len(column)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(column.slice(lo, mid - lo))
            lo = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
    return lo


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _column(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


def _first_index(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _numbers(source: TraceFile, column: pa.Array, name: str, *, allow_null: bool = False) -> tuple[np.ndarray, int]:
    """A numeric column as float64 (nulls → 0 when allowed) and its number of nulls."""
    if _is_text(column.type):
        try:
            column = pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            row = _first_failure(column, lambda part: pc.cast(part, pa.float64()))
            raise source.fail(row, name, "a number", column[row].as_py()) from None
    elif not _is_number(column.type):
        raise source.fail(0, name, "a number", column[0].as_py() if len(column) else None)
    nulls = column.null_count
    if nulls and not allow_null:
        raise source.fail(_first_index(column.is_null().to_numpy(zero_copy_only=False)), name, "a number", "")
    values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    bad = _first_index(~np.isfinite(values))
    if bad is not None:
        raise source.fail(bad, name, "a finite number", column[bad].as_py())
    return values, nulls


def _datetime_ns(source: TraceFile, column: pa.Array, name: str) -> np.ndarray:
    """Date-time strings (ISO 8601; any fractional digits; optional UTC offset) as epoch ns."""
    if pa.types.is_date(column.type):
        column = pc.cast(column, pa.timestamp("ns"))
    if _is_text(column.type):
        column = _parse_datetimes(source, column, name)
    elif not pa.types.is_timestamp(column.type):
        raise source.fail(0, name, "a date-time", column[0].as_py() if len(column) else None)
    if column.null_count:
        raise source.fail(_first_index(column.is_null().to_numpy(zero_copy_only=False)), name, "a date-time", "")
    as_ns = pc.cast(column, pa.timestamp("ns", column.type.tz))
    return pc.cast(as_ns, pa.int64()).to_numpy(zero_copy_only=False)


def _parse_datetimes(source: TraceFile, column: pa.Array, name: str) -> pa.Array:
    first = _first_index(column.is_valid().to_numpy(zero_copy_only=False))
    if first is None:
        raise source.fail(0, name, "a date-time", "")
    # Offsets ("-04:00") need a zone-aware type and naive strings a naive one; the first value
    # decides, and a mix is reported at the first row that does not fit.
    for target in (pa.timestamp("ns"), pa.timestamp("ns", "UTC")):
        try:
            pc.cast(column.slice(first, 1), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        try:
            return pc.cast(column, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            row = _first_failure(column, lambda part, t=target: pc.cast(part, t))
            raise source.fail(row, name, "a date-time", column[row].as_py()) from None
    raise source.fail(first, name, "a date-time", column[first].as_py())


def _looks_numeric(column: pa.Array) -> bool:
    first = _first_index(column.is_valid().to_numpy(zero_copy_only=False))
    if first is None:
        return True
    try:
        float(column[first].as_py())
    except ValueError:
        return False
    return True


def _timestamps(source: TraceFile, column: pa.Array, name: str, unit: TimeUnit | None) -> np.ndarray:
    """Seconds since the first row's timestamp (the first row is t = 0)."""
    temporal = pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)
    if unit == "datetime" or (unit is None and (temporal or (_is_text(column.type) and not _looks_numeric(column)))):
        ns = _datetime_ns(source, column, name)
        relative = (ns - ns[0]).astype(np.float64) * 1e-9 if ns.size else ns.astype(np.float64)
    else:
        factor = _UNIT_SECONDS[unit or "s"]
        if pa.types.is_integer(column.type) and column.null_count == 0:
            raw = column.to_numpy(zero_copy_only=False).astype(np.int64)
            # Subtract in integers: epoch milliseconds stay exact.
            relative = (raw - raw[0]).astype(np.float64) * factor if raw.size else raw.astype(np.float64)
        else:
            values, _ = _numbers(source, column, name)
            relative = (values - values[0]) * factor if values.size else values
    step_back = _first_index(np.diff(relative) < 0)
    if step_back is not None:
        row = step_back + 1
        raise source.fail(
            row, name, f"a time not before the previous row's '{column[row - 1].as_py()}'", column[row].as_py()
        )
    return relative


def _mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fixed, well-spread bijection on 64-bit integers."""
    z = values.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _keys(source: TraceFile, column: pa.Array, name: str) -> np.ndarray:
    """Routing keys (non-negative int64) from an id column.

    Lists (e.g. Mooncake ``hash_ids``, prefix-block hashes) key on their first two elements, so
    requests sharing a prefix share a key; integers are used as they are; anything else (e.g.
    session-id strings) is numbered in order of first appearance, which is stable for a file.
    """
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        offsets = column.offsets.to_numpy(zero_copy_only=False)[:-1]
        flat = pc.fill_null(column.values, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        padded = np.append(flat, -1)  # index for absent elements
        first = padded[np.where(lengths >= 1, offsets, flat.size)]
        second = padded[np.where(lengths >= 2, offsets + 1, flat.size)]
        mixed = _mix64(_mix64(first.astype(np.uint64)) ^ second.astype(np.uint64))
        return (mixed >> np.uint64(1)).astype(np.int64)
    if column.null_count:
        raise source.fail(_first_index(column.is_null().to_numpy(zero_copy_only=False)), name, "a key", "")
    if pa.types.is_integer(column.type):
        return column.to_numpy(zero_copy_only=False).astype(np.int64)
    encoded = pc.dictionary_encode(column)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


# --------------------------------------------------------------------------- parsers


def _parse_requests(source: TraceFile, columns: TraceColumns) -> RequestTable:
    if columns.timestamp_column is None:
        raise TidalInputError(str(source.path), "a request trace needs 'timestamp_column' (or a preset)")
    names = [source.require(columns.timestamp_column)]
    for optional in (columns.size_column, columns.key_column):
        if optional is not None and optional not in names:
            names.append(source.require(optional))
    table = _read_rows(source, names)
    missing = [n for n in names if n not in table.column_names]
    if missing:  # JSON Lines: a field absent from every record
        raise TidalInputError(str(source.path), f"column '{missing[0]}' not found in any record")
    times = _timestamps(source, _column(table, names[0]), names[0], columns.timestamp_unit)
    sizes = None
    if columns.size_column is not None:
        sizes, _ = _numbers(source, _column(table, columns.size_column), columns.size_column)
        bad = _first_index(sizes < 0)
        if bad is not None:
            raise source.fail(bad, columns.size_column, "a size >= 0", table.column(columns.size_column)[bad].as_py())
    keys = None
    if columns.key_column is not None:
        keys = _keys(source, _column(table, columns.key_column), columns.key_column)
    return RequestTable(times=times, sizes=sizes, keys=keys, rows=table.num_rows)


def _parse_rates(source: TraceFile, columns: TraceColumns) -> RateTable:
    if columns.count_column is None:
        raise TidalInputError(str(source.path), "a rate trace needs 'count_column' (or a preset)")
    if any(ch in columns.count_column for ch in "*?["):
        count_names = source.matching(columns.count_column)
    else:
        count_names = [source.require(columns.count_column)]
    names = list(count_names)
    if columns.timestamp_column is not None:
        names.append(source.require(columns.timestamp_column))
    table = _read_rows(source, names)
    counts, empty = _counts(source, table, count_names)
    if len(count_names) > 1:
        # Wide layout: columns are the intervals, rows are summed (e.g. functions of an app).
        starts = np.arange(counts.shape[0], dtype=np.float64)
        width = columns.interval or _DEFAULT_INTERVAL
        return RateTable(starts * width, width, counts.sum(axis=1), empty, table.num_rows)
    counts = counts[0]
    if columns.timestamp_column is None:
        width = columns.interval or _DEFAULT_INTERVAL
        starts = np.arange(counts.shape[0], dtype=np.float64) * width
    else:
        name = columns.timestamp_column
        starts = _timestamps(source, _column(table, name), name, columns.timestamp_unit)
        width = columns.interval or _infer_interval(starts)
    overlapping = bool(np.any(np.diff(starts) < width))
    return RateTable(starts, width, counts, empty, table.num_rows, overlapping)


def _read_rows(source: TraceFile, names: list[str]) -> pa.Table:
    table = source.read(names)
    if table.num_rows == 0:
        raise TidalInputError(str(source.path), "no data rows")
    return table


def _counts(source: TraceFile, table: pa.Table, names: list[str]) -> tuple[np.ndarray, int]:
    """Counts as a (columns x rows) array and the number of blank cells (counted as 0)."""
    per_column = []
    empty = 0
    for name in names:
        values, nulls = _numbers(source, _column(table, name), name, allow_null=True)
        bad = _first_index(values < 0)
        if bad is not None:
            raise source.fail(bad, name, "a count >= 0", table.column(name)[bad].as_py())
        per_column.append(values)
        empty += nulls
    return np.vstack(per_column) if per_column else np.empty((0, 0)), empty


def _infer_interval(starts: np.ndarray) -> float:
    steps = np.diff(starts)
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else _DEFAULT_INTERVAL
