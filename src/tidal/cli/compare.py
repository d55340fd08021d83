"""``tidal compare``: run several policies on identical traffic and report latency, SLO and cost."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tidal.cli.simulate import parse_overrides
from tidal.config import load_scenario
from tidal.core.errors import TidalInputError

#: Marks the best value of each column, as in report.html (styles alone vanish when piped).
BEST_MARK = "★"


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="run several policies on identical requests; summary table, plots and an HTML report",
        description="Run every policy on the same arrivals and service times (common random numbers) "
                    "and compare latency, SLO attainment, drops and cost.",
    )
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    p.add_argument("--policies", metavar="NAMES",
                   help="comma-separated policy names, e.g. hpa,kpa,queueing (defaults, except the scenario's "
                        "own policy, which keeps its block)")
    p.add_argument("--policies-file", type=Path, metavar="FILE",
                   help="YAML mapping labels to policy blocks, e.g. 'hpa-60: {name: hpa, ...}'")
    p.add_argument("--replications", type=int, default=1, metavar="N",
                   help="seeds per policy (seed .. seed+N-1); N > 1 adds 95%% confidence intervals")
    p.add_argument("--seed", type=int, help="first seed (default: the scenario's)")
    p.add_argument("--out", type=Path, help="results folder (default: results/<scenario name>-compare)")
    p.add_argument("--jobs", type=int, metavar="J", help="parallel simulations (default: number of CPUs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, e.g. --set service.concurrency=8 (repeatable)")
    p.add_argument("--no-save", action="store_true", help="print the summary table only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from tidal.cli.main import console
    from tidal.experiment import resolve_arms, run_comparison, seeds_for, summary_rows
    from tidal.report import check_output_folder, write_comparison

    # Everything the user typed is checked before the first simulation starts.
    if args.jobs is not None and args.jobs < 1:
        raise TidalInputError("--jobs", f"must be >= 1, got {args.jobs}")
    scenario = load_scenario(args.scenario, overrides=parse_overrides(args.overrides))
    names = [n for n in (args.policies or "").split(",") if n.strip()]
    arms = resolve_arms(scenario, names, args.policies_file)
    seeds = seeds_for(scenario, args.replications, args.seed)
    out = args.out or Path("results") / f"{scenario.name}-compare"
    if not args.no_save:
        check_output_folder(out)

    comparison = _run_with_progress(lambda progress: run_comparison(scenario, arms, seeds, jobs=args.jobs,
                                                                    progress=progress),
                                    total=len(arms) * len(seeds), quiet=args.quiet)
    rows = summary_rows(comparison)
    console.print(comparison_table(comparison, rows))
    if not args.no_save:
        write_comparison(comparison, out, rows)
        console.print(f"report: {escape(str(out / 'report.html'))}  (summary.csv, comparison.json, plots)",
                      highlight=False, soft_wrap=True)
    return 0


def _run_with_progress(run, total: int, quiet: bool):
    from tidal.cli.main import err_console

    if quiet:
        return run(None)
    progress = Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err_console, transient=True)
    with progress:
        task = progress.add_task("runs", total=total)
        return run(lambda done, _total: progress.update(task, completed=done))


def comparison_table(comparison, rows, width: int | None = None) -> Table:
    """The summary as a rich table: the best value of each column marked ★ (and bold green on a terminal).

    When ``mean ± half-width`` cells would not fit in ``width`` columns, the half-width goes on a
    second line of its cell instead of being wrapped mid-number.
    """
    from tidal.cli.main import console

    width = console.width if width is None else width
    table = _table(comparison, rows, stacked=False)
    if comparison.replications > 1 and console.measure(table, options=console.options.update_width(10_000)).maximum > width:
        table = _table(comparison, rows, stacked=True)
    return table


def _table(comparison, rows, stacked: bool) -> Table:
    from tidal.experiment.summary import formatted_table

    n = comparison.replications
    sc = comparison.scenario
    title = f"{sc.name} — {len(rows)} polic{'ies' if len(rows) != 1 else 'y'}"
    caption = (f"mean ± 95% CI over seeds {comparison.seeds[0]}–{comparison.seeds[-1]}; " if n > 1
               else f"seed {comparison.seeds[0]}; ") + f"{BEST_MARK} best per column"
    # Short headers help the table fit an 80-column terminal.
    headers, cells = formatted_table(rows, sc.slo.latency, short=True)
    table = Table(title=escape(title), caption=caption, header_style="bold")
    table.add_column("policy", no_wrap=True)
    for title_text in headers:
        # Fold rather than cut with an ellipsis: a digit is never hidden.
        table.add_column(escape(title_text), justify="right", overflow="fold")
    for row, row_cells in zip(rows, cells, strict=True):
        texts = []
        for text, best in row_cells:
            if best:
                # A text mark, as in the HTML report: colour alone is lost when the output is piped
                # (Rich drops styles off a terminal), in CI logs, and for colour-blind readers.
                mean, sep, spread = text.partition(" ± ")
                text = f"{mean} {BEST_MARK}{sep}{spread}"
            text = escape(text.replace(" ± ", "\n±") if stacked else text)
            texts.append(f"[bold green]{text}[/]" if best else text)
        table.add_row(escape(row.label), *texts)
    return table
