"""``tidal tune``: search spaces, the multi-objective search, resumable studies, Ctrl-C, the CLI."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Literal

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from pydantic import Field, model_validator

from conftest import REPO
import tidal.cli.main as cli_main
import tidal.experiment.tune as tuning
from tidal.cli import tune as tune_cli
from tidal.config import load_scenario, scenario_from_dict
from tidal.config.fields import Duration
from tidal.core.errors import TidalInputError
from tidal.core.types import Decision, Observation
from tidal.policy import available_policies
from tidal.experiment.space import Fixed, Param, apply_values, build_space, format_value, parse_param
from tidal.experiment.study import check_storage, storage_url
from tidal.experiment.tune import (
    TrialRecord,
    cheapest_feasible,
    make_problem,
    pareto_front,
    parse_slo,
    policy_yaml,
    save,
    tune,
    violation_of,
)
from tidal.policy import validate_policy_block
from tidal.policy.base import Policy
from tidal.policy.registry import PolicyConfig, register
from tidal.sim import simulate

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: A steady load that a low target over-provisions: the bad starting point costs ~5x the best.
STEADY = """
name: steady
duration: 10m
seed: 5
workload: {kind: constant, rate: 20/s}
service: {service_time: {distribution: exponential, mean: 50ms}, concurrency: 2, cold_start: 10s}
replicas: {min: 1, max: 10, initial: 4}
policy: {name: target_utilization, target: 0.1}
"""

#: A step with a cold start: cheap configurations miss the SLO, so the front has several points.
STEP = """
name: step
duration: 10m
seed: 3
workload: {kind: step, rate: 10/s, to: 40/s, at: 4m}
service: {service_time: {distribution: exponential, mean: 50ms}, concurrency: 2, cold_start: 20s}
replicas: {min: 1, max: 10, initial: 2}
policy: {name: target_utilization, target: 0.1}
"""


def scenario(text: str = STEADY):
    return scenario_from_dict(yaml.safe_load(text))


# --------------------------------------------------------------------------- a toy policy


class ToyConfig(PolicyConfig):
    """Fields that exercise every derivation rule (the toy never changes the replica count)."""

    gain: float = Field(0.5, gt=0, le=5)
    alpha: float = Field(0.3, ge=0, le=1)
    cooldown: Duration = Field(30.0, ge=6, le=300)
    target_utilization_percentage: float = Field(70.0, ge=1, le=100)
    horizon_steps: int = Field(10, ge=1)
    optional_target: float | None = Field(None, ge=0.01)
    mode: Literal["a", "b"] = "a"
    low: float = Field(0.2, ge=0, le=1)
    high: float = Field(0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> ToyConfig:
        if self.low >= self.high:
            raise ValueError("low must be below high")
        return self


class ToyPolicy(Policy):
    def __init__(self, config: ToyConfig) -> None:
        self.config = config

    def decide(self, obs: Observation) -> Decision:
        return Decision(obs.replicas, reason="toy")


register("tune_test_toy", ToyConfig)(ToyPolicy)


# --------------------------------------------------------------------------- SLO


@pytest.mark.parametrize("text, latency, target", [
    ("p99=1s", 1.0, 0.99), ("p99.9=250ms", 0.25, 0.999), ("P95<=2m", 120.0, 0.95),
])
def test_parse_slo(text, latency, target):
    slo = parse_slo(text)
    assert slo.latency_s == pytest.approx(latency) and slo.target == pytest.approx(target)


@pytest.mark.parametrize("text, message", [
    ("99=1s", "expected pNN=LATENCY"), ("p100=1s", r"in \(0, 100\)"), ("p99=fast", "expected a duration"),
    ("p99=0s", "> 0"),
])
def test_bad_slo_is_an_input_error(text, message):
    with pytest.raises(TidalInputError, match=message) as info:
        parse_slo(text)
    assert info.value.where == "--slo"


def test_violation_counts_the_shortfall_only():
    slo = parse_slo("p99=1s")
    assert violation_of({"slo_attainment": 0.995, "arrivals": 10}, slo) == 0.0
    assert violation_of({"slo_attainment": 0.97, "arrivals": 10}, slo) == pytest.approx(0.02)
    assert violation_of({"slo_attainment": math.nan, "arrivals": 0}, slo) == 0.0
    assert violation_of({"slo_attainment": math.nan, "arrivals": 5}, slo) == 0.99


# --------------------------------------------------------------------------- search space


def test_derived_space_of_target_utilization():
    space = build_space("target_utilization", {"target": 0.1}, scenario())
    params = {p.path: p for p in space.params}
    assert set(params) == {"target", "window", "tolerance"}
    assert (params["target"].low, params["target"].high, params["target"].step) == (0.3, 0.95, 0.01)
    window = params["window"]
    assert window.kind == "int" and window.duration and (window.low, window.high) == (0, 600)
    assert (params["tolerance"].low, params["tolerance"].high) == (0.0, 0.3)
    assert space.base == {"name": "target_utilization", "target": 0.1}


def test_derived_ranges_are_narrowed_by_field_constraints():
    params = {p.path: p for p in build_space("tune_test_toy", {}, scenario()).params}
    # Known names only; None defaults (optional_target) and unknown names (horizon_steps) stay out.
    assert set(params) == {"gain", "alpha", "cooldown", "target_utilization_percentage"}
    assert (params["gain"].low, params["gain"].high) == (0.01, 2.0)  # gt=0 lifts the low end by a step
    assert (params["alpha"].low, params["alpha"].high) == (0.0, 1.0)
    assert (params["cooldown"].low, params["cooldown"].high) == (6, 300)  # ge=6, le=300 inside 0-10m
    assert (params["target_utilization_percentage"].low, params["target_utilization_percentage"].high) == (30, 95)


def test_static_replicas_range_comes_from_the_scenario():
    (param,) = build_space("static", {}, scenario()).params
    assert (param.path, param.kind, param.low, param.high) == ("replicas", "int", 1, 10)


def test_a_policy_may_publish_its_search_space(monkeypatch):
    monkeypatch.setattr(ToyConfig, "search_space", {"horizon_steps": "2:20", "gain": "0.1:1:log"}, raising=False)
    params = {p.path: p for p in build_space("tune_test_toy", {}, scenario()).params}
    assert (params["horizon_steps"].kind, params["horizon_steps"].low, params["horizon_steps"].high) == ("int", 2, 20)
    assert params["gain"].log and params["gain"].origin == "policy"


@pytest.mark.parametrize("text, expected", [
    ("target=0.3:0.95", Param("target", "float", 0.3, 0.95, origin="--param")),
    ("window=15s:10m", Param("window", "int", 15, 600, duration=True, origin="--param")),
    ("tolerance=0:0.2:0.05", Param("tolerance", "float", 0, 0.2, 0.05, origin="--param")),
    ("kp=0.01:10:log", Param("kp", "float", 0.01, 10, log=True, origin="--param")),
    ("replicas=1:8", Param("replicas", "int", 1, 8, origin="--param")),
    ("metric=utilization,concurrency",
     Param("metric", "categorical", choices=("utilization", "concurrency"), origin="--param")),
    ("window=60s", Fixed("window", "60s")),
    ("metric=concurrency", Fixed("metric", "concurrency")),
])
def test_parse_param(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize("options, where, message", [
    (["target"], "--param target", "expected NAME=LOW:HIGH"),
    (["target=0.9:0.5"], "--param target", "LOW must be below HIGH"),
    (["target=0:1:log"], "--param target", "log range needs LOW > 0"),
    (["target=0.1:0.5:0"], "--param target", "STEP must be > 0"),
    (["window=fast:slow"], "--param window", "expected a duration"),
    (["targt=0.3:0.5"], "--param targt", "no such parameter in policy 'target_utilization' (did you mean 'target'?)"),
    (["target=-1:0.5"], "--param target", "greater than 0"),
    (["tolerance=0:2"], "--param tolerance", "range 0 – 2: policy.tolerance: Input should be less than 1"),
    (["tolerance=0.5:1.2"], "--param tolerance", "1.2: policy.tolerance: Input should be less than 1"),
    (["metric=utilization,bogus"], "--param metric", "bogus"),
    (["name=static,hpa"], "--param name", "chosen with --policy"),
])
def test_bad_param_names_option_and_field(options, where, message):
    with pytest.raises(TidalInputError) as info:
        build_space("target_utilization", {"target": 0.5}, scenario(), options)
    assert info.value.where == where
    assert message in info.value.problem


def test_int_field_refuses_a_fractional_range():
    with pytest.raises(TidalInputError, match="whole numbers") as info:
        build_space("static", {}, scenario(), ["replicas=1.5:3"])
    assert info.value.where == "--param replicas"


def test_a_required_field_outside_the_space_is_named():
    with pytest.raises(TidalInputError, match="required by policy 'static'") as info:
        build_space("static", {}, scenario(), ["stabilization.down_window=0:5m"], only_params=True)
    assert info.value.where == "policy.replicas" and "--param replicas=LOW:HIGH" in info.value.problem
    with pytest.raises(TidalInputError, match="nothing to tune"):
        build_space("static", {"replicas": 2}, scenario(), ["replicas=3"], only_params=True)


def test_params_override_pin_and_reach_nested_keys():
    space = build_space("target_utilization", {"target": 0.5}, scenario(),
                        ["window=30s", "target=0.4:0.8", "stabilization.down_window=0:5m"])
    params = {p.path: p for p in space.params}
    assert set(params) == {"target", "tolerance", "stabilization.down_window"}
    assert space.base["window"] == "30s"
    assert params["stabilization.down_window"].duration and params["stabilization.down_window"].high == 300
    block = space.block({"target": 0.6, "tolerance": 0.1, "stabilization.down_window": 120})
    assert block == {"name": "target_utilization", "target": 0.6, "window": "30s", "tolerance": 0.1,
                     "stabilization": {"down_window": 120}}
    validate_policy_block(block)
    assert space.fixed_block() == {"name": "target_utilization", "window": "30s"}


def test_apply_values_indexes_lists_and_copies():
    block = {"name": "x", "metrics": [{"target": {"value": 1}}]}
    out = apply_values(block, {"metrics.0.target.value": 5})
    assert out["metrics"][0]["target"]["value"] == 5 and block["metrics"][0]["target"]["value"] == 1
    with pytest.raises(TidalInputError, match="no list item"):
        apply_values(block, {"metrics.3.target": 1})


def test_durations_are_written_back_in_seconds():
    assert format_value(90, duration=True) == "90s"
    assert format_value(0.25, duration=True) == "0.25s"
    assert format_value(0.7) == 0.7


# --------------------------------------------------------------------------- Pareto front


def _record(number: int, cost: float, violation: float) -> TrialRecord:
    return TrialRecord(number, {}, cost, violation, {"slo_attainment": 1 - violation})


def test_pareto_front_keeps_non_dominated_cheapest_first():
    records = [_record(0, 3, 0), _record(1, 1, 0.2), _record(2, 2, 0.1), _record(3, 2.5, 0.1), _record(4, 1, 0.2),
               _record(5, 4, 0), _record(6, 0.5, 0.5)]
    assert [r.number for r in pareto_front(records)] == [6, 1, 2, 0]
    assert cheapest_feasible(records).number == 0
    assert cheapest_feasible([_record(1, 1, 0.2)]) is None


# --------------------------------------------------------------------------- tuning


def test_tune_finds_a_cheaper_feasible_configuration_than_a_bad_start():
    problem = make_problem(scenario(), slo=parse_slo("p99=500ms"))
    result = tune(problem, 10, seed=1)
    assert not result.interrupted and result.finished == 10 and len(result.records) == 10
    baseline, best = result.baseline, result.best
    assert baseline is not None and baseline.feasible  # target 0.1: safe but expensive
    assert best is not None and best.feasible
    assert best.cost < 0.5 * baseline.cost
    # The printed block is ready to use: simulating it reproduces the trial exactly.
    block = yaml.safe_load(policy_yaml(result, best))["policy"]
    summary = simulate(problem.scenario.model_copy(update={"policy": block})).summary
    assert summary.cost == pytest.approx(best.cost, rel=1e-12)
    assert summary.slo_attainment == pytest.approx(best.figures["slo_attainment"], rel=1e-12)
    assert summary.slo_met


def test_a_fixed_seed_gives_the_same_search():
    problem = make_problem(scenario(STEP), slo=parse_slo("p95=2s"))
    first = tune(problem, 6, seed=7, baseline=False)
    second = tune(problem, 6, seed=7, baseline=False)
    assert [(r.params, r.cost, r.violation) for r in first.records] == [
        (r.params, r.cost, r.violation) for r in second.records]


def test_front_of_a_real_search_is_non_dominated():
    result = tune(make_problem(scenario(STEP), slo=parse_slo("p95=2s")), 16, seed=2, baseline=False)
    front = result.pareto
    assert len(front) >= 2 and any(not r.feasible for r in front)
    assert [r.cost for r in front] == sorted(r.cost for r in front)
    for a in front:
        for b in result.records:
            weakly = b.cost <= a.cost and b.violation <= a.violation
            dominates = weakly and (b.cost < a.cost or b.violation < a.violation)
            assert not dominates, f"trial {b.number} dominates front member {a.number}"
    on_front = {(r.cost, r.violation) for r in front}
    for r in result.records:
        if (r.cost, r.violation) not in on_front:
            assert any(f.cost <= r.cost and f.violation <= r.violation for f in front)


def test_the_starting_configuration_is_the_first_trial():
    # All of the start lies inside the space, so trial 0 evaluates exactly the scenario's block.
    problem = make_problem(scenario(STEADY.replace("target: 0.1", "target: 0.5, window: 30s")))
    result = tune(problem, 1, seed=0)
    assert result.records[0].params == {"target": 0.5, "window": 30, "tolerance": 0.0}
    assert result.records[0].cost == result.baseline.cost


def test_a_window_longer_than_the_default_range_is_searched_around_its_start():
    # predictive remembers a day of forecast errors by default: the range must hold that day, or
    # trial 0 could not be the starting block.
    params = {p.path: p for p in build_space("predictive", {}, scenario()).params}
    window = params["error_window"]
    assert (window.kind, window.low, window.high, window.log, window.duration) == ("int", 3600, 172800, True, True)
    assert params["capacity_window"].high == 600 and not params["capacity_window"].log, "5 min: the usual range"
    window = {p.path: p for p in build_space("predictive", {"error_window": "2h"}, scenario()).params}["error_window"]
    assert (window.low, window.high, window.log) == (300, 14400, True)


def test_the_predictive_policys_defaults_are_the_first_trial():
    problem = make_problem(scenario(STEADY.replace("{name: target_utilization, target: 0.1}", "{name: predictive}")))
    result = tune(problem, 1, seed=0)
    assert result.records[0].params == {"actuation_delay": 0, "error_window": 86400, "target_utilization": 0.7,
                                        "capacity_window": 300}
    assert result.records[0].cost == result.baseline.cost


def test_invalid_combinations_are_skipped_not_fatal():
    base = scenario(STEADY.replace("10m", "1m"))
    problem = make_problem(base, "tune_test_toy", params=["low=0:1:0.1", "high=0:1:0.1"], only_params=True)
    result = tune(problem, 8, seed=3, baseline=False)
    assert result.failed >= 1 and result.finished == 8
    assert all("invalid combination" in f and "low must be below high" in f for f in result.failures)
    assert all(r.params["low"] < r.params["high"] for r in result.records)


def test_parallel_trials_use_the_process_pool():
    result = tune(make_problem(scenario()), 4, seed=1, jobs=2, baseline=False)
    assert result.finished == 4 and len(result.records) == 4 and not result.failed


# --------------------------------------------------------------------------- studies


def test_resume_adds_trials_to_the_same_study(tmp_path):
    problem = make_problem(scenario())
    first = tune(problem, 3, storage=str(tmp_path / "study.db"), seed=1, baseline=False)
    second = tune(problem, 2, storage=f"sqlite:///{tmp_path / 'study.db'}", seed=1, baseline=False)
    assert first.study_name == second.study_name == problem.key.study_name
    assert len(second.records) == 5 and second.finished == 2
    assert [r.number for r in second.records] == [0, 1, 2, 3, 4]
    study = optuna.load_study(study_name=first.study_name, storage=storage_url(str(tmp_path / "study.db")))
    assert study.user_attrs["scenario_hash"] == problem.key.scenario_hash
    assert study.user_attrs["problem_hash"] == problem.key.problem_hash


def test_study_name_ignores_where_trials_start_but_not_the_problem():
    a = make_problem(scenario())
    b = make_problem(scenario(STEADY.replace("target: 0.1", "target: 0.2")))  # another start, same problem
    c = make_problem(scenario(STEADY.replace("20/s", "25/s")))  # another scenario
    d = make_problem(scenario(), slo=parse_slo("p99=2s"))  # another SLO
    assert a.key.study_name == b.key.study_name
    assert len({a.key.study_name, c.key.study_name, d.key.study_name}) == 3
    assert a.key.study_name.startswith("tidal-target_utilization-")


def test_a_storage_for_another_scenario_is_refused(tmp_path):
    storage = str(tmp_path / "study.db")
    tune(make_problem(scenario()), 1, storage=storage, baseline=False)
    other = make_problem(scenario(STEADY.replace("20/s", "25/s")))
    with pytest.raises(TidalInputError, match="holds study .* made for scenario 'steady'") as info:
        tune(other, 1, storage=storage, baseline=False)
    assert info.value.where == "--storage"
    # Sharing the storage knowingly works; reusing that name for a third problem does not.
    shared = tune(other, 1, storage=storage, study_name="other", baseline=False)
    assert len(shared.records) == 1
    third = make_problem(scenario(STEADY.replace("20/s", "30/s")))
    with pytest.raises(TidalInputError, match="study 'other' .* was made for scenario 'steady'"):
        tune(third, 1, storage=storage, study_name="other", baseline=False)


def test_a_foreign_optuna_study_or_file_is_refused(tmp_path):
    storage = storage_url(str(tmp_path / "foreign.db"))
    optuna.create_study(storage=storage, study_name="someone-elses")
    with pytest.raises(TidalInputError, match="not by tidal tune"):
        tune(make_problem(scenario()), 1, storage=str(tmp_path / "foreign.db"), baseline=False)
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    with pytest.raises(TidalInputError, match="cannot open"):
        tune(make_problem(scenario()), 1, storage=str(junk), baseline=False)
    with pytest.raises(TidalInputError, match="does not exist"):
        tune(make_problem(scenario()), 1, storage=str(tmp_path / "nowhere" / "x.db"), baseline=False)


def test_keyboard_interrupt_stops_cleanly_and_keeps_what_was_found(tmp_path):
    storage = str(tmp_path / "study.db")
    problem = make_problem(scenario())

    def stop_after_three(progress):
        if progress.done == 3:
            raise KeyboardInterrupt

    result = tune(problem, 20, storage=storage, seed=1, callbacks=[stop_after_three])
    assert result.interrupted and result.finished == 3 and len(result.records) == 3
    assert result.best is not None
    paths = save(result, tmp_path / "out")
    assert set(paths) == {"pareto", "best_policy"}
    # Nothing is left RUNNING, and the study resumes where it stopped.
    study = optuna.load_study(study_name=result.study_name, storage=storage_url(storage))
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    resumed = tune(problem, 2, storage=storage, seed=1, baseline=False)
    assert len(resumed.records) == 5


def test_interrupt_inside_a_simulation_marks_the_trial_failed(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = tuning.run_variant

    def flaky(variant):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(variant)

    monkeypatch.setattr(tuning, "run_variant", flaky)
    storage = str(tmp_path / "study.db")
    result = tune(make_problem(scenario()), 10, storage=storage, seed=1, baseline=False)
    assert result.interrupted and len(result.records) == 2
    study = optuna.load_study(study_name=result.study_name, storage=storage_url(storage))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]


def test_save_writes_pareto_csv_and_removes_a_stale_answer(tmp_path):
    result = tune(make_problem(scenario(STEP), slo=parse_slo("p95=2s")), 6, seed=2, baseline=False)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "best_policy.yaml").write_text("stale")
    missed = tuple(r for r in result.records if not r.feasible)
    infeasible = tuning.TuneResult(result.problem, result.study_name, missed, result.finished, 0, False)
    paths = save(infeasible, out)
    assert "best_policy" not in paths and not (out / "best_policy.yaml").exists()
    rows = list(csv.DictReader(paths["pareto"].open()))
    assert rows and set(rows[0]) >= {"trial", "cost", "slo_violation", "feasible", "target", "window", "tolerance"}
    assert all(r["window"].endswith("s") for r in rows)
    assert sorted(p.name for p in out.iterdir()) == ["pareto.csv"]


# --------------------------------------------------------------------------- command line


def cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """The ``tidal`` command line, in-process (argparse errors become their exit status)."""
    try:
        return cli_main.main(argv)
    except SystemExit as exc:  # argparse errors
        return int(exc.code)


@pytest.fixture
def steady_file(tmp_path: Path) -> Path:
    path = tmp_path / "steady.yaml"
    path.write_text(STEADY)
    return path


def test_cli_tune_prints_front_and_writes_a_ready_policy(tmp_path, steady_file, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["tune", str(steady_file), "--trials", "8", "--slo", "p99=500ms", "--seed", "1", "--out", str(out),
            "--storage", str(tmp_path / "study.db"), "--quiet"]
    assert cli(argv, monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "search space" in printed and "Pareto front" in printed
    assert "cheapest configuration meeting the SLO p99 ≤ 500ms" in printed and "policy:" in printed
    assert sorted(p.name for p in out.iterdir()) == ["best_policy.yaml", "pareto.csv"]
    block = yaml.safe_load((out / "best_policy.yaml").read_text())["policy"]
    validate_policy_block(block)
    overrides = {"policy": block, "slo": {"latency": 0.5, "target": 0.99}}
    summary = simulate(load_scenario(steady_file, overrides=overrides)).summary
    assert summary.slo_met
    # Same command again: the study resumes.
    assert cli(argv[:3] + ["2"] + argv[4:], monkeypatch) == 0
    assert "10 completed in all" in capsys.readouterr().out


def test_cli_ctrl_c_saves_what_was_found_and_exits_130(tmp_path, steady_file, monkeypatch, capsys):
    calls = {"n": 0}
    real = tuning.run_variant

    def interrupt_fourth(variant):
        calls["n"] += 1
        if calls["n"] == 4:  # the baseline, two trials, then Ctrl-C in the third
            raise KeyboardInterrupt
        return real(variant)

    monkeypatch.setattr(tuning, "run_variant", interrupt_fourth)
    out = tmp_path / "out"
    assert cli(["tune", str(steady_file), "--trials", "50", "--out", str(out), "--quiet"], monkeypatch) == 130
    printed = capsys.readouterr().out
    assert "interrupted" in printed and "2 completed in all" in printed
    assert (out / "pareto.csv").exists()


@pytest.mark.parametrize("extra, message", [
    (["--slo", "99=1s"], "--slo: expected pNN=LATENCY"),
    (["--param", "targt=0.3:0.5"], "--param targt: no such parameter in policy 'target_utilization'"),
    (["--param", "target=0.9:0.5"], "--param target: LOW must be below HIGH"),
    (["--param", "tolerance=0:2"], "--param tolerance: range 0 – 2: policy.tolerance"),
    (["--policy", "magic"], "--policy: unknown policy 'magic'"),
    (["--policy", "static", "--only-params", "--param", "stabilization.down_window=0:5m"],
     "policy.replicas: required by policy 'static'"),
    (["--jobs", "0"], "--jobs: must be >= 1"),
    (["--trials", "-1"], "--trials: must be >= 0"),
    (["--storage", "{tmp}/nowhere/study.db"], "--storage: folder"),
    (["--set", "service.concurrency=0"], "service.concurrency"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, steady_file, monkeypatch, capsys, extra, message):
    out = tmp_path / "out"
    argv = ["tune", str(steady_file), "--trials", "2", "--out", str(out), "--quiet",
            *[e.format(tmp=tmp_path) for e in extra]]
    assert cli(argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_cli_refuses_a_storage_of_another_scenario(tmp_path, steady_file, monkeypatch, capsys):
    storage = str(tmp_path / "study.db")
    argv = ["tune", str(steady_file), "--trials", "1", "--storage", storage, "--no-save", "--quiet"]
    assert cli(argv, monkeypatch) == 0
    capsys.readouterr()
    other = tmp_path / "other.yaml"
    other.write_text(STEADY.replace("20/s", "30/s"))
    out = tmp_path / "out"
    argv = ["tune", str(other), "--trials", "1", "--storage", storage, "--out", str(out), "--quiet"]
    assert cli(argv, monkeypatch) == 2
    captured = capsys.readouterr()
    assert "--storage:" in captured.err and "holds study" in captured.err and "another --storage" in captured.err
    assert captured.out == "", "refused before anything is printed (the search space included)"
    assert not out.exists()


def test_early_storage_check_creates_no_file(tmp_path, steady_file):
    # The CLI checks the storage before printing; a new SQLite file is only created when the study opens.
    problem = make_problem(load_scenario(steady_file))
    check_storage(problem.key, str(tmp_path / "new.db"))
    assert not (tmp_path / "new.db").exists()


# Policies whose block has no default to start from: keda needs its triggers, rl its Q table.
NEEDS_A_BLOCK = {"keda", "rl"}


@pytest.mark.parametrize("policy", sorted(set(available_policies()) - NEEDS_A_BLOCK))
def test_every_policy_has_a_default_space_its_validation_accepts(policy):
    scenario = load_scenario(REPO / "examples" / "flash_crowd.yaml")
    space = build_space(policy, {}, scenario)  # checks every range's ends against the policy
    assert space.params
