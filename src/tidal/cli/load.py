"""``tidal load URL``: send an open-loop load (a scenario's workload or a constant rate) and summarise it."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table

from tidal.core.errors import TidalInputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load", help="send load to a URL: a scenario's workload or a constant rate (open loop), or max throughput",
        description="Open loop: requests leave at the arrival times of a scenario's workload (the stream "
                    "tidal simulate serves for the same seed) or of a Poisson process at --rate, whatever the "
                    "server answers. Closed loop (--closed N): N clients send back to back. Ctrl-C stops "
                    "sending and waits for answers (twice: cancels them); the summary is printed either way.",
    )
    p.add_argument("url", help="target, e.g. http://127.0.0.1:8080 (the --path is appended when it has none)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--scenario", type=Path, help="scenario YAML: replay its workload (seed, duration, chunking)")
    what.add_argument("--rate", help="constant Poisson arrival rate, e.g. 20/s or 600/min")
    what.add_argument("--closed", type=int, metavar="N", help="closed loop with N concurrent clients (max throughput)")
    p.add_argument("--duration", help="how long, e.g. 60s (required with --rate and --closed; overrides the scenario's)")
    p.add_argument("--max-requests", type=int, metavar="N", help="stop after sending N requests")
    p.add_argument("--timeout", default="10s", help="limit on one request (default 10s)")
    p.add_argument("--connections", type=int, default=256,
                   help="safety cap on requests in flight (default 256); at the cap sending waits")
    p.add_argument("--path", default="/predict", help="request path when the URL has none (default /predict)")
    p.add_argument("--method", default="POST", choices=["GET", "POST", "PUT", "DELETE"])
    p.add_argument("--body", help='JSON request body (default {"digits": 1}; "null" for none)')
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="extra request header (repeatable)")
    p.add_argument("--no-keys", action="store_true", help="do not send the arrivals' routing keys (X-Tidal-Key)")
    p.add_argument("--seed", type=int, help="arrival seed (default: the scenario's, else 0)")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="wall seconds per workload second (0.1 replays 10 minutes in 1 at 10x the rate)")
    p.add_argument("--out", type=Path, help="write the summary and a per-second timeline as JSON")
    p.add_argument("--requests", action="store_true", help="with --out, include every request's times and status")
    p.add_argument("--allow-remote", action="store_true", help="allow a target that is not a loopback address")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(handler=run_load_command)


def _parse_headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise TidalInputError("--header", f"expected 'NAME: VALUE', got {item!r}")
        headers[name.strip()] = value.strip()
    return headers


def _parse_body(text: str | None) -> Any:
    from tidal.loadgen import DEFAULT_BODY

    if text is None:
        return dict(DEFAULT_BODY)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise TidalInputError("--body", f"not valid JSON: {exc}") from None


def spec_fields_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The :class:`~tidal.loadgen.LoadSpec` fields the flags describe, and a label for the load."""
    from tidal.config import load_scenario
    from tidal.loadgen import sim_chunk_seconds

    fields: dict[str, Any] = {
        "url": args.url, "path": args.path, "method": args.method, "body": _parse_body(args.body),
        "headers": _parse_headers(args.header), "keys": not args.no_keys, "timeout": args.timeout,
        "connections": args.connections, "time_scale": args.time_scale, "allow_remote": args.allow_remote,
    }
    if args.max_requests is not None:
        fields["max_requests"] = args.max_requests
    if args.duration is not None:
        fields["duration"] = args.duration
    if args.scenario is not None:
        scenario = load_scenario(args.scenario)
        fields["workload"] = scenario.workload.model_dump()
        fields["seed"] = scenario.seed if args.seed is None else args.seed
        fields["chunk"] = sim_chunk_seconds(scenario.control, scenario.policy)
        if args.duration is None and scenario.duration is not None:
            fields["duration"] = scenario.duration
        label = f"scenario {scenario.name} ({scenario.workload.kind})"
    elif args.rate is not None:
        if args.duration is None and args.max_requests is None:
            raise TidalInputError("--duration", "required with --rate (e.g. --duration 60s)")
        fields["workload"] = {"kind": "constant", "rate": args.rate}
        fields["seed"] = 0 if args.seed is None else args.seed
        if args.duration is None:  # --max-requests alone: a horizon long enough to reach it
            fields["duration"] = 10 * 365 * 86400.0
        label = f"Poisson {args.rate}"
    else:
        fields["clients"] = args.closed
        label = f"closed loop, {args.closed} clients"
    return fields, label


