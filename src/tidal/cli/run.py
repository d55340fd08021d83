"""``tidal run CONFIG.yaml``: the live controller (observe → decide → act on the wall clock)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tidal.core.errors import TidalInputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the live controller: scale a local pool or a Kubernetes Deployment")
    p.add_argument("config", type=Path, help="controller YAML file (policy, replicas, metrics, actuator, ...)")
    p.add_argument("--dry-run", action="store_true", help="decide and log, never actuate")
    p.add_argument("--steps", type=int, help="stop after this many decisions (default: run until Ctrl-C)")
    p.add_argument("--dashboard-port", type=int, help="serve the dashboard on this port (0: any free port)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.set_defaults(handler=run_run)


def _decision_handler() -> None:
    """Print each decision's JSON line on stdout, whatever the -v level."""
    logger = logging.getLogger("tidal.live.decisions")
    for existing in logger.handlers:
        if getattr(existing, "_tidal_decisions", False):
            existing.setStream(sys.stdout)  # type: ignore[attr-defined]  (stdout may have been replaced)
            return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._tidal_decisions = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run_run(args: argparse.Namespace) -> int:
    from tidal.cli.main import err_console
    from tidal.live import load_controller_config, run_controller

    if args.steps is not None and args.steps < 1:
        raise TidalInputError("--steps", f"must be >= 1, got {args.steps}")
    if args.dashboard_port is not None and not 0 <= args.dashboard_port <= 65535:
        raise TidalInputError("--dashboard-port", f"must be within 0..65535, got {args.dashboard_port}")
    config = load_controller_config(args.config)
    if args.check:
        err_console.print(f"[green]ok[/] {args.config}")
        return 0
    _decision_handler()

    def started(controller, server) -> None:
        mode = " (dry run)" if controller.dry_run else ""
        where = f"; dashboard {server.url}" if server is not None else ""
        err_console.print(f"controller {controller.name}{mode}: {controller.policy.describe()} every "
                          f"{controller.sync_period:g}s{where}", highlight=False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
                pass
        await run_controller(config, dry_run=True if args.dry_run else None, steps=args.steps, stop=stop,
                             dashboard_port=args.dashboard_port, on_start=started)

    asyncio.run(main())
    return 0
