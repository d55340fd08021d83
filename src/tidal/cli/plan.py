"""``tidal plan``: how many replicas a latency SLO needs, what latency they give, what they cost.

    tidal plan --rate 120/s --service-time 50ms --cv 1.5 --concurrency 1 --slo p99=500ms --cost 2.5/h

Sizes with :mod:`tidal.queueing.planning` (exact M/M/c for Poisson arrivals and exponential
service, the G/G/c approximation otherwise) and prints the chosen count and a table of its
neighbours (c−2 .. c+3) so the price of one more or one fewer replica is visible.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any

from rich import box
from rich.table import Table

from tidal.core.errors import TidalInputError
from tidal.core.units import parse_duration, parse_rate
from tidal.queueing.planning import CapacityPlan, InfeasibleSLO, LatencySLO, PlanRow, plan_capacity
from tidal.queueing.service import ServiceTime, service_time

_SLO = re.compile(r"^\s*(?:p(?P<pct>\d+(?:\.\d+)?)|(?P<mean>mean))\s*=\s*(?P<latency>.+?)\s*$", re.IGNORECASE)
_MONEY_UNITS = {"h": 1.0, "hour": 1.0, "min": 60.0, "m": 60.0, "s": 3600.0, "d": 1.0 / 24.0, "day": 1.0 / 24.0}


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="replicas needed for a latency SLO, predicted latency and cost (queueing model)")
    p.add_argument("--rate", required=True, help="arrival rate, e.g. 120/s or 6000/min")
    p.add_argument("--service-time", required=True, help="mean service time per request, e.g. 50ms")
    p.add_argument("--cv", default="1.0", help="coefficient of variation of the service time (default 1: exponential)")
    p.add_argument("--distribution", default="gamma", help="service-time shape for the CV: gamma (default) or lognormal")
    p.add_argument("--arrival-cv", default="1.0", help="coefficient of variation of interarrival times (1: Poisson)")
    p.add_argument("--concurrency", default="1", help="requests one replica serves at once (default 1)")
    p.add_argument("--slo", required=True, help="latency SLO: p99=200ms, p99.9=1s or mean=150ms")
    p.add_argument("--cost", default="1/h", help="price of one replica, e.g. 2.5/h (default 1/h)")
    p.add_argument("--max-replicas", default="100000", help="give up above this many replicas")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(handler=run_plan)


# --------------------------------------------------------------------------- parsing


def parse_slo(text: str) -> LatencySLO:
    """``p99=200ms`` → P(T <= 200ms) >= 0.99; ``mean=150ms`` → mean response <= 150ms."""
    match = _SLO.match(text)
    if not match:
        raise TidalInputError("--slo", f"expected pNN=DURATION (e.g. p99=200ms) or mean=DURATION, got {text!r}")
    try:
        latency = parse_duration(match.group("latency"))
    except ValueError as exc:
        raise TidalInputError("--slo", str(exc)) from None
    if latency <= 0:
        raise TidalInputError("--slo", f"latency must be > 0, got {match.group('latency')!r}")
    if match.group("mean"):
        return LatencySLO(latency, None)
    pct = float(match.group("pct"))
    if not 0 < pct < 100:
        raise TidalInputError("--slo", f"percentile must lie strictly between 0 and 100, got p{match.group('pct')}")
    return LatencySLO(latency, pct / 100.0)


def parse_money_rate(text: str) -> float:
    """Money per hour from ``2.5/h``, ``0.05/min``, ``60/day`` or a bare number (per hour)."""
    number, _, unit = text.strip().lower().replace(" ", "").partition("/")
    try:
        value = float(number) * (_MONEY_UNITS[unit] if unit else 1.0)
    except (ValueError, KeyError):
        raise TidalInputError("--cost", f"expected a price per replica-hour such as 2.5/h, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise TidalInputError("--cost", f"must be a finite price >= 0, got {text!r}")
    return value


def _number(flag: str, text: str, *, minimum: float, strict: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TidalInputError(flag, f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = ">" if strict else ">="
        raise TidalInputError(flag, f"must be a finite number {bound} {minimum:g}, got {text!r}")
    return value


def _integer(flag: str, text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TidalInputError(flag, f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise TidalInputError(flag, f"must be >= {minimum}, got {value}")
    return value


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    try:
        rate = parse_rate(args.rate)
    except ValueError as exc:
        raise TidalInputError("--rate", str(exc)) from None
    if rate <= 0:
        raise TidalInputError("--rate", f"must be > 0, got {args.rate!r}")
    try:
        mean = parse_duration(args.service_time)
    except ValueError as exc:
        raise TidalInputError("--service-time", str(exc)) from None
    if mean <= 0:
        raise TidalInputError("--service-time", f"must be > 0, got {args.service_time!r}")
    cv = _number("--cv", args.cv, minimum=0.0)
    if args.distribution not in ("gamma", "lognormal"):
        raise TidalInputError("--distribution", f"expected gamma or lognormal, got {args.distribution!r}")
    try:
        service = service_time(mean, cv, args.distribution)
    except ValueError as exc:
        raise TidalInputError("--cv", str(exc)) from None
    return {
        "rate": rate,
        "service": service,
        "arrival_cv": _number("--arrival-cv", args.arrival_cv, minimum=0.0),
        "concurrency": _integer("--concurrency", args.concurrency, minimum=1),
        "slo": parse_slo(args.slo),
        "cost": parse_money_rate(args.cost),
        "max_replicas": _integer("--max-replicas", args.max_replicas, minimum=1),
    }


# --------------------------------------------------------------------------- run


def make_plan(args: argparse.Namespace) -> CapacityPlan:
    """Parse the arguments and size; bad or infeasible input raises :class:`TidalInputError`."""
    x = _inputs(args)
    try:
        return plan_capacity(x["rate"], x["service"], x["slo"], concurrency=x["concurrency"],
                             arrival_cv=x["arrival_cv"], replica_cost=x["cost"], max_replicas=x["max_replicas"])
    except InfeasibleSLO as exc:
        raise TidalInputError("--max-replicas" if exc.field == "max_replicas" else "--slo", str(exc)) from None


def run_plan(args: argparse.Namespace) -> int:
    from tidal.cli.main import console

    plan = make_plan(args)
    if args.json:
        console.print_json(json.dumps(plan_to_dict(plan)))
        return 0
    best = plan.best
    model = "M/M/c, exact" if plan.exact else "G/G/c approximation"
    console.print(
        f"[bold]{best.replicas} replicas[/] ({best.servers} slots) for {plan.slo.label} at {plan.arrival_rate:g}/s, "
        f"service {describe_service(plan.service)}, arrival CV {plan.arrival_cv:g} — {model}",
        highlight=False,
    )
    console.print(
        f"predicted latency p50 {_fmt(best.p50)}, p95 {_fmt(best.p95)}, p99 {_fmt(best.p99)} "
        f"(mean {_fmt(best.mean_response)}); utilization {best.utilization:.1%}; "
        f"cost {best.cost_per_hour:,.2f}/h",
        highlight=False,
    )
    console.print(plan_table(plan))
    return 0


def describe_service(service: ServiceTime) -> str:
    mean = _fmt(service.mean)
    if service.family in ("exponential", "deterministic"):
        return f"{service.family} {mean}"
    return f"{service.family} {mean} cv {service.cv:g}"


def plan_table(plan: CapacityPlan) -> Table:
    """Replica counts around the optimum: utilization, P(wait), latency percentiles, SLO, cost."""
    slo_column = f"≤{_fmt(plan.slo.latency)}" if plan.slo.percentile is not None else "mean"
    # Compact box and collapsed padding: nine columns fit an 80-column terminal.
    table = Table(title=f"around the optimum ({plan.slo.label})", header_style="bold", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    for name in ("replicas", "util", "P(wait)", "p50", "p95", "p99", slo_column, "SLO", "cost/h"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in plan.rows:
        bold = row.replicas == plan.replicas
        if not row.stable:
            cells = ["-", "∞", "∞", "∞", "unstable"]
        else:
            attained = _fmt(row.mean_response) if plan.slo.percentile is None else f"{row.attainment:.3%}"
            cells = [f"{row.p_wait:.3f}", _fmt(row.p50), _fmt(row.p95), _fmt(row.p99), attained]
        table.add_row(
            f"[bold]{row.replicas}[/]" if bold else str(row.replicas),
            f"{row.utilization:.1%}",
            *cells,
            "[green]met[/]" if row.meets else "[red]missed[/]",
            f"{row.cost_per_hour:,.2f}",
        )
    return table


def plan_to_dict(plan: CapacityPlan) -> dict[str, Any]:
    def row(r: PlanRow) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "replicas": r.replicas, "servers": r.servers, "utilization": r.utilization, "stable": r.stable,
            "p_wait": r.p_wait, "mean": num(r.mean_response), "p50": num(r.p50), "p95": num(r.p95),
            "p99": num(r.p99), "attainment": r.attainment, "meets": r.meets, "cost_per_hour": r.cost_per_hour,
        }

    return {
        "replicas": plan.replicas,
        "arrival_rate": plan.arrival_rate,
        "service": {"mean": plan.service.mean, "cv": plan.service.cv, "family": plan.service.family},
        "arrival_cv": plan.arrival_cv,
        "concurrency": plan.concurrency,
        "slo": {"latency": plan.slo.latency, "percentile": plan.slo.percentile},
        "exact": plan.exact,
        "cost_per_replica_hour": plan.replica_cost,
        "best": row(plan.best),
        "rows": [row(r) for r in plan.rows],
    }


def _fmt(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "∞"
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.3f}s"


