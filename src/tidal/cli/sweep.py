"""``tidal sweep``: run a scenario over a grid of overrides, locally or on a Dask / Ray cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tidal.cli.simulate import parse_overrides
from tidal.config import load_scenario
from tidal.core.errors import TidalInputError
from tidal.experiment.variant import is_missing


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a scenario over a grid of overrides (cross product) and tabulate the results",
        description="Run every combination of the --grid values (dotted scenario keys, YAML values) and "
                    "collect one table: the grid values and each run's cost, SLO attainment and latency.",
    )
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="one axis, e.g. --grid policy.target=0.5,0.6,0.7 --grid service.cold_start=30s,120s "
                        "(repeatable; every combination runs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field in every run, e.g. --set service.concurrency=8 (repeatable)")
    p.add_argument("--jobs", type=int, metavar="J", help="local worker processes (default: number of CPUs)")
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--ray", metavar="ADDRESS", help="run on an existing Ray cluster: HOST:PORT or ray://HOST:PORT")
    cluster.add_argument("--dask", metavar="ADDRESS",
                         help="run on an existing Dask cluster: the scheduler address, e.g. tcp://HOST:8786")
    p.add_argument("--out", type=Path, help="results folder for sweep.csv (default: results/<scenario name>-sweep)")
    p.add_argument("--no-save", action="store_true", help="print the table only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    from tidal.cli.main import console
    from tidal.experiment.backends import connect, session
    from tidal.experiment.compare import default_jobs
    from tidal.experiment.grid import parse_axes
    from tidal.experiment.sweep import plan_sweep, run_sweep, write_csv

    # Everything the user typed — grid keys and values included — is checked before any run, and
    # the cluster is reached before anything is written.
    if args.jobs is not None and args.jobs < 1:
        raise TidalInputError("--jobs", f"must be >= 1, got {args.jobs}")
    scenario = load_scenario(args.scenario, overrides=parse_overrides(args.overrides))
    plan = plan_sweep(scenario, parse_axes(args.grid), source=str(args.scenario))
    out = args.out or Path("results") / f"{scenario.name}-sweep"
    if not args.no_save and out.exists() and not out.is_dir():
        raise TidalInputError("--out", f"{out} exists and is not a folder")
    backend = connect(jobs=min(args.jobs or default_jobs(), len(plan)), dask=args.dask, ray=args.ray)
    with session(backend):
        table = _run_with_progress(lambda progress: run_sweep(plan, backend, progress), len(plan), args.quiet)
    console.print(sweep_table(table, scenario.name, scenario.slo.latency))
    if not args.no_save:
        path = write_csv(table, out / "sweep.csv")
        console.print(f"results: {escape(str(path))}", highlight=False, soft_wrap=True)
    return 0


def _run_with_progress(run, total: int, quiet: bool):
    from tidal.cli.main import err_console

    if quiet:
        return run(None)
    progress = Progress(TextColumn("sweeping"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err_console, transient=True)
    with progress:
        task = progress.add_task("points", total=total)
        return run(lambda done, _total: progress.update(task, completed=done))


def sweep_table(table, name: str, slo_latency_s: float) -> Table:
    """Grid values and the headline figures, one row per point (sweep.csv has every figure)."""
    from tidal.core.units import format_duration
    from tidal.experiment.sweep import csv_cell

    out = Table(title=escape(f"{name} — sweep of {len(table.rows)} points"), header_style="bold",
                caption=f"SLO: share of requests within {format_duration(slo_latency_s)}; replicas: mean; "
                        "every figure is in sweep.csv")
    for key in table.keys:
        out.add_column(escape(key), overflow="fold")
    for header in ("cost", "SLO", "p99", "drops", "replicas"):
        out.add_column(header, justify="right", no_wrap=True)
    for record in table.records():
        grid = [escape(csv_cell(record[k])) for k in table.keys]
        attainment = record["slo_attainment"]
        mark = "[green]✓[/]" if record["slo_met"] else "[red]✗[/]"
        out.add_row(
            *grid,
            f"{record['cost']:,.4g}",
            "-" if is_missing(attainment) else f"{attainment:.2%} {mark}",
            _latency(record["latency_p99"]),
            f"{record['drop_rate']:.2%}",
            f"{record['mean_replicas']:.2f}",
        )
    return out


def _latency(value) -> str:
    if is_missing(value):
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.3g}s"
