"""Trace replay: the shipped traces load through their presets, scaling and windows behave, and
bad files give errors that name the file, the line and the column."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tidal.config.scenario import TraceWorkload
from tidal.core.errors import TidalInputError
from tidal.workload import Arrivals, RateTraceWorkload, RequestTraceWorkload, build_workload
from tidal.workload.tracefiles import TraceColumns, load_requests

TRACES = Path(__file__).resolve().parents[1] / "data" / "traces"
LLM_CODE = TRACES / "azure_llm_inference_2023" / "AzureLLMInferenceTrace_code.csv"
LLM_CONV = TRACES / "azure_llm_inference_2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE_CONV = TRACES / "mooncake_fast25" / "conversation_trace.jsonl"
MOONCAKE_SYNTH = TRACES / "mooncake_fast25" / "synthetic_trace.jsonl"
FUNCTIONS = TRACES / "azure_functions_2019_sample1000" / "1000_inv.csv"
NASA_MINUTE = TRACES / "nasa_http_1995" / "nasa_http_1995_per_minute.csv"
NASA_SECOND = TRACES / "nasa_http_1995" / "nasa_http_1995_per_second.csv.gz"
NASA_TOTAL = 3_461_610


def trace(path: Path, seed: int = 0, **fields: object) -> RequestTraceWorkload | RateTraceWorkload:
    workload = build_workload(TraceWorkload(kind="trace", path=path, **fields), seed)
    assert isinstance(workload, (RequestTraceWorkload, RateTraceWorkload))
    return workload


def everything(workload: RequestTraceWorkload | RateTraceWorkload) -> Arrivals:
    assert workload.duration is not None
    return workload.arrivals(0.0, workload.duration)


# --------------------------------------------------------------------------- shipped traces


@pytest.mark.parametrize(
    ("path", "preset", "requests", "span"),
    [
        (LLM_CODE, "azure_llm", 8_819, (57.2 * 60, 57.4 * 60)),
        (LLM_CONV, "azure_llm", 19_366, (58.3 * 60, 58.5 * 60)),
        (MOONCAKE_CONV, "mooncake", 12_031, (3536.9, 3537.1)),
        (MOONCAKE_SYNTH, "mooncake", 3_993, (1021.0, 1023.0)),
    ],
)
def test_request_traces_load_via_preset(path: Path, preset: str, requests: int, span: tuple[float, float]) -> None:
    workload = trace(path, preset=preset)
    arrivals = everything(workload)
    assert len(arrivals) == requests == workload.info["rows"]
    assert arrivals.times[0] == 0.0
    assert span[0] < workload.duration < span[1]
    assert np.all(np.diff(arrivals.times) >= 0)
    assert np.all(arrivals.sizes >= 0) and arrivals.sizes.mean() > 1  # generated/output tokens
    assert np.all(arrivals.keys >= 0)


def test_azure_llm_sizes_and_times_match_the_csv() -> None:
    with open(LLM_CONV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    stamps = [datetime.fromisoformat(r["TIMESTAMP"][:26]) for r in rows]  # microseconds suffice here
    expected = np.array([(s - stamps[0]).total_seconds() for s in stamps])
    arrivals = everything(trace(LLM_CONV, preset="azure_llm"))
    np.testing.assert_allclose(arrivals.times, expected, atol=1e-6)
    np.testing.assert_array_equal(arrivals.sizes, [float(r["GeneratedTokens"]) for r in rows])


def test_mooncake_keys_follow_shared_prefixes() -> None:
    with open(MOONCAKE_CONV) as handle:
        records = [json.loads(line) for line in handle]
    arrivals = everything(trace(MOONCAKE_CONV, preset="mooncake"))
    prefixes = [tuple(r["hash_ids"][:2]) for r in records]
    by_prefix: dict[tuple[int, ...], set[int]] = {}
    for prefix, key in zip(prefixes, arrivals.keys.tolist()):
        by_prefix.setdefault(prefix, set()).add(key)
    assert all(len(keys) == 1 for keys in by_prefix.values())  # same prefix -> same key
    assert len({next(iter(k)) for k in by_prefix.values()}) == len(by_prefix)  # distinct prefixes differ
    np.testing.assert_allclose(arrivals.times, [r["timestamp"] / 1000 for r in records])
    np.testing.assert_array_equal(arrivals.sizes, [r["output_length"] for r in records])


def test_azure_functions_generates_every_invocation() -> None:
    workload = trace(FUNCTIONS, preset="azure_functions")
    assert workload.duration == 1440 * 60
    assert workload.info["intervals"] == 1440 and workload.info["rows"] == 1000
    arrivals = everything(workload)
    assert len(arrivals) == 608_228 == workload.counts.sum()
    assert np.all(np.diff(arrivals.times) >= 0)
    per_minute = np.bincount((arrivals.times // 60).astype(int), minlength=1440)
    np.testing.assert_array_equal(per_minute, workload.counts)
    assert 263 <= per_minute.min() and per_minute.max() <= 3_193  # as measured in PROVENANCE.md


def test_nasa_per_minute() -> None:
    workload = trace(NASA_MINUTE, preset="nasa_http")
    assert workload.info["interval"] == 60.0
    assert workload.info["empty_counts"] == 4_947  # the no_log rows
    assert workload.duration == 89_280 * 60
    assert workload.counts.sum() == NASA_TOTAL
    assert len(everything(workload)) == NASA_TOTAL


def test_nasa_per_second() -> None:
    workload = trace(NASA_SECOND, preset="nasa_http")
    assert workload.info["interval"] == 1.0
    assert workload.info["intervals"] == 5_356_800  # blank lines are intervals, not skipped
    assert workload.info["empty_counts"] == 5_356_800 - 5_059_936
    assert workload.duration == 5_356_800.0
    assert workload.counts.sum() == NASA_TOTAL
    # The per-minute file is the per-second one summed (row i = second i of the same origin).
    minute = trace(NASA_MINUTE, preset="nasa_http").counts
    np.testing.assert_array_equal(workload.counts.reshape(-1, 60).sum(axis=1), minute)


# --------------------------------------------------------------------------- rate traces


def test_rate_trace_windows_chunks_and_rate() -> None:
    workload = trace(NASA_MINUTE, preset="nasa_http", start=3600, end=7200)
    assert workload.duration == 3600.0
    edges = np.concatenate((np.arange(0.0, 3600.0, 7.0), [3600.0]))  # windows cut intervals
    parts = [workload.arrivals(a, b) for a, b in zip(edges[:-1], edges[1:])]
    for a, b, part in zip(edges[:-1], edges[1:], parts):
        assert len(part) == 0 or (a <= part.times[0] and part.times[-1] < b)
    times = Arrivals.concat(parts).times
    assert np.all(np.diff(times) >= 0)
    assert len(times) == workload.counts[60:120].sum()
    np.testing.assert_array_equal(np.bincount((times // 60).astype(int), minlength=60), workload.counts[60:120])
    np.testing.assert_allclose(workload.rate(np.array([0.0, 59.9, 60.0, -1.0, 3600.0])),
                               [*(workload.counts[[60, 60, 61]] / 60.0), 0.0, 0.0])
    with pytest.raises(ValueError):
        workload.arrivals(100.0, 200.0)  # back in time


def test_rate_trace_scaling() -> None:
    base = trace(FUNCTIONS, preset="azure_functions")
    fast = trace(FUNCTIONS, preset="azure_functions", time_scale=0.5)
    assert fast.duration == base.duration / 2
    assert len(everything(fast)) == 608_228
    half = len(everything(trace(FUNCTIONS, preset="azure_functions", rate_scale=0.5)))
    assert abs(half - 304_114) < 4 * math.sqrt(608_228 * 0.25)
    assert len(everything(trace(FUNCTIONS, preset="azure_functions", rate_scale=2.0))) == 2 * 608_228
    np.testing.assert_allclose(fast.rate(np.array([15.0])), base.rate(np.array([30.0])) * 2)


def test_rate_trace_with_timestamps_and_explicit_columns(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("when,n\n100,5\n110,0\n120,\n130,7\n")
    workload = trace(path, format="rate", count_column="n", timestamp_column="when")
    assert workload.info["interval"] == 10.0 and workload.info["empty_counts"] == 1
    assert workload.duration == 40.0
    times = everything(workload).times
    np.testing.assert_array_equal(np.histogram(times, bins=[0, 10, 20, 30, 40])[0], [5, 0, 0, 7])


def test_rate_trace_overlapping_intervals_and_window_gaps(tmp_path: Path) -> None:
    path = tmp_path / "overlap.csv"
    path.write_text("t,n\n0,100\n10,100\n20,100\n")
    workload = trace(path, format="rate", count_column="n", timestamp_column="t", interval=30)
    assert workload.duration == 50.0
    parts = [workload.arrivals(a, a + 5.0) for a in np.arange(0.0, 50.0, 5.0)]
    times = Arrivals.concat(parts).times
    assert len(times) == 300 and np.all(np.diff(times) >= 0)
    skipping = trace(path, format="rate", count_column="n", timestamp_column="t", interval=30)
    skipping.arrivals(0.0, 5.0)
    later = skipping.arrivals(40.0, 50.0)  # a gap: [5, 40) is never asked for
    assert len(later) and later.times[0] >= 40.0


# --------------------------------------------------------------------------- request scaling, windows


def test_request_trace_time_scale_halves_the_span() -> None:
    base = trace(LLM_CODE, preset="azure_llm")
    fast = trace(LLM_CODE, preset="azure_llm", time_scale=0.5)
    assert fast.duration == pytest.approx(base.duration / 2)
    np.testing.assert_allclose(everything(fast).times, everything(base).times / 2)


@pytest.mark.parametrize("scale", [0.5, 2.0, 2.5])
def test_request_trace_rate_scale(scale: float) -> None:
    base = everything(trace(LLM_CONV, preset="azure_llm"))
    scaled_workload = trace(LLM_CONV, seed=3, preset="azure_llm", rate_scale=scale)
    scaled = everything(scaled_workload)
    n = len(base)
    frac = scale - math.floor(scale)
    assert abs(len(scaled) - n * scale) <= 4 * math.sqrt(n * frac * (1 - frac)) + 1e-9
    assert np.all(np.diff(scaled.times) >= 0)
    assert scaled_workload.duration == pytest.approx(trace(LLM_CONV, preset="azure_llm").duration)
    assert set(np.unique(scaled.sizes)) <= set(np.unique(base.sizes))
    if scale >= 1:  # every original request is still there
        assert np.isin(base.times, scaled.times).all()


def test_request_trace_window() -> None:
    full = everything(trace(LLM_CODE, preset="azure_llm"))
    workload = trace(LLM_CODE, preset="azure_llm", start=600, end=1200, time_scale=0.5)
    assert workload.duration == 300.0
    inside = full.times[(full.times >= 600) & (full.times < 1200)]
    window = everything(workload)
    np.testing.assert_allclose(window.times, (inside - 600) * 0.5)
    assert len(workload.arrivals(0.0, 100.0)) + len(workload.arrivals(100.0, 1e9)) == len(inside)


def test_request_trace_empirical_rate() -> None:
    workload = trace(MOONCAKE_SYNTH, preset="mooncake")
    times = everything(workload).times
    probe = np.array([0.5, 10.2, 500.0, 1021.5, -3.0, 5000.0])
    expected = [np.count_nonzero((times >= math.floor(t)) & (times < math.floor(t) + 1)) for t in probe[:4]]
    np.testing.assert_array_equal(workload.rate(probe), [*expected, 0, 0])


def test_keys_are_random_without_a_key_column_and_deterministic() -> None:
    one = everything(trace(LLM_CODE, seed=1, preset="azure_llm"))
    two = everything(trace(LLM_CODE, seed=1, preset="azure_llm"))
    other = everything(trace(LLM_CODE, seed=2, preset="azure_llm"))
    np.testing.assert_array_equal(one.keys, two.keys)
    assert not np.array_equal(one.keys, other.keys)
    assert len(np.unique(one.keys)) == len(one.keys)


def test_start_past_the_end_is_an_error() -> None:
    with pytest.raises(TidalInputError, match="workload.start"):
        trace(MOONCAKE_SYNTH, preset="mooncake", start=5000)


# --------------------------------------------------------------------------- other formats


def test_custom_csv_gzip_units_and_string_keys(tmp_path: Path) -> None:
    path = tmp_path / "custom.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("t_ms,tokens,session\n1000,5,a\n1500,7,b\n1500,1,a\n4000,2,c\n")
    arrivals = everything(trace(path, timestamp_column="t_ms", timestamp_unit="ms", size_column="tokens",
                                key_column="session"))
    np.testing.assert_allclose(arrivals.times, [0.0, 0.5, 0.5, 3.0])
    np.testing.assert_array_equal(arrivals.sizes, [5, 7, 1, 2])
    assert arrivals.keys[0] == arrivals.keys[2] != arrivals.keys[1]


def test_parquet_request_trace(tmp_path: Path) -> None:
    path = tmp_path / "trace.parquet"
    pq.write_table(pa.table({"ts": [10.0, 10.25, 12.0], "size": [3, 4, 5]}), path)
    arrivals = everything(trace(path, timestamp_column="ts", size_column="size"))
    np.testing.assert_allclose(arrivals.times, [0.0, 0.25, 2.0])
    np.testing.assert_array_equal(arrivals.sizes, [3, 4, 5])


def test_datetime_with_offsets(tmp_path: Path) -> None:
    path = tmp_path / "tz.csv"
    path.write_text("at\n1995-07-01T00:00:00-04:00\n1995-07-01T00:00:01.5-04:00\n1995-07-01T04:00:03Z\n")
    np.testing.assert_allclose(everything(trace(path, timestamp_column="at")).times, [0.0, 1.5, 3.0])


def test_parsed_traces_are_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("t\n0\n1\n")
    columns = TraceColumns(format="request", timestamp_column="t")
    first = load_requests(path, columns)
    assert load_requests(path, columns) is first
    path.write_text("t\n0\n1\n2\n")
    os.utime(path, ns=(1, 1))  # make sure the modification time differs
    assert load_requests(path, columns).rows == 3


def test_loading_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    trace(LLM_CODE, preset="azure_llm", seed=9)
    assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------- errors


def test_missing_file() -> None:
    missing = TRACES / "nope.csv"
    with pytest.raises(TidalInputError) as info:
        trace(missing, preset="azure_llm")
    assert info.value.where == str(missing) and info.value.problem == "file not found"


def test_malformed_value_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("ts,tokens\n0.0,5\n1.0,6\n2.0,abc\n3.0,8\n")
    with pytest.raises(TidalInputError) as info:
        trace(path, timestamp_column="ts", size_column="tokens")
    assert info.value.where == f"{path}:4"
    assert "column 'tokens'" in info.value.problem and "'abc'" in info.value.problem
    assert ":4" in str(info.value)


def test_malformed_count_in_rate_trace(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text("requests\n1\n\n2\nmany\n")
    with pytest.raises(TidalInputError) as info:
        trace(path, preset="nasa_http")
    assert info.value.where == f"{path}:5" and "column 'requests'" in info.value.problem


def test_bad_datetime_names_line(tmp_path: Path) -> None:
    path = tmp_path / "dates.csv"
    path.write_text("TIMESTAMP,GeneratedTokens\n2023-11-16 18:17:03.9799600,1\n"
                    "2023-11-16 18:17:04.0319600,2\n2023-11-16 25:99:00,3\n")
    with pytest.raises(TidalInputError) as info:
        trace(path, preset="azure_llm")
    assert info.value.where == f"{path}:4" and "column 'TIMESTAMP'" in info.value.problem


def test_short_row_names_the_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("ts,tokens\n0,1\n1,2\n2\n")
    with pytest.raises(TidalInputError) as info:
        trace(path, timestamp_column="ts", size_column="tokens")
    assert info.value.where == f"{path}:4" and "column 'tokens'" in info.value.problem


def test_missing_column_lists_available(tmp_path: Path) -> None:
    with pytest.raises(TidalInputError) as info:
        trace(LLM_CODE, preset="azure_llm", size_column="OutputTokens")
    problem = info.value.problem
    assert "'OutputTokens'" in problem and "TIMESTAMP, ContextTokens, GeneratedTokens" in problem


def test_decreasing_timestamp_names_line(tmp_path: Path) -> None:
    path = tmp_path / "order.csv"
    path.write_text("ts,x\n0,1\n5,1\n\n3,1\n9,1\n")  # the blank line 4 is skipped: line 5 steps back
    with pytest.raises(TidalInputError) as info:
        trace(path, timestamp_column="ts")
    assert info.value.where == f"{path}:5" and "column 'ts'" in info.value.problem


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0, "output_length": 1, "hash_ids": [1]}\n'
                    '{"timestamp": 10, "output_length": 1, "hash_ids": [2]}\n'
                    '{"timestamp": "soon", "output_length": 1, "hash_ids": [3]}\n')
    with pytest.raises(TidalInputError) as info:
        trace(path, preset="mooncake")
    assert info.value.where == f"{path}:3" and "column 'timestamp'" in info.value.problem
    path.write_text('{"timestamp": 0, "output_length": 1, "hash_ids": [1]}\n{"timestamp": 1,\n')
    with pytest.raises(TidalInputError) as info:
        trace(path, preset="mooncake")
    assert info.value.where == f"{path}:2" and "invalid JSON" in info.value.problem
