"""``tidal compare``: common random numbers, replications with t intervals, parallel = sequential,
policy arms, best-value marking, and the command line (exit 2 before any run on bad input)."""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import tidal.cli.main as cli_main
import tidal.experiment.compare as compare_mod
import tidal.report as report_pkg
from tidal.cli import compare as compare_cmd
from tidal.config import scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.experiment import (
    METRICS,
    Estimate,
    estimate,
    resolve_arms,
    run_comparison,
    seeds_for,
    summary_csv,
    summary_rows,
    t_quantile,
)
from tidal.experiment.arms import make_arm
from tidal.experiment.summary import Metric, _winners, format_estimate
from tidal.policy import available_policies

SMALL = {
    "name": "small-step",
    "seed": 11,
    "duration": "10m",
    "workload": {"kind": "step", "rate": "20/s", "to": "50/s", "at": "4m"},
    "service": {"service_time": {"distribution": "exponential", "mean": "50ms"}, "concurrency": 2},
    "replicas": {"min": 1, "max": 10, "initial": 2},
    "slo": {"latency": "200ms"},
    "policy": {"name": "target_utilization", "target": 0.5},
}

SMALL_YAML = """
name: small-step
seed: 11
duration: 10m
workload: {kind: step, rate: 20/s, to: 50/s, at: 4m}
service: {service_time: {distribution: exponential, mean: 50ms}, concurrency: 2}
replicas: {min: 1, max: 10, initial: 2}
slo: {latency: 200ms}
policy: {name: target_utilization, target: 0.5}
"""

POLICIES_FILE = """
static-4: {name: static, replicas: 4}
tu-0.8: {name: target_utilization, target: 0.8, stabilization: {down_window: 1m}}
bare: target_utilization
"""


@pytest.fixture(scope="module")
def scenario():
    return scenario_from_dict(SMALL)


@pytest.fixture(scope="module")
def arms(scenario):
    return resolve_arms(scenario, ["target_utilization"]) + (
        make_arm("static-4", {"name": "static", "replicas": 4}, "test"),
    )


@pytest.fixture(scope="module")
def sequential(scenario, arms):
    return run_comparison(scenario, arms, seeds_for(scenario, 3), jobs=1)


def run_main(argv: list[str]) -> int:
    """The ``tidal`` command line, in-process."""
    return cli_main.main(argv)


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("df", [1, 2, 4, 9, 29, 200])
@pytest.mark.parametrize("p", [0.975, 0.995, 0.6, 0.025])
def test_t_quantile_matches_scipy(p, df):
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)


