"""The command line: results on success; exit status 2, one clear line, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO
from tidal.cli.main import main

SMALL = """
name: small
duration: 10m
seed: 3
workload: {kind: constant, rate: 20/s}
service: {service_time: {distribution: exponential, mean: 50ms}, concurrency: 2}
replicas: {min: 1, max: 10, initial: 2}
policy: {name: target_utilization, target: 0.5}
"""


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_simulate_writes_results(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["simulate", str(_write(tmp_path, SMALL)), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "latency p99" in printed and "replica-hours" in printed
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["arrivals"] == summary["completions"] + summary["drops"] + summary["in_flight_at_end"]
    ticks = pq.read_table(out / "ticks.parquet")
    assert ticks.num_rows == 40 and "latency_p99" in ticks.column_names
    assert json.loads((out / "latency_histogram.json").read_text())["latency"]["counts"]


def test_policy_and_seed_options(tmp_path, capsys):
    path = _write(tmp_path, SMALL)
    assert main(["simulate", str(path), "--no-save", "--quiet", "--policy", "{name: static, replicas: 3}",
                 "--seed", "9"]) == 0
    assert "static(3)" in capsys.readouterr().out
    assert main(["simulate", str(path), "--no-save", "--quiet", "--set", "service.concurrency=4"]) == 0
    # The summary says how often the policy decided: kpa at its upstream 2 s on 1 s metrics.
    capsys.readouterr()
    assert main(["simulate", str(path), "--no-save", "--quiet", "--policy", "kpa"]) == 0
    assert "every 2s, metrics every 1s" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    (SMALL.replace("rate: 20/s", "rate: -3"), "workload.rate"),
    (SMALL + "bogus: 1\n", "bogus: unknown key"),
    (SMALL.replace("target: 0.5", "target: -1"), "policy.target"),
    (SMALL.replace("target_utilization", "magic"), "unknown policy 'magic'"),
    ("workload: {kind: trace, path: missing.csv}\nservice: {service_time: 1s}\n", "missing.csv: file not found"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, text, message):
    out = tmp_path / "out"
    assert main(["simulate", str(_write(tmp_path, text)), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_malformed_trace_row_names_file_and_line(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("timestamp,tokens\n0.0,10\n1.5,12\n2.0,abc\n3.0,9\n")
    text = ("duration: 1m\nworkload: {kind: trace, path: t.csv, timestamp_column: timestamp, size_column: tokens}\n"
            "service: {service_time: 1s}\n")
    out = tmp_path / "out"
    assert main(["simulate", str(_write(tmp_path, text)), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "t.csv:4" in err and "tokens" in err
    assert not out.exists()


def test_console_script_exit_status_and_no_traceback(tmp_path):
    bad = _write(tmp_path, SMALL.replace("concurrency: 2", "concurrency: 0"))
    proc = subprocess.run([sys.executable, "-m", "tidal.cli.main", "simulate", str(bad), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "service.concurrency" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tidal.cli.main", "simulate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_validate_and_policies(capsys):
    assert main(["validate", str(REPO / "examples" / "flash_crowd.yaml")]) == 0
    capsys.readouterr()
    assert main(["policies"]) == 0
    out = capsys.readouterr().out
    assert "target_utilization" in out
    kpa_row = next(line for line in out.splitlines() if "│ kpa " in line)
    assert "2s / 1s" in kpa_row  # each policy's upstream cadence


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.yaml")
                                            if not p.name.startswith("live_")))
def test_examples_validate(example):
    assert main(["validate", str(REPO / "examples" / example)]) == 0


def test_every_command_is_registered(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for command in ("simulate", "validate", "policies", "compare", "tune", "sweep", "plan", "export",
                    "serve", "run", "load"):
        assert command in listed
