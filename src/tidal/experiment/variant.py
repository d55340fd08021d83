"""One scenario variant: a scenario plus dotted overrides, run anywhere, reduced to summary figures.

Sweeps and tuning runs evaluate many variants of one scenario. A :class:`Variant` is plain data
(the portable scenario dict, the overrides, the modules that register the policy), so it pickles
cheaply to a spawned worker or a Dask / Ray cluster, and the same variant builds the same
scenario — and, with the scenario's seed, the same result — in any process.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tidal.config.loader import scenario_from_dict
from tidal.config.scenario import Scenario
from tidal.core.errors import TidalInputError
from tidal.policy import available_policies, validate_policy_block
from tidal.sim import Simulation

#: Summary figures kept per run, in table order (fields of :class:`tidal.sim.Summary`).
FIGURES: tuple[str, ...] = (
    "cost",
    "replica_hours",
    "mean_replicas",
    "max_replicas",
    "slo_attainment",
    "slo_met",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "drop_rate",
    "arrivals",
    "scale_events",
    "mean_utilization",
)

Figures = dict[str, float | int | bool]


@dataclass(frozen=True)
class Variant:
    """A scenario dict with dotted ``overrides`` (``{'policy.target': 0.7}``) applied on top.

    ``modules`` are imported before building, so a policy registered outside :mod:`tidal.policy`
    (a plugin, a test module) exists in a freshly spawned worker too.
    """

    data: Mapping[str, Any] = field(hash=False)
    overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source: str = "scenario"
    modules: tuple[str, ...] = ()

    def scenario(self) -> Scenario:
        """The validated scenario, its policy block included (raises :class:`TidalInputError`)."""
        for module in self.modules:
            importlib.import_module(module)
        scenario = scenario_from_dict(self.data, source=self.source, overrides=self.overrides)
        validate_policy_block(scenario.policy)
        return scenario


@dataclass(frozen=True)
class Failure:
    """A :class:`TidalInputError` raised while running a variant, in picklable form (the error's
    two-argument constructor does not survive pickling as an exception)."""

    where: str
    problem: str

    def error(self) -> TidalInputError:
        return TidalInputError(self.where, self.problem)


def run_variant(variant: Variant) -> Figures | Failure:
    """Simulate one variant and return its :data:`FIGURES` (or the input error it hit).

    Module-level and argument-only, so process pools, Dask and Ray can all ship it by reference.
    """
    try:
        result = Simulation(variant.scenario()).run()
    except TidalInputError as exc:
        return Failure(exc.where, exc.problem)
    return figures_of(result.summary)


def figures_of(summary: Any) -> Figures:
    """The :data:`FIGURES` of a :class:`tidal.sim.Summary` as plain Python scalars."""
    out: Figures = {}
    for name in FIGURES:
        value = getattr(summary, name)
        if isinstance(value, bool):
            out[name] = value
        elif isinstance(value, int):
            out[name] = int(value)
        else:
            out[name] = float(value)
    return out


def policy_modules(name: str) -> tuple[str, ...]:
    """The module that registers policy ``name``, for a worker to import (empty for ``__main__``)."""
    entry = available_policies().get(name)
    if entry is None:
        return ()
    module = entry.factory.__module__
    return () if module in ("__main__", "__mp_main__") else (module,)


def is_missing(value: Any) -> bool:
    """``None`` or NaN: a figure the run could not measure (e.g. latency with no completions)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
