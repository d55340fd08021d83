"""Features of an :class:`~tidal.core.types.Observation` for learned policies, and their discretisation.

One pure function, :func:`extract`, turns an observation into a fixed-length float32 vector. The
training environment (:class:`tidal.rl.env.ScalingEnv`) and the ``rl`` policy both call it, so a
Q table learned in simulation sees exactly the same numbers when it runs in the simulator or live.
Every feature is normalised by constants of the service (:class:`FeatureSpec`), which the saved
model carries, and clipped to ``[0, high]`` so the vector always lies in the environment's box.

This module imports only :mod:`tidal.core`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tidal.core.types import Observation

#: Feature names, their order in the vector, and the upper clip of each (the lower is 0).
FEATURES: tuple[tuple[str, float], ...] = (
    ("demand", 2.0),       # rps / capacity of the largest allowed fleet
    ("load", 4.0),         # rps / capacity of the current spec: > 1 means under-provisioned
    ("utilization", 1.0),  # busy fraction of the ready slots
    ("queue", 10.0),       # queued requests per ready slot
    ("p99", 10.0),         # latency p99 / SLO latency
    ("drops", 1.0),        # drops per arrival
    ("ready", 1.0),        # ready replicas / max replicas
    ("starting", 1.0),     # starting replicas / max replicas
    ("spec", 1.0),         # current spec / max replicas
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
FEATURE_HIGH: np.ndarray = np.array([high for _, high in FEATURES], dtype=np.float32)
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """The constants features are normalised by.

    ``replica_capacity`` is the request rate one replica serves at full utilization
    (``concurrency / mean service time``), ``slo_latency`` the latency bound in seconds,
    ``window`` the averaging window of rate-like metrics (usually the sync period).
    """

    max_replicas: int
    replica_capacity: float
    slo_latency: float
    concurrency: int = 1
    window: float = 15.0

    def __post_init__(self) -> None:
        if self.max_replicas < 1:
            raise ValueError(f"max_replicas must be >= 1, got {self.max_replicas}")
        for name in ("replica_capacity", "slo_latency", "window"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")

    def to_dict(self) -> dict[str, Any]:
        return {"max_replicas": self.max_replicas, "replica_capacity": self.replica_capacity,
                "slo_latency": self.slo_latency, "concurrency": self.concurrency, "window": self.window}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(max_replicas=int(data["max_replicas"]), replica_capacity=float(data["replica_capacity"]),
                   slo_latency=float(data["slo_latency"]), concurrency=int(data.get("concurrency", 1)),
                   window=float(data.get("window", 15.0)))


def extract(obs: Observation, spec: FeatureSpec) -> np.ndarray:
    """The feature vector of ``obs`` (float32, ordered as :data:`FEATURE_NAMES`, clipped).

    Rate-like metrics (``rps``, ``utilization``, ``drops``) are means over ``spec.window``; the
    queue and the latency are the latest scrape. A metric not scraped yet counts as 0.
    """
    window = spec.window
    metrics = obs.metrics
    rps = _or_zero(metrics.mean("rps", window))
    drops = _or_zero(metrics.mean("drops", window))
    full_fleet = spec.max_replicas * spec.replica_capacity
    if rps <= 0.0:
        load = 0.0
    elif obs.replicas <= 0:
        load = math.inf  # traffic and no replica at all: as under-provisioned as it gets
    else:
        load = rps / (obs.replicas * spec.replica_capacity)
    values = np.array(
        [
            rps / full_fleet,
            load,
            _or_zero(metrics.mean("utilization", window)),
            _or_zero(metrics.last("queue_length")) / (max(obs.ready, 1) * spec.concurrency),
            _or_zero(metrics.last("latency_p99")) / spec.slo_latency,
            drops / rps if rps > 0.0 else 0.0,
            obs.ready / spec.max_replicas,
            obs.starting / spec.max_replicas,
            obs.replicas / spec.max_replicas,
        ],
        dtype=np.float64,
    )
    return np.clip(values, 0.0, FEATURE_HIGH).astype(np.float32)


def _or_zero(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)


@dataclass(frozen=True, slots=True)
class Discretizer:
    """Maps a feature vector to one of :attr:`n_states` table rows.

    ``features`` names the features used and ``edges`` their bin edges (strictly increasing);
    a value ``v`` falls in bin ``searchsorted(edges, v, side="right")``, so ``len(edges) + 1`` bins
    per feature. The state index is the mixed-radix number of the bins, first feature most
    significant.
    """

    features: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("a discretizer needs at least one feature")
        if len(self.features) != len(self.edges):
            raise ValueError(f"{len(self.features)} features but {len(self.edges)} edge lists")
        for name, edges in zip(self.features, self.edges, strict=True):
            if name not in _INDEX:
                raise ValueError(f"unknown feature {name!r}; choose from {', '.join(FEATURE_NAMES)}")
            if any(not math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ValueError(f"edges of feature {name!r} must be finite and strictly increasing, got {list(edges)}")
        # Normalise to tuples of floats so equality and serialisation are exact.
        object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        object.__setattr__(self, "edges", tuple(tuple(float(e) for e in es) for es in self.edges))

    @property
    def sizes(self) -> tuple[int, ...]:
        """Bins per feature."""
        return tuple(len(e) + 1 for e in self.edges)

    @property
    def n_states(self) -> int:
        return int(np.prod(self.sizes))

    def index(self, features: np.ndarray) -> int:
        """Table row of a feature vector produced by :func:`extract`."""
        state = 0
        for name, edges, size in zip(self.features, self.edges, self.sizes, strict=True):
            # Compare in float32 like the vector, so a value on an edge lands in the same bin
            # whichever path (env or policy) produced it.
            value = np.float32(features[_INDEX[name]])
            b = int(np.searchsorted(np.asarray(edges, dtype=np.float32), value, side="right"))
            state = state * size + b
        return state

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "edges": [list(e) for e in self.edges]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Discretizer:
        return cls(tuple(data["features"]), tuple(tuple(e) for e in data["edges"]))


#: The default state: how loaded the current spec is (rps over the spec's capacity), and whether
#: replicas are on their way (so the agent can learn to wait for a cold start instead of piling
#: on). Latency and queue features are left out: they lag the load, and every extra feature
#: multiplies the states to learn (with p99 in the state, 30-50 episodes of a step load often
#: left an overloaded state unlearnt, holding there for the rest of the episode).
DEFAULT_DISCRETIZER = Discretizer(
    features=("load", "starting"),
    edges=((0.3, 0.45, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.6), (1e-6,)),
)


def feature_dict(vector: Sequence[float]) -> dict[str, float]:
    """``{name: value}`` of a feature vector (for logs and decision reasons)."""
    return {name: float(v) for name, v in zip(FEATURE_NAMES, vector, strict=True)}
