"""``tidal tune``: search a policy's parameters for the cheapest configuration that meets the SLO.

Two objectives, both minimised, with Optuna (TPE, seeded): the run's **cost** and its **SLO
violation** ``max(0, target - attainment)``, where attainment is the fraction of requests (drops
count as misses) served within the SLO latency. ``--slo p99=1s`` means "99 % within 1 s", i.e. the
measured p99, counting drops as infinitely slow, is at most 1 s. A configuration is feasible when
its violation is 0; the answer is the cheapest feasible one, and the Pareto front shows what a
little more (or less) money buys.

Every trial replays the same requests (the scenario's seed): differences between trials are
differences of parameters, not of luck. The loop uses Optuna's ask-and-tell interface, so trials
can run on a local process pool while the study (and its storage) stays in this process, and a
Ctrl-C stops cleanly: running trials are marked failed and what was found is returned.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from tidal.config.scenario import Scenario, SLOSpec
from tidal.core.errors import TidalInputError
from tidal.core.units import format_duration, parse_duration
from tidal.experiment.backends import LocalBackend
from tidal.experiment.compare import portable_scenario
from tidal.experiment.space import Param, Space, build_space, format_value, start_values
from tidal.experiment.study import StudyKey, open_study, study_key
from tidal.experiment.sweep import atomic_write_text, csv_cell
from tidal.experiment.variant import Failure, Figures, Variant, is_missing, policy_modules, run_variant
from tidal.policy import validate_policy_block

_SLO = re.compile(r"^\s*p(\d+(?:\.\d+)?)\s*(?:=|<=)\s*(\S+)\s*$", re.IGNORECASE)


# --------------------------------------------------------------------------- the problem


@dataclass(frozen=True)
class SLO:
    """``target`` of requests (drops count as misses) within ``latency_s`` seconds."""

    latency_s: float
    target: float

    def label(self) -> str:
        return f"p{self.target * 100:g} ≤ {format_duration(self.latency_s)}"


def parse_slo(text: str) -> SLO:
    """``p99=1s`` / ``p99.9=250ms`` → :class:`SLO` (raises :class:`TidalInputError`)."""
    match = _SLO.match(text)
    if not match:
        raise TidalInputError("--slo", f"expected pNN=LATENCY such as p99=1s, got {text!r}")
    percentile = float(match.group(1))
    if not 0 < percentile < 100:
        raise TidalInputError("--slo", f"the percentile must lie in (0, 100), got p{match.group(1)}")
    try:
        latency = parse_duration(match.group(2))
    except ValueError as exc:
        raise TidalInputError("--slo", str(exc)) from None
    if latency <= 0:
        raise TidalInputError("--slo", f"the latency must be > 0, got {match.group(2)!r}")
    return SLO(latency, percentile / 100)


@dataclass(frozen=True)
class TuneProblem:
    """A scenario (its SLO the one tuned for), a search space, and how to run one trial."""

    scenario: Scenario
    space: Space
    source: str = "scenario"
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def slo(self) -> SLO:
        return SLO(self.scenario.slo.latency, self.scenario.slo.target)

    @property
    def key(self) -> StudyKey:
        return study_key(self.scenario, self.space)

    def variant(self, block: Mapping[str, Any]) -> Variant:
        """The scenario with ``block`` as its policy."""
        return Variant(self.data, {"policy": dict(block)}, self.source, policy_modules(self.space.policy))


def make_problem(
    scenario: Scenario,
    policy: str | Mapping[str, Any] | None = None,
    *,
    slo: SLO | None = None,
    params: Sequence[str] = (),
    only_params: bool = False,
    source: str = "scenario",
) -> TuneProblem:
    """Build the problem: ``policy`` is a name, a block, or ``None`` for the scenario's own.

    The base block (where trials start) is the scenario's block when it names the same policy,
    so its fixed settings (``metric: concurrency``) carry over. ``slo`` replaces the scenario's.
    """
    if policy is None:
        base: Mapping[str, Any] = scenario.policy
    elif isinstance(policy, str):
        base = scenario.policy if scenario.policy.get("name") == policy else {"name": policy}
    else:
        base = policy
    name = base.get("name")
    if not isinstance(name, str):
        raise TidalInputError("--policy", "the policy block needs a 'name'")
    if slo is not None:
        scenario = scenario.model_copy(update={"slo": SLOSpec(latency=slo.latency_s, target=slo.target)})
    space = build_space(name, base, scenario, params, only_params)
    scenario = scenario.model_copy(update={"policy": dict(space.base)})
    return TuneProblem(scenario, space, source, portable_scenario(scenario))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TrialRecord:
    """One evaluated configuration: its parameters, both objectives and the run's figures."""

    number: int
    params: Mapping[str, Any]
    cost: float
    violation: float
    figures: Mapping[str, Any]

    @property
    def feasible(self) -> bool:
        return self.violation <= 0.0


