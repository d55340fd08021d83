"""``tidal plan``: closed forms, the simulator, and exit status 2 on bad input."""

from __future__ import annotations

import argparse
import json
import math
import re

import pytest

from conftest import make_scenario
from tidal.cli import main as cli_main
from tidal.cli import plan as plan_cli
from tidal.queueing import min_servers_for_mean_response, mmc
from tidal.sim import simulate


def run(argv: list[str], monkeypatch) -> int:
    """The ``tidal`` command line, in-process."""
    return cli_main.main(argv)


def plan_json(argv: list[str], monkeypatch, capsys) -> dict:
    assert run(["plan", *argv, "--json"], monkeypatch) == 0
    return json.loads(capsys.readouterr().out)


def mmc_min_servers(lam: float, mu: float, latency: float, p: float) -> int:
    c = math.floor(lam / mu) + 1
    while mmc(lam, mu, c).response_cdf(latency) < p:
        c += 1
    return c


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("rate, service, slo, lam, mu, latency, p", [
    ("120/s", "50ms", "p99=300ms", 120.0, 20.0, 0.3, 0.99),
    ("6000/min", "20ms", "p95=60ms", 100.0, 50.0, 0.06, 0.95),
    ("2.5/s", "1s", "p99.9=10s", 2.5, 1.0, 10.0, 0.999),
])
def test_plan_matches_mmc_closed_forms(rate, service, slo, lam, mu, latency, p, monkeypatch, capsys):
    out = plan_json(["--rate", rate, "--service-time", service, "--slo", slo, "--cost", "2.5/h"], monkeypatch, capsys)
    c = mmc_min_servers(lam, mu, latency, p)
    exact = mmc(lam, mu, c)
    assert out["exact"] and out["replicas"] == c
    best = out["best"]
    assert best["p50"] == exact.response_percentile(0.5)
    assert best["p95"] == exact.response_percentile(0.95)
    assert best["p99"] == exact.response_percentile(0.99)
    assert best["mean"] == pytest.approx(exact.mean_response, rel=1e-12)
    assert best["utilization"] == pytest.approx(lam / (c * mu), rel=1e-12)
    assert best["cost_per_hour"] == pytest.approx(2.5 * c)
    assert [r["replicas"] for r in out["rows"]] == list(range(max(1, c - 2), c + 4))
    assert [r["meets"] for r in out["rows"]] == [r["replicas"] >= c for r in out["rows"]]


def test_mean_slo_and_concurrency(monkeypatch, capsys):
    out = plan_json(["--rate", "120/s", "--service-time", "50ms", "--slo", "mean=60ms", "--concurrency", "4"],
                    monkeypatch, capsys)
    servers = min_servers_for_mean_response(120.0, 20.0, 0.06)
    assert out["replicas"] == math.ceil(servers / 4)
    assert out["best"]["servers"] == 4 * out["replicas"]
    assert out["cost_per_replica_hour"] == 1.0  # default price


def test_text_output_has_the_answer_and_the_table(monkeypatch, capsys):
    assert run(["plan", "--rate", "120/s", "--service-time", "50ms", "--slo", "p99=300ms", "--cost", "2.5/h"],
               monkeypatch) == 0
    out = capsys.readouterr().out
    assert "8 replicas" in out and "M/M/c, exact" in out
    assert "p99 245.4ms" in out and "cost 20.00/h" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s*\d+\s+\d+\.\d%", line)]
    assert [int(r[0]) for r in rows] == list(range(6, 12))  # c-2 .. c+3
    assert rows[0][-3:] == ["unstable", "missed", "15.00"]
    assert rows[2][-2:] == ["met", "20.00"] and rows[2][5] == "245.4ms"


# --------------------------------------------------------------------------- the simulator agrees


@pytest.mark.parametrize("argv, service", [
    (["--rate", "120/s", "--service-time", "50ms", "--slo", "p99=300ms"],
     {"distribution": "exponential", "mean": 0.05}),
    (["--rate", "120/s", "--service-time", "50ms", "--cv", "1.5", "--slo", "p99=500ms"],
     {"distribution": "gamma", "mean": 0.05, "cv": 1.5}),
    (["--rate", "400/s", "--service-time", "50ms", "--cv", "0.5", "--concurrency", "4", "--slo", "p99=200ms"],
     {"distribution": "gamma", "mean": 0.05, "cv": 0.5}),
])
def test_planned_count_meets_the_slo_in_the_simulator(argv, service, monkeypatch, capsys):
    """A central queue over the planned replicas (the model's layout), 20 simulated minutes."""
    out = plan_json(argv, monkeypatch, capsys)
    n = out["replicas"]
    latency = out["slo"]["latency"]
    concurrency = out["concurrency"]
    sc = make_scenario(rate=out["arrival_rate"], service=service, replicas=n, concurrency=concurrency,
                       balancer="central_queue", duration=1200, seed=1, slo={"latency": latency, "target": 0.99})
    summary = simulate(sc).summary
    assert summary.slo_attainment >= 0.99
    assert summary.latency_p99 <= latency
    # The model's percentiles are close to the simulated ones (histogram resolution ~1 %).
    assert summary.latency_p99 == pytest.approx(out["best"]["p99"], rel=0.06)
    assert summary.latency_p50 == pytest.approx(out["best"]["p50"], rel=0.06)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv, flag", [
    (["--rate", "fast", "--service-time", "50ms", "--slo", "p99=1s"], "--rate"),
    (["--rate=-3/s", "--service-time", "50ms", "--slo", "p99=1s"], "--rate"),
    (["--rate", "10/s", "--service-time", "soon", "--slo", "p99=1s"], "--service-time"),
    (["--rate", "10/s", "--service-time", "0s", "--slo", "p99=1s"], "--service-time"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "99=1s"], "--slo"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p100=1s"], "--slo"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p99=fast"], "--slo"),
    (["--rate", "120/s", "--service-time", "50ms", "--cv", "1.5", "--slo", "p99=200ms"], "--slo"),  # infeasible
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "mean=50ms"], "--slo"),  # infeasible
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p99=1s", "--cv", "-1"], "--cv"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p99=1s", "--concurrency", "0"], "--concurrency"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p99=1s", "--concurrency", "two"], "--concurrency"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p99=1s", "--cost", "cheap"], "--cost"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p99=1s", "--cost=-1/h"], "--cost"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p99=1s", "--distribution", "weibull"], "--distribution"),
    (["--rate", "1e5/s", "--service-time", "50ms", "--slo", "p99=1s", "--max-replicas", "10"], "--max-replicas"),
    (["--rate", "10/s", "--service-time", "50ms", "--slo", "p99=1s", "--arrival-cv", "x"], "--arrival-cv"),
])
def test_bad_input_exits_2_naming_the_flag(argv, flag, monkeypatch, capsys):
    assert run(["plan", *argv], monkeypatch) == 2
    err = capsys.readouterr().err
    assert f"error: {flag}" in err.replace("\n", " ") and "Traceback" not in err, err


def test_missing_argument_exits_2(monkeypatch, capsys):
    with pytest.raises(SystemExit) as info:
        run(["plan", "--rate", "10/s"], monkeypatch)
    assert info.value.code == 2


def test_parsers():
    assert plan_cli.parse_slo("p99.9=250ms").percentile == pytest.approx(0.999)
    assert plan_cli.parse_slo("MEAN = 1s").percentile is None
    assert plan_cli.parse_money_rate("0.05/min") == pytest.approx(3.0)
    assert plan_cli.parse_money_rate("48/day") == pytest.approx(2.0)
    assert plan_cli.parse_money_rate("2.5") == 2.5
