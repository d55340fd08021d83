"""``tidal simulate``, ``tidal validate`` and ``tidal policies``."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tidal.config import load_scenario
from tidal.config.scenario import ControlSpec
from tidal.core.errors import TidalInputError
from tidal.core.units import format_duration

#: Runs shorter than this show no progress bar.
PROGRESS_AFTER_S = 2.0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="replay a scenario against a policy and summarise latency and cost")
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    p.add_argument("--policy", help="policy name (defaults) or a YAML mapping, e.g. '{name: static, replicas: 4}'")
    p.add_argument("--seed", type=int, help="random seed (overrides the scenario's)")
    p.add_argument("--out", type=Path, help="results folder (default: results/<scenario name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, e.g. --set service.concurrency=8 (repeatable)")
    p.add_argument("--no-save", action="store_true", help="print the summary only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_simulate)

    v = sub.add_parser("validate", help="check a scenario file and print it with defaults filled in")
    v.add_argument("scenario", type=Path)
    v.set_defaults(handler=run_validate)

    pol = sub.add_parser("policies", help="list the registered policies")
    pol.set_defaults(handler=run_policies)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TidalInputError("--set", f"expected KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise TidalInputError(f"--set {key}", f"cannot parse value {value!r}") from None
    return overrides


def parse_policy_option(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise TidalInputError("--policy", f"expected a policy name or a YAML mapping, got {text!r}") from None
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict):
        return value
    raise TidalInputError("--policy", f"expected a policy name or a YAML mapping, got {text!r}")


def run_validate(args: argparse.Namespace) -> int:
    from tidal.policy import validate_policy_block

    scenario = load_scenario(args.scenario)
    validate_policy_block(scenario.policy)
    from tidal.cli.main import console

    console.print(f"[green]ok[/] {args.scenario}")
    console.print(yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False), highlight=False)
    return 0


def run_policies(args: argparse.Namespace) -> int:
    from tidal.cli.main import console
    from tidal.config.scenario import ControlSpec
    from tidal.policy import available_policies, effective_control

    table = Table(title="policies", caption="cadence: decide / scrape when the scenario sets no control periods")
    table.add_column("name")
    table.add_column("what it does")
    table.add_column("cadence", no_wrap=True)
    for name, entry in available_policies().items():
        control = effective_control(ControlSpec(), name)
        table.add_row(name, entry.summary, f"{control.sync:g}s / {control.scrape:g}s")
    console.print(table)
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from tidal.cli.main import console
    from tidal.policy import validate_policy_block
    from tidal.sim import Simulation

    overrides = parse_overrides(args.overrides)
    policy_block = parse_policy_option(args.policy)
    if policy_block is not None:
        overrides["policy"] = policy_block
    scenario = load_scenario(args.scenario, overrides=overrides)
    validate_policy_block(scenario.policy)
    out_dir = args.out or Path("results") / scenario.name
    if out_dir.exists() and not out_dir.is_dir():
        raise TidalInputError("--out", f"{out_dir} exists and is not a folder")
    sim = Simulation(scenario, seed=args.seed)
    started = time.monotonic()
    result = _run_with_progress(sim, quiet=args.quiet)
    wall = time.monotonic() - started
    console.print(summary_table(result.summary, scenario.name, wall, sim.scenario.control))
    if not args.no_save:
        paths = result.save(out_dir)
        console.print(f"results: {paths['summary'].parent}/ (ticks.parquet, summary.json, latency_histogram.json)")
    return 0


def _run_with_progress(sim, quiet: bool):
    from tidal.cli.main import err_console

    if quiet:
        return sim.run()
    started = time.monotonic()
    state: dict[str, Any] = {"progress": None, "task": None}

    def report(fraction: float) -> None:
        if state["progress"] is None:
            if time.monotonic() - started < PROGRESS_AFTER_S or fraction >= 1.0:
                return
            progress = Progress(
                TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=True,
            )
            progress.start()
            state["progress"] = progress
            state["task"] = progress.add_task("sim", total=1.0)
        state["progress"].update(state["task"], completed=fraction)

    try:
        return sim.run(progress=report)
    finally:
        if state["progress"] is not None:
            state["progress"].stop()


def _fmt_latency(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"


def summary_table(s, name: str, wall_s: float, control: ControlSpec | None = None) -> Table:
    """The run's summary; ``control`` (resolved: the cadence the run used) adds the decisions row."""
    table = Table(title=f"{name} — {s.policy}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("simulated", f"{format_duration(s.duration_s)} in {wall_s:.2f} s wall"),
        ("requests", f"{s.arrivals:,}"),
        ("completed", f"{s.completions:,}"),
        ("dropped", f"{s.drops:,} ({s.drop_rate:.3%})" + (
            "  " + ", ".join(f"{k} {v:,}" for k, v in s.drops_by_reason.items() if v) if s.drops else "")),
        ("latency p50 / p95", f"{_fmt_latency(s.latency_p50)} / {_fmt_latency(s.latency_p95)}"),
        ("latency p99 / p99.9", f"{_fmt_latency(s.latency_p99)} / {_fmt_latency(s.latency_p999)}"),
        (f"SLO ≤ {_fmt_latency(s.slo_latency_s)}", f"{s.slo_attainment:.3%} (target {s.slo_target:.2%}) "
         + ("[green]met[/]" if s.slo_met else "[red]missed[/]")),
        ("replica-hours", f"{s.replica_hours:,.2f}  (mean {s.mean_replicas:.1f}, max {s.max_replicas})"),
        ("cost", f"{s.cost:,.2f}"),
        ("scale events", f"{s.scale_events} ({s.scale_ups} up, {s.scale_downs} down)"),
        *([("decisions", f"{s.decisions:,} (every {format_duration(control.sync)}, "
                         f"metrics every {format_duration(control.scrape)})")] if control is not None else []),
        ("mean utilization", "-" if math.isnan(s.mean_utilization) else f"{s.mean_utilization:.1%}"),
    ]
    if s.crashes:
        rows.append(("replica crashes", str(s.crashes)))
    for metric, value in rows:
        table.add_row(metric, value)
    return table
