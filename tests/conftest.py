"""Shared helpers: small scenarios built in code, and statistics for simulator checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from tidal.config import Scenario, scenario_from_dict
from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "data" / "traces"


def make_scenario(
    *,
    rate: float = 10.0,
    service: Any = None,
    concurrency: int = 1,
    replicas: int = 1,
    balancer: str = "power_of_two",
    duration: float = 3600.0,
    seed: int = 0,
    **sections: Any,
) -> Scenario:
    """A scenario with a constant Poisson workload and a static policy, overridable by section."""
    data: dict[str, Any] = {
        "seed": seed,
        "duration": duration,
        "workload": {"kind": "constant", "rate": rate},
        "service": {"service_time": service or {"distribution": "exponential", "mean": 0.1},
                    "concurrency": concurrency, "queue_limit": 100_000},
        "load_balancer": {"algorithm": balancer},
        "replicas": {"min": 0, "max": 1000, "initial": replicas},
        "policy": {"name": "static", "replicas": replicas},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return scenario_from_dict(data)


def replicate(run: Callable[[int], float], seeds: range) -> tuple[float, float]:
    """Mean and half-width of a 99.9 % t confidence interval over independent replications."""
    values = np.array([run(seed) for seed in seeds], dtype=float)
    k = len(values)
    half = stats.t.ppf(0.9995, k - 1) * values.std(ddof=1) / math.sqrt(k)
    return float(values.mean()), float(half)


class Scripted(Policy):
    """Test policy: the replica count follows a fixed schedule of (time, replicas)."""

    name = "scripted"

    def __init__(self, schedule: list[tuple[float, int]]) -> None:
        self.schedule = sorted(schedule)

    def decide(self, obs: Observation) -> Decision:
        current = self.schedule[0][1]
        for t, n in self.schedule:
            if obs.time >= t:
                current = n
        return Decision(current, reason="scripted")


@pytest.fixture
def traces_dir() -> Path:
    return TRACES


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """One trained serving model per test session, shared by every serve and live test."""
    from tidal.serve import model as model_mod

    path = tmp_path_factory.getbasetemp() / "serve-model"
    model_mod.ensure_model(path)
    return path


def upstream_case_ids(cases: list[dict[str, Any]], detail: Callable[[dict[str, Any]], str] | None = None) -> list[str]:
    """Test ids that name the upstream Go test each translated case comes from.

    ``go_test`` (with the case's own ``name`` appended when the Go test path does not already
    end with it); an older upstream name (``legacy_name``) first, so ``-k TestReplicaCalcScaleUp``
    finds the case under either name. A case without a name gets ``detail(case)``; ids that
    would repeat are numbered.
    """
    ids = []
    for case in cases:
        go, name, legacy = case.get("go_test"), case.get("name"), case.get("legacy_name")
        if go and name and not go.endswith(name):
            base = f"{go}/{name}"
        else:
            base = go or name or ""
        if not name and detail is not None:
            base = f"{base}({detail(case)})"
        ids.append(f"{legacy} ({base})" if legacy else base)
    totals: dict[str, int] = {}
    for i in ids:
        totals[i] = totals.get(i, 0) + 1
    seen: dict[str, int] = {}
    numbered = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        numbered.append(i if totals[i] == 1 else f"{i}#{seen[i]}")
    return numbered
