"""``tidal tune``: search a policy's parameters for the cheapest configuration that meets the SLO."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tidal.cli.simulate import parse_overrides, parse_policy_option
from tidal.config import load_scenario
from tidal.core.errors import TidalInputError
from tidal.experiment.variant import is_missing

#: Pareto-front rows printed (all of them are in pareto.csv).
MAX_FRONT_ROWS = 15

#: Exit status after Ctrl-C (what was found is still printed and saved).
EXIT_INTERRUPTED = 130


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="search a policy's parameters (Optuna) for the cheapest configuration that meets the SLO",
        description="Minimise cost and SLO violation over the policy's parameters. Prints the Pareto front and "
                    "the cheapest configuration meeting the SLO as a ready-to-use policy block.",
    )
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    p.add_argument("--policy", help="policy name or YAML block, e.g. '{name: kpa, metric: rps}' "
                                    "(default: the scenario's policy, whose block is the starting point)")
    p.add_argument("--trials", type=int, default=100, metavar="N", help="trials to run now (added to a resumed study)")
    p.add_argument("--slo", metavar="pNN=LATENCY",
                   help="e.g. p99=1s: 99%% of requests (drops count as misses) within 1 s "
                        "(default: the scenario's slo)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=RANGE",
                   help="search range: target=0.3:0.95, window=15s:10m, kp=0.01:10:log, tolerance=0:0.2:0.05 (step), "
                        "metric=utilization,concurrency (choices), or NAME=VALUE to pin it (repeatable)")
    p.add_argument("--only-params", action="store_true", help="search only the --param parameters")
    p.add_argument("--storage", metavar="URL|PATH",
                   help="Optuna storage to keep and resume the study: sqlite:///study.db or a file path")
    p.add_argument("--study-name", help="study name (default: tidal-<policy>-<hash of scenario and policy>); "
                                        "lets several scenarios share one storage")
    p.add_argument("--seed", type=int, help="sampler seed (default: the scenario's seed)")
    p.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="trials in parallel (default 1, which makes the search reproducible)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, e.g. --set service.concurrency=8 (repeatable)")
    p.add_argument("--out", type=Path, help="folder for best_policy.yaml and pareto.csv "
                                            "(default: results/<scenario name>-tune)")
    p.add_argument("--no-save", action="store_true", help="print only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_tune_command)


def run_tune_command(args: argparse.Namespace) -> int:
    from tidal.cli.main import console

    try:
        import optuna

        from tidal.experiment import tune as tuning
        from tidal.experiment.study import check_storage
    except ImportError as exc:  # pragma: no cover - optuna is an install extra
        raise TidalInputError("tidal tune", f"needs optuna ({exc}), a tidal dependency: reinstall tidal") from None

    # Everything the user typed is checked before the first trial (and before the storage opens).
    if args.jobs < 1:
        raise TidalInputError("--jobs", f"must be >= 1, got {args.jobs}")
    if args.trials < 0:
        raise TidalInputError("--trials", f"must be >= 0, got {args.trials}")
    scenario = load_scenario(args.scenario, overrides=parse_overrides(args.overrides))
    slo = tuning.parse_slo(args.slo) if args.slo else None
    problem = tuning.make_problem(scenario, parse_policy_option(args.policy), slo=slo, params=args.param,
                                  only_params=args.only_params, source=str(args.scenario))
    out = args.out or Path("results") / f"{scenario.name}-tune"
    if not args.no_save and out.exists() and not out.is_dir():
        raise TidalInputError("--out", f"{out} exists and is not a folder")
    if args.storage:
        # A missing folder, a file that is no study database, or a study made for another scenario
        # is reported before any output (tune() checks again when it opens the study).
        check_storage(problem.key, args.storage, args.study_name)
    console.print(space_table(problem))
    if getattr(args, "verbose", 0) < 2:
        optuna.logging.set_verbosity(logging.WARNING)

    result = _run_with_progress(
        lambda callbacks: tuning.tune(problem, args.trials, storage=args.storage, study_name=args.study_name,
                                      seed=args.seed, jobs=args.jobs, callbacks=callbacks),
        args.trials, args.quiet,
    )
    _print_result(result, args.storage)
    if not args.no_save:
        paths = tuning.save(result, out)
        names = ", ".join(p.name for p in paths.values())
        console.print(f"saved: {escape(str(out))}/ ({names})", highlight=False, soft_wrap=True)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return 0


def _run_with_progress(run, total: int, quiet: bool):
    from tidal.cli.main import err_console

    if quiet:
        return run(())
    progress = Progress(TextColumn("tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
                        TimeElapsedColumn(), console=err_console, transient=True)
    with progress:
        task = progress.add_task("trials", total=total, best="no feasible configuration yet")

        def update(p) -> None:
            best = f"best feasible cost {p.best.cost:,.4g}" if p.best is not None else "no feasible configuration yet"
            progress.update(task, completed=p.done, best=best)

        return run((update,))


def space_table(problem) -> Table:
    """The searched parameters and their ranges."""
    from tidal.experiment.space import params_table

    table = Table(title=escape(f"search space — policy {problem.space.policy}, SLO {problem.slo.label()}"),
                  header_style="bold")
    table.add_column("parameter")
    table.add_column("range")
    table.add_column("from")
    for name, rng, origin in params_table(problem.space.params):
        table.add_row(escape(name), escape(rng), origin)
    return table


def _print_result(result, storage: str | None) -> None:
    from tidal.cli.main import console, err_console
    from tidal.experiment.tune import policy_yaml

    slo = result.problem.slo
    where = f" in {storage}" if storage else ""
    status = "[yellow]interrupted[/]: " if result.interrupted else ""
    console.print(f"{status}study {escape(result.study_name)}{escape(where)}: {result.finished} trials run now "
                  f"({result.failed} failed), {len(result.records)} completed in all", highlight=False, soft_wrap=True)
    for failure in result.failures[:3]:
        err_console.print(f"[yellow]skipped[/] {escape(failure)}", highlight=False, soft_wrap=True)
    if not result.records:
        console.print("no completed trial yet")
        return
    console.print(pareto_table(result))
    best = result.best
    baseline = result.baseline
    if best is None:
        closest = result.pareto[-1]
        console.print(
            f"[red]no configuration met the SLO {escape(slo.label())}[/]; closest: trial {closest.number} "
            f"(attainment {_pct(closest.figures.get('slo_attainment'))}, cost {closest.cost:,.4g}). "
            "Widen the ranges (--param) or run more trials.", highlight=False, soft_wrap=True,
        )
        return
    versus = ""
    if baseline is not None:
        change = (best.cost - baseline.cost) / baseline.cost if baseline.cost else math.nan
        met = "met" if baseline.feasible else "missed"
        versus = f"; the starting block costs {baseline.cost:,.4g} and {met} the SLO"
        if baseline.feasible and not math.isnan(change):
            versus += f" ({change:+.1%})"
    console.print(
        f"[green]cheapest configuration meeting the SLO {escape(slo.label())}[/]: trial {best.number}, "
        f"cost {best.cost:,.4g}, attainment {_pct(best.figures.get('slo_attainment'))}{escape(versus)}",
        highlight=False, soft_wrap=True,
    )
    console.print(escape(policy_yaml(result, best)), highlight=False, soft_wrap=True)


def pareto_table(result) -> Table:
    """The Pareto front, cheapest first: objectives, key figures and parameter values."""
    front = result.pareto
    params = result.problem.space.params
    hidden = len(front) - MAX_FRONT_ROWS
    more = f"; {hidden} more row{'s' if hidden > 1 else ''} in pareto.csv" if hidden > 0 else ""
    table = Table(title=f"Pareto front — {len(front)} of {len(result.records)} trials (cost vs SLO violation)",
                  header_style="bold", caption=f"SLO: attainment; replicas: mean{more}")
    for header in ("trial", "cost", "SLO", "met", "p99", "replicas"):
        table.add_column(header, justify="right", no_wrap=True)
    for param in params:
        table.add_column(escape(param.path), justify="right", overflow="fold")
    for record in front[:MAX_FRONT_ROWS]:
        f = record.figures
        met = "[green]✓[/]" if record.feasible else "[red]✗[/]"
        table.add_row(
            str(record.number), f"{record.cost:,.4g}", _pct(f.get("slo_attainment")), met,
            _latency(f.get("latency_p99")), f"{float(f.get('mean_replicas', math.nan)):.2f}",
            *(escape(_param_cell(record.params.get(p.path), p.duration)) for p in params),
        )
    return table


def _param_cell(value, duration: bool) -> str:
    from tidal.experiment.space import format_value
    from tidal.experiment.sweep import csv_cell

    # Display only: best_policy.yaml and pareto.csv keep every digit.
    if isinstance(value, float) and not duration:
        return f"{value:.6g}"
    return csv_cell(format_value(value, duration))


def _pct(value) -> str:
    return "-" if is_missing(value) else f"{float(value):.3%}"


def _latency(value) -> str:
    if is_missing(value):
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.3g}s"