def violation_of(figures: Mapping[str, Any], slo: SLO) -> float:
    """``max(0, target - attainment)``; a run with no requests violates nothing."""
    attainment = figures.get("slo_attainment")
    if is_missing(attainment):
        return 0.0 if not figures.get("arrivals") else slo.target
    return max(0.0, slo.target - float(attainment))


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Records no other record beats on both cost and violation, cheapest first.

    Of several records with identical objectives only the earliest is kept.
    """
    ordered = sorted(records, key=lambda r: (r.cost, r.violation, r.number))
    front: list[TrialRecord] = []
    best_violation = math.inf
    for record in ordered:
        # Sorted by cost: a record is dominated iff a cheaper-or-equal one had lower-or-equal
        # violation; keeping the running minimum decides that in one pass.
        if record.violation < best_violation:
            front.append(record)
            best_violation = record.violation
    return front


def cheapest_feasible(records: Sequence[TrialRecord]) -> TrialRecord | None:
    """The cheapest record that meets the SLO (ties: higher attainment, then earlier)."""
    feasible = [r for r in records if r.feasible]
    if not feasible:
        return None
    return min(feasible, key=lambda r: (r.cost, -float(r.figures.get("slo_attainment") or 0.0), r.number))


@dataclass(frozen=True)
class TuneProgress:
    """Passed to callbacks after every finished trial of this run."""

    done: int
    total: int
    record: TrialRecord | None
    best: TrialRecord | None


Callback = Callable[[TuneProgress], None]


@dataclass(frozen=True)
class TuneResult:
    """All completed trials of the study (earlier runs included) and how this run went."""

    problem: TuneProblem
    study_name: str
    records: tuple[TrialRecord, ...]
    finished: int
    failed: int
    interrupted: bool
    baseline: TrialRecord | None = None
    failures: tuple[str, ...] = ()

    @property
    def pareto(self) -> list[TrialRecord]:
        return pareto_front(self.records)

    @property
    def best(self) -> TrialRecord | None:
        return cheapest_feasible(self.records)

    def block(self, record: TrialRecord) -> dict[str, Any]:
        """The ready-to-use policy block of ``record`` (durations written as ``90s``)."""
        by_path = {p.path: p for p in self.problem.space.params}
        values = {
            path: format_value(v, by_path[path].duration) if path in by_path else v for path, v in record.params.items()
        }
        return self.problem.space.block(values)


# --------------------------------------------------------------------------- the loop


def tune(
    problem: TuneProblem,
    trials: int,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    jobs: int = 1,
    callbacks: Sequence[Callback] = (),
    baseline: bool = True,
) -> TuneResult:
    """Run ``trials`` more trials of ``problem`` (resuming the study in ``storage`` if any).

    ``seed`` seeds the sampler (default: the scenario's seed), so a sequential run is
    reproducible; with ``jobs > 1`` trials run in a process pool and their order (hence the
    sampler's history) depends on timing. A ``KeyboardInterrupt`` — Ctrl-C, or raised by a
    callback — stops the loop; the result then has ``interrupted`` set. ``baseline`` also runs the
    starting block once, for comparison.
    """
    if trials < 0:
        raise TidalInputError("--trials", f"must be >= 0, got {trials}")
    sampler = optuna.samplers.TPESampler(seed=problem.scenario.seed if seed is None else seed)
    study = open_study(problem.key, storage, sampler, study_name)
    return _Loop(problem, study, trials, jobs, callbacks).run(baseline)


class _Loop:
    """One run of the ask → evaluate → tell loop (state kept here, not in closures)."""

    def __init__(
        self, problem: TuneProblem, study: optuna.Study, trials: int, jobs: int, callbacks: Sequence[Callback],
    ) -> None:
        self.problem = problem
        self.study = study
        self.trials = trials
        self.backend = LocalBackend(jobs)
        self.callbacks = tuple(callbacks)
        self.records = _records(study, problem)
        self.cache = {_params_key(r.params): r for r in self.records}
        self.best = cheapest_feasible(self.records)
        self.finished = 0
        self.failed = 0
        self.failures: list[str] = []
        self.pending: dict[Any, tuple[optuna.trial.Trial, dict[str, Any]]] = {}
        self.asking: optuna.trial.Trial | None = None

    def run(self, baseline: bool) -> TuneResult:
        interrupted = False
        start = None
        abort = True
        try:
            if baseline:
                start = self._baseline()
            if not self.records and not self.study.trials:
                self._enqueue_start()
            asked = 0
            while asked < self.trials or self.pending:
                while asked < self.trials and len(self.pending) < (self.backend.window or 1):
                    asked += 1
                    self._ask()
                if self.pending:
                    done, _ = self.backend.wait_any(list(self.pending))
                    for handle in done:
                        trial, values = self.pending.pop(handle)
                        self._tell(trial, values, self.backend.result(handle))
            abort = False
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self._fail_unfinished()
            self.backend.close(abort=abort)
        return TuneResult(
            self.problem, self.study.study_name, tuple(_records(self.study, self.problem)), self.finished, self.failed,
            interrupted, start, tuple(self.failures),
        )

    def _baseline(self) -> TrialRecord | None:
        block = dict(self.problem.space.base)
        try:
            validate_policy_block(block)
        except TidalInputError:
            return None  # e.g. a required parameter only the search space provides
        outcome = run_variant(self.problem.variant(block))
        if isinstance(outcome, Failure):
            raise outcome.error()
        return TrialRecord(-1, {}, outcome["cost"], violation_of(outcome, self.problem.slo), outcome)

    def _enqueue_start(self) -> None:
        """Make trial 0 the starting configuration, as far as it lies inside the space."""
        values = start_values(self.problem.space)
        start = {
            param.path: int(values[param.path]) if param.kind == "int" else values[param.path]
            for param in self.problem.space.params
            if _inside(param, values.get(param.path))
        }
        if start:
            self.study.enqueue_trial(start, skip_if_exists=True)

    def _ask(self) -> None:
        trial = self.asking = self.study.ask()
        try:
            values = {p.path: p.suggest(trial) for p in self.problem.space.params}
        except ValueError as exc:  # the stored study samples a parameter differently
            raise TidalInputError("--param", f"does not fit study {self.study.study_name!r}: {exc}") from None
        block = self.problem.space.block(values)
        try:
            validate_policy_block(block)
        except TidalInputError as exc:
            # Parameters valid one by one may clash (cross-field rules): skip the combination.
            self._fail(trial, f"invalid combination: {str(exc).replace('Value error, ', '')}")
            return
        cached = self.cache.get(_params_key(values))
        if cached is not None:
            trial.set_user_attr("duplicate_of", cached.number)
            self._complete(trial, values, dict(cached.figures))
            return
        handle = self.backend.submit(run_variant, self.problem.variant(block))
        self.pending[handle] = (trial, values)
        self.asking = None

    def _tell(self, trial: optuna.trial.Trial, values: dict[str, Any], outcome: Figures | Failure) -> None:
        if isinstance(outcome, Failure):
            self._fail(trial, str(outcome.error()))
            raise outcome.error()
        self._complete(trial, values, outcome)

    def _complete(self, trial: optuna.trial.Trial, values: dict[str, Any], figures: Figures) -> None:
        # One attribute, one storage write (JSON: NaN stored as null).
        trial.set_user_attr("figures", {k: None if is_missing(v) else v for k, v in figures.items()})
        violation = violation_of(figures, self.problem.slo)
        record = TrialRecord(trial.number, values, float(figures["cost"]), violation, figures)
        self.study.tell(trial, [record.cost, record.violation])
        self.asking = None
        self.records.append(record)
        self.cache.setdefault(_params_key(values), record)
        if record.feasible and (self.best is None or record.cost < self.best.cost):
            self.best = record
        self.finished += 1
        self._notify(record)

    def _fail(self, trial: optuna.trial.Trial, reason: str) -> None:
        trial.set_user_attr("failure", reason)
        self.study.tell(trial, state=TrialState.FAIL)
        self.asking = None
        self.failed += 1
        self.finished += 1
        self.failures.append(f"trial {trial.number}: {reason}")
        self._notify(None)

    def _notify(self, record: TrialRecord | None) -> None:
        progress = TuneProgress(self.finished, self.trials, record, self.best)
        for callback in self.callbacks:
            callback(progress)

    def _fail_unfinished(self) -> None:
        """Trials asked but not told (interrupted, or an error) are marked failed for a resume."""
        unfinished = [t for t, _ in self.pending.values()]
        if self.asking is not None:
            unfinished.append(self.asking)
        self.backend.cancel(list(self.pending))
        self.pending.clear()
        self.asking = None
        for trial in unfinished:
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _inside(param: Param, value: Any) -> bool:
    if param.kind == "categorical":
        return any(value == c and type(value) is type(c) for c in param.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not param.low <= value <= param.high:
        return False
    if param.kind == "int" and not float(value).is_integer():
        return False
    step = param.step or (1 if param.kind == "int" else None)
    return step is None or abs((value - param.low) / step - round((value - param.low) / step)) < 1e-9


def _params_key(values: Mapping[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in values.items()))


def _records(study: optuna.Study, problem: TuneProblem) -> list[TrialRecord]:
    """Completed trials as records (parameters normalised as the trial evaluated them)."""
    by_path = {p.path: p for p in problem.space.params}
    records = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        params = {k: by_path[k].normalize(v) if k in by_path else v for k, v in trial.params.items()}
        figures = {k: (math.nan if v is None else v) for k, v in trial.user_attrs.get("figures", {}).items()}
        cost, violation = trial.values
        records.append(TrialRecord(trial.number, params, float(cost), float(violation), figures))
    return records


# --------------------------------------------------------------------------- outputs


def policy_yaml(result: TuneResult, record: TrialRecord) -> str:
    """``record``'s policy block as YAML, with a comment saying what it achieved."""
    slo = result.problem.slo
    f = record.figures
    header = [
        f"# tuned by `tidal tune` for scenario {result.problem.scenario.name!r}, study {result.study_name},"
        f" trial {record.number}",
        f"# SLO {slo.label()}: attainment {_pct(f.get('slo_attainment'))} (target {slo.target * 100:g}%),"
        f" p99 {_seconds(f.get('latency_p99'))}",
        f"# cost {record.cost:.6g} (replica-hours {float(f.get('replica_hours', math.nan)):.6g},"
        f" mean replicas {float(f.get('mean_replicas', math.nan)):.3g})",
    ]
    body = yaml.safe_dump({"policy": result.block(record)}, sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def pareto_csv(result: TuneResult) -> str:
    """The Pareto front as CSV: trial, objectives, key figures, then one column per parameter."""
    params = [p.path for p in result.problem.space.params]
    figures = ("slo_attainment", "latency_p99", "drop_rate", "replica_hours", "mean_replicas", "max_replicas")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "cost", "slo_violation", "feasible", *figures, *params])
    by_path = {p.path: p for p in result.problem.space.params}
    for record in result.pareto:
        row = [record.number, record.cost, record.violation, record.feasible]
        row += [record.figures.get(name) for name in figures]
        row += [format_value(record.params.get(path), by_path[path].duration) for path in params]
        writer.writerow([csv_cell(v) for v in row])
    return buffer.getvalue()


def save(result: TuneResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``pareto.csv`` and, if a configuration met the SLO, ``best_policy.yaml`` (atomically).

    Without a feasible configuration a ``best_policy.yaml`` left from an earlier run is removed,
    so the folder never shows an answer this run did not find.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"pareto": out / "pareto.csv"}
    atomic_write_text(paths["pareto"], pareto_csv(result))
    best_path = out / "best_policy.yaml"
    if result.best is not None:
        atomic_write_text(best_path, policy_yaml(result, result.best))
        paths["best_policy"] = best_path
    else:
        best_path.unlink(missing_ok=True)
    return paths


def _pct(value: Any) -> str:
    return "-" if is_missing(value) else f"{float(value):.3%}"


def _seconds(value: Any) -> str:
    return "-" if is_missing(value) else f"{float(value):.4g}s"