def test_estimate_is_the_t_interval():
    values = [3.1, 2.7, 3.9, 3.3, 2.8]
    est = estimate(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert est.mean == pytest.approx(np.mean(values))
    assert est.low == pytest.approx(low) and est.high == pytest.approx(high)
    single = estimate([4.0, float("nan"), None])
    assert single.n == 1 and single.mean == 4.0 and not single.has_interval
    assert math.isnan(estimate([]).mean)


def test_winners_lowest_highest_ties_and_nan():
    lower = Metric("cost", "cost", "cost", "amount", "lower")
    higher = Metric("slo_attainment", "slo_attainment", "SLO", "fraction", "higher")
    assert _winners([3.0, 1.0, 2.0], lower) == {1}
    assert _winners([0.9, 0.99, 0.99], higher) == {1, 2}
    assert _winners([float("nan"), 2.0, 5.0], lower) == {1}
    assert _winners([0.0, 0.0, 0.0], lower) == set(), "a column where everyone ties marks nothing"
    assert _winners([7.0], lower) == set()


def test_format_estimate_units():
    latency = next(m for m in METRICS if m.key == "latency_p99")
    attainment = next(m for m in METRICS if m.key == "slo_attainment")
    assert format_estimate(latency, Estimate(0.2345, math.nan, 1)) == "234.5 ms"
    assert format_estimate(latency, Estimate(1.5, 0.25, 3)) == "1.500 ± 0.250 s"
    assert format_estimate(attainment, Estimate(0.9912, 0.0031, 5)) == "99.12 ± 0.31 %"


# --------------------------------------------------------------------------- running


def test_common_random_numbers_same_arrivals_for_every_policy(sequential, arms):
    by_seed = {}
    for arm in arms:
        for record in sequential.runs[arm.label]:
            by_seed.setdefault(record.seed, []).append(record)
    assert sorted(by_seed) == [11, 12, 13]
    for seed, records in by_seed.items():
        counts = {r.summary.arrivals for r in records}
        assert len(counts) == 1, f"seed {seed}: arrivals differ between policies: {counts}"
    # Tick by tick too (the first seed keeps its tick table for the plots).
    first = [sequential.runs[arm.label][0] for arm in arms]
    for r in first[1:]:
        np.testing.assert_array_equal(r.ticks["arrivals"], first[0].ticks["arrivals"])
    assert sequential.runs[arms[0].label][1].ticks == {}, "later seeds drop their tick tables"
    assert len({records[0].summary.arrivals for records in by_seed.values()}) == 3, "seeds must differ"
    assert first[0].summary.replica_hours != first[1].summary.replica_hours, "the policies did differ"


def test_parallel_results_identical_to_sequential(scenario, arms, sequential):
    parallel = run_comparison(scenario, arms, seeds_for(scenario, 3), jobs=2)
    for arm in arms:
        for a, b in zip(sequential.runs[arm.label], parallel.runs[arm.label], strict=True):
            assert (a.label, a.seed) == (b.label, b.seed)
            assert a.summary == b.summary
            np.testing.assert_array_equal(a.latency_histogram, b.latency_histogram)
            for name in a.ticks:
                np.testing.assert_array_equal(a.ticks[name], b.ticks[name])


def test_progress_reports_every_run(scenario, arms):
    calls = []
    run_comparison(scenario, arms[:1], (11,), jobs=1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]


def test_replicated_summary_is_mean_and_t_interval(sequential, arms):
    rows = summary_rows(sequential)
    for row, arm in zip(rows, arms, strict=True):
        costs = [r.summary.cost for r in sequential.runs[arm.label]]
        est = row.values["cost"]
        assert est.n == 3 and est.mean == pytest.approx(np.mean(costs))
        expected = stats.t.ppf(0.975, 2) * np.std(costs, ddof=1) / math.sqrt(3)
        assert est.half_width == pytest.approx(expected)
    doc = list(csv.DictReader(io.StringIO(summary_csv(rows, replicated=True))))
    assert [d["policy"] for d in doc] == ["target_utilization", "static-4"]
    for m in METRICS:
        assert m.column in doc[0] and f"{m.column}_ci95" in doc[0]
    assert float(doc[1]["cost_ci95"]) == pytest.approx(0.0, abs=1e-12), "static: the same replica-hours every seed"


def test_best_column_lists_the_winners(sequential):
    rows = summary_rows(sequential)
    doc = {d["policy"]: d for d in csv.DictReader(io.StringIO(summary_csv(rows, replicated=False)))}
    assert "cost_ci95" not in next(iter(doc.values()))
    tu, static = rows
    # Four replicas all the time cost more than an autoscaler on 20-50 req/s of 50 ms requests.
    assert "cost" in tu.best and "cost" not in static.best
    assert set(doc["target_utilization"]["best"].split(";")) >= {"cost", "replica_hours"}
    for m in METRICS:
        if m.better is None:
            continue
        means = [r.values[m.key].mean for r in rows]
        if len(set(means)) > 1:
            pick = min if m.better == "lower" else max
            winner = rows[means.index(pick(means))]
            assert winner.is_best(m), m.key


def _plain(table, width: int) -> str:
    """``table`` as piped output shows it: no terminal, so no colour and no bold."""
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=width, force_terminal=False, color_system=None).print(table)
    return out.getvalue()


@pytest.mark.parametrize("width", [250, 80], ids=["one-line-cells", "stacked-cells"])
def test_terminal_table_marks_the_best_in_plain_text(sequential, width):
    rows = summary_rows(sequential)
    table = compare_cmd.comparison_table(sequential, rows, width=width)
    text = _plain(table, width)
    assert "\x1b" not in text, "plain output"
    assert f"{compare_cmd.BEST_MARK} best per column" in text
    best = [[row.is_best(m) for m in METRICS] for row in rows]
    assert any(any(r) for r in best)
    assert text.count(compare_cmd.BEST_MARK) == 1 + sum(map(sum, best)), "one mark per best cell, and the caption's"
    if width == 80:
        return
    # One line per policy: the mark is in exactly the cells that won their column.
    for row, wins in zip(rows, best, strict=True):
        line = next(line for line in text.splitlines() if line.strip("│ ").startswith(row.label + " "))
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")][1:]
        assert [compare_cmd.BEST_MARK in cell for cell in cells] == wins, (row.label, cells)


