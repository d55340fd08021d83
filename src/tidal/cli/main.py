"""``tidal`` command line: parse arguments, call the library, print results.

Bad input never shows a traceback: :class:`~tidal.core.errors.TidalInputError` (and argument
errors) print one line naming the field or file and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from tidal import __version__
from tidal.core.errors import TidalInputError

EXIT_INPUT_ERROR = 2

# Rich assumes 80 columns when output is not a terminal (CI logs, pipes); tables of several
# policies need more, so give them room there instead of wrapping every cell.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default exits 2 too; keep the format ours
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        self.print_usage(sys.stderr)
        raise SystemExit(EXIT_INPUT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from tidal.cli import compare as compare_cmd
    from tidal.cli import export as export_cmd
    from tidal.cli import load as load_cmd
    from tidal.cli import plan as plan_cmd
    from tidal.cli import run as run_cmd
    from tidal.cli import serve as serve_cmd
    from tidal.cli import simulate as simulate_cmd
    from tidal.cli import sweep as sweep_cmd
    from tidal.cli import tune as tune_cmd

    parser = _Parser(prog="tidal", description="Elastic scaling for AI services: simulate and run autoscaling policies.")
    parser.add_argument("--version", action="version", version=f"tidal {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    simulate_cmd.add_commands(sub)
    compare_cmd.add_commands(sub)
    plan_cmd.add_commands(sub)
    export_cmd.add_commands(sub)
    tune_cmd.add_commands(sub)
    sweep_cmd.add_commands(sub)
    serve_cmd.add_commands(sub)
    run_cmd.add_commands(sub)
    load_cmd.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except TidalInputError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