def run_load_command(args: argparse.Namespace) -> int:
    from tidal.cli.main import console, err_console
    from tidal.loadgen import LoadGenerator, load_spec_from_dict

    fields, label = spec_fields_from_args(args)
    spec = load_spec_from_dict(fields, "load")
    if args.out is not None and args.out.exists() and args.out.is_dir():
        raise TidalInputError("--out", f"{args.out} is a folder; give a file name")
    generator = LoadGenerator(spec)
    result, interrupted = asyncio.run(_drive(generator, label, quiet=args.quiet or not err_console.is_terminal))
    console.print(summary_table(result.summary, label))
    if args.out is not None:
        write_json(args.out, result.to_dict(requests=args.requests))
        console.print(f"results: {args.out}", highlight=False)
    return 130 if interrupted else 0


async def _drive(generator: Any, label: str, quiet: bool) -> tuple[Any, bool]:
    """Run the generator with Ctrl-C handling and a progress line; (result, interrupted)."""
    from tidal.cli.main import err_console

    loop = asyncio.get_running_loop()
    interrupts = [0]

    def on_signal() -> None:
        interrupts[0] += 1
        if interrupts[0] == 1:
            generator.stop()
            in_flight = generator.progress().in_flight
            err_console.print(f"[yellow]stopping[/]: waiting for {in_flight} request(s) in flight "
                              "(Ctrl-C again to cancel them)", highlight=False)
        else:
            generator.abort()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
            pass
    progress_task = None if quiet else asyncio.create_task(_show_progress(generator, label))
    try:
        result = await generator.run()
    finally:
        if progress_task is not None:
            progress_task.cancel()
            try:
                await progress_task
            except asyncio.CancelledError:
                pass
        for sig in installed:
            loop.remove_signal_handler(sig)
    return result, interrupts[0] > 0


async def _show_progress(generator: Any, label: str) -> None:
    from rich.live import Live
    from rich.text import Text

    from tidal.cli.main import err_console

    total = generator.schedule.wall_duration if generator.schedule is not None else generator.spec.duration
    with Live(Text(""), console=err_console, transient=True, refresh_per_second=4) as live:
        while True:
            p = generator.progress()
            of = f" / {total:.0f}s" if total is not None and math.isfinite(total) and total < 1e6 else ""
            live.update(Text(f"{label}: {p.elapsed_s:.0f}s{of}  sent {p.sent:,}  answered {p.finished:,}  "
                             f"in flight {p.in_flight:,}" + ("  (stopping)" if generator.stopping else "")))
            await asyncio.sleep(0.25)


def _ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"


def summary_table(s: Any, label: str) -> Table:
    """The rich table ``tidal load`` prints."""
    table = Table(title=f"load — {label}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    stopped = f", [yellow]stopped after {s.span_s:.1f} s[/]" if s.stopped_early else ""
    rows = [
        ("target", s.target),
        ("duration", f"{s.duration_s:.1f} s planned{stopped}, {s.elapsed_s:.1f} s to the last answer"),
        ("sent", f"{s.sent:,} of {s.planned:,} planned" if s.mode == "open" else f"{s.sent:,}"),
        ("answered", f"{s.responses:,}" + ("  (" + ", ".join(f"{code}: {n:,}" for code, n in s.by_status.items())
                                          + ")" if s.by_status else "")),
        ("errors", ", ".join(f"{kind} {n:,}" for kind, n in s.errors.items()) or "0"),
    ]
    if s.in_flight:
        rows.append(("unfinished", f"{s.in_flight:,} (cancelled at the end)"))
    rate_row = (f"{s.offered_rps:.1f}/s offered, {s.sent_rps:.1f}/s sent, " if s.mode == "open" else "")
    rows += [
        ("rate", rate_row + f"{s.ok_rps:.1f}/s answered 2xx"),
        ("latency 2xx p50 / p95", f"{_ms(s.latency.p50)} / {_ms(s.latency.p95)}"),
        ("latency 2xx p99 / max", f"{_ms(s.latency.p99)} / {_ms(s.latency.max)}"),
    ]
    if s.mode == "open":
        lag = s.send_lag
        late = "  [yellow](behind schedule)[/]" if lag.count and lag.p99 > 0.05 else ""
        rows.append(("send lag p99 / max", f"{_ms(lag.p99)} / {_ms(lag.max)}{late}"))
    if s.by_worker and len(s.by_worker) <= 16:
        rows.append(("by worker", ", ".join(f"{w} {n:,}" for w, n in s.by_worker.items())))
    for kind, example in s.error_examples.items():
        rows.append((f"e.g. {kind}", example))
    for metric, value in rows:
        table.add_row(metric, value)
    return table


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` atomically: a failure leaves no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