def test_worker_input_error_is_reraised_with_its_field(scenario, monkeypatch):
    arm = make_arm("tu", {"name": "target_utilization"}, "test")

    def broken(*args, **kwargs):
        raise TidalInputError("workload.path", "file not found")

    monkeypatch.setattr(compare_mod, "Simulation", broken)
    with pytest.raises(TidalInputError, match="workload.path: file not found"):
        run_comparison(scenario, [arm], (1,), jobs=1)


def test_extra_registered_policies_run_with_their_defaults(scenario):
    """Any policy registered by now (hpa, kpa, ...) whose defaults validate runs in a comparison."""
    extra = []
    for name in available_policies():
        if name in ("static", "target_utilization"):
            continue
        try:
            extra.append(make_arm(name, {"name": name}, "test"))
        except TidalInputError:
            continue
    if not extra:
        pytest.skip("no policies registered beyond the built-ins yet")
    short = scenario.model_copy(update={"duration": 180.0})
    comparison = run_comparison(short, extra, (0,), jobs=1)
    arrivals = {comparison.runs[arm.label][0].summary.arrivals for arm in extra}
    assert len(arrivals) == 1


# --------------------------------------------------------------------------- arms


def test_arms_scenario_block_for_its_own_name_defaults_otherwise(scenario, tmp_path):
    (tmp_path / "p.yaml").write_text(POLICIES_FILE)
    arms = resolve_arms(scenario, ["target_utilization"], tmp_path / "p.yaml")
    by_label = {a.label: a for a in arms}
    assert list(by_label) == ["target_utilization", "static-4", "tu-0.8", "bare"]
    assert by_label["target_utilization"].params["target"] == 0.5, "the scenario's own block"
    assert by_label["bare"].params["target"] == 0.6, "a bare name gets the defaults"
    assert by_label["tu-0.8"].params["stabilization"] == {"up_window": 0.0, "down_window": 60.0}
    assert by_label["static-4"].params == {"name": "static", "replicas": 4}
    for arm in arms:  # the shown parameters are themselves a valid block
        assert make_arm(arm.label, dict(arm.params), "again").params == arm.params
    other = scenario.model_copy(update={"policy": {"name": "static", "replicas": 2}})
    assert resolve_arms(other, ["target_utilization"])[0].params["target"] == 0.6


@pytest.mark.parametrize("names, text, message", [
    (["magic"], None, "unknown policy 'magic'; choose one of"),
    (["static"], None, "--policies static.replicas: required field missing"),
    ([], None, "give at least one policy"),
    (["target_utilization", "target_utilization"], None, "given twice"),
    ([], "a: {name: static, replicas: -1}", "p.yaml: a.replicas"),
    ([], "a: {name: target_utilization, tagret: 1}", "p.yaml: a.tagret: unknown key"),
    ([], "a: {name: nope}", "unknown policy 'nope'"),
    ([], "- static", "expected a mapping of labels"),
    ([], "'bad label': static", "labels use letters"),
])
def test_bad_arms_name_the_field(scenario, tmp_path, names, text, message):
    path = None
    if text is not None:
        path = tmp_path / "p.yaml"
        path.write_text(text)
    with pytest.raises(TidalInputError) as err:
        resolve_arms(scenario, names, path)
    assert message in str(err.value)
    if "unknown policy" in message:
        for name in available_policies():
            assert name in str(err.value)


# --------------------------------------------------------------------------- command line


def test_cli_compare_writes_everything(tmp_path, capsys):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SMALL_YAML)
    (tmp_path / "p.yaml").write_text(POLICIES_FILE)
    out = tmp_path / "results" / "cmp"
    argv = ["compare", str(scenario), "--policies", "target_utilization", "--policies-file", str(tmp_path / "p.yaml"),
            "--replications", "2", "--seed", "5", "--out", str(out), "--jobs", "1", "--quiet"]
    assert run_main(argv) == 0
    printed = capsys.readouterr().out
    for label in ("target_utilization", "static-4", "tu-0.8", "bare"):
        assert label in printed
    assert "±" in printed and "report.html" in printed
    names = {p.name for p in out.iterdir()}
    assert {"summary.csv", "report.html", "comparison.json", "load_replicas.png", "latency_time.png",
            "latency_cdf.png", "cost_slo.png"} <= names
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["policy"] for r in rows] == ["target_utilization", "static-4", "tu-0.8", "bare"]
    assert all(r["runs"] == "2" for r in rows)
    assert [p.name for p in out.parent.iterdir()] == ["cmp"], "no temporary folder left behind"


def test_cli_unknown_policy_exits_2_before_any_simulation(tmp_path, capsys, monkeypatch):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SMALL_YAML)

    def no_runs(*args, **kwargs):
        raise AssertionError("a simulation ran")

    monkeypatch.setattr(compare_mod, "run_task", no_runs)
    out = tmp_path / "out"
    assert run_main(["compare", str(scenario), "--policies", "target_utilization,hpa_typo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown policy 'hpa_typo'" in err and "static" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--replications", "0"], "--replications: must be >= 1"),
    (["--jobs", "0"], "--jobs: must be >= 1"),
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--set", "service.concurrency=0"], "service.concurrency"),
])
def test_cli_bad_options_exit_2(tmp_path, capsys, extra, message):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SMALL_YAML)
    out = tmp_path / "out"
    assert run_main(["compare", str(scenario), "--policies", "target_utilization", "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_to_replace_a_foreign_folder(tmp_path, capsys, monkeypatch):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SMALL_YAML)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    monkeypatch.setattr(compare_mod, "run_task", lambda task: pytest.fail("a simulation ran"))
    assert run_main(["compare", str(scenario), "--policies", "target_utilization", "--out", str(out)]) == 2
    assert "does not hold a previous comparison" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_interrupt_leaves_nothing(tmp_path, capsys, monkeypatch):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SMALL_YAML)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_pkg, "write_comparison", interrupted)
    out = tmp_path / "out"
    assert run_main(["compare", str(scenario), "--policies", "target_utilization", "--out", str(out),
                     "--jobs", "1", "--quiet"]) == 130
    assert not out.exists() and list(tmp_path.iterdir()) == [scenario]


def test_cli_no_save_prints_only(tmp_path, capsys, monkeypatch):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SMALL_YAML)
    monkeypatch.chdir(tmp_path)
    assert run_main(["compare", str(scenario), "--policies", "target_utilization", "--no-save", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "target_utilization" in printed and "seed 11" in printed
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["s.yaml"]


def test_relative_trace_path_reaches_workers_absolute(tmp_path, monkeypatch):
    from tidal.config import load_scenario
    from tidal.experiment.compare import portable_scenario

    times = np.sort(np.random.default_rng(0).uniform(0, 60, 600))
    (tmp_path / "t.csv").write_text("timestamp\n" + "\n".join(f"{t:.4f}" for t in times) + "\n")
    (tmp_path / "s.yaml").write_text("duration: 1m\nworkload: {kind: trace, path: t.csv, timestamp_column: timestamp}\n"
                                     "service: {service_time: 20ms}\npolicy: {name: static, replicas: 1}\n")
    monkeypatch.chdir(tmp_path)
    scenario = load_scenario("s.yaml")
    assert Path(portable_scenario(scenario)["workload"]["path"]) == (tmp_path / "t.csv").resolve()
    comparison = run_comparison(scenario, resolve_arms(scenario, ["static"]), (0,), jobs=1)
    assert comparison.runs["static"][0].summary.arrivals == 600


def test_each_policy_at_its_cadence_with_a_short_last_tick():
    """hpa at 15 s and kpa at 1 s ticks over 100 s: same requests, and rates per second are
    per second even though the hpa run's last tick covers only 10 s."""
    scenario = scenario_from_dict({**SMALL, "duration": "100s", "workload": {"kind": "constant", "rate": "40/s"}})
    arms = (make_arm("hpa", {"name": "hpa"}, "test"), make_arm("kpa", {"name": "kpa"}, "test"))
    comparison = run_comparison(scenario, arms, (3,), jobs=1)
    hpa, kpa = comparison.first("hpa"), comparison.first("kpa")
    assert (hpa.tick_s, kpa.tick_s) == (15.0, 1.0)
    assert hpa.summary.arrivals == kpa.summary.arrivals
    assert hpa.tick_lengths()[-1] == 10.0 and hpa.tick_lengths().sum() == kpa.tick_lengths().sum() == 100.0
    rate = hpa.ticks["arrivals"] / hpa.tick_lengths()
    assert rate[-1] == pytest.approx(40, rel=0.25) and rate.mean() == pytest.approx(40, rel=0.1)
