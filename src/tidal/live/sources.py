"""Metrics sources: where the controller's observation comes from.

* :class:`BalancerSource` reads tidal's balancer admin API (``GET /admin/state``): window
  statistics become metric samples and each worker a :class:`~tidal.core.types.PodSample`.
* :class:`PrometheusSource` runs one PromQL instant query per tidal metric name through
  Prometheus' HTTP API (``GET /api/v1/query``).

A source returns a :class:`Scrape` or raises :class:`~tidal.live.faults.SourceError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tidal.core.types import PodSample
from tidal.live.client import JsonClient
from tidal.live.faults import SourceError


@dataclass(frozen=True)
class Scrape:
    """One successful poll: metric values, pods (``None``: the source knows none) and the
    replica count the data plane reports as desired (``None``: not reported)."""

    metrics: Mapping[str, float]
    pods: Sequence[PodSample] | None = None
    replicas: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class MetricsSource(Protocol):
    """What the controller polls once per sync period."""

    async def scrape(self, now: float) -> Scrape:
        """Current metrics; raises :class:`SourceError` when the source cannot answer."""

    async def aclose(self) -> None:
        """Release connections."""


# --------------------------------------------------------------------------- balancer

#: ``/admin/state`` statistics that are tidal metric names, copied as they are.
_BALANCER_STATS = ("rps", "concurrency", "utilization", "latency_p50", "latency_p95", "latency_p99", "drops",
                   "queue_length")


def pod_id(replica_id: str) -> int:
    """A stable integer for a worker id: the id itself when numeric, else a 48-bit hash of it.

    A hash (not a counter) so the mapping survives a controller restart.
    """
    text = str(replica_id)
    if text.isdigit():
        return int(text)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=6).digest(), "big")


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_admin_state(state: Mapping[str, Any]) -> Scrape:
    """Turn an ``/admin/state`` document into a :class:`Scrape` (raises ``SourceError`` if malformed)."""
    try:
        stats = state.get("stats") or {}
        replicas = state.get("replicas") or []
        pods = []
        for rep in replicas:
            status = str(rep["state"])
            ready_at = _finite(rep.get("ready_at"))
            pods.append(PodSample(
                id=pod_id(rep["id"]),
                ready=status == "ready",
                started_at=float(rep.get("started_at") or 0.0),
                ready_at=ready_at if status in ("ready", "draining") else None,
                in_flight=int(rep.get("in_flight") or 0),
                draining=status == "draining",
                # The balancer measures each worker's usage (cores, from /proc) over its window,
                # which is what an HPA on CPU reads.
                requests=rep.get("requests") or {},
                usage=rep.get("usage") or {},
                usage_time=state.get("time") if rep.get("usage") else None,
                usage_window=float(state.get("window_s") or 0.0) if rep.get("usage") else 0.0,
            ))
        metrics = {name: v for name in _BALANCER_STATS if (v := _finite(stats.get(name))) is not None}
        metrics["ready_replicas"] = float(sum(pod.ready for pod in pods))
        desired = state.get("desired")
        return Scrape(metrics=metrics, pods=tuple(pods), replicas=None if desired is None else int(desired),
                      extra={"buffered": state.get("buffered", 0), "window_s": state.get("window_s")})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SourceError(f"malformed /admin/state: {type(exc).__name__}: {exc}") from None


#: What to do about a balancer that refuses the token (the message of an AuthError).
ADMIN_TOKEN_HINT = ("point it at the admin token file of that tidal serve (its admin_token_file, "
                    "default .tidal/admin-token in the folder it was started from)")


class BalancerSource:
    """Metrics and pods from the balancer's ``GET /admin/state`` (bearer token).

    A 401/403 raises :class:`~tidal.live.faults.AuthError` naming ``token_field`` (fatal, not held).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 2.0,
                 token_field: str = "metrics.token_file") -> None:
        self.client = JsonClient(url, token, timeout, error_type=SourceError, auth_field=token_field,
                                 auth_hint=ADMIN_TOKEN_HINT)

    async def scrape(self, now: float) -> Scrape:
        state = await self.client.request("GET", "/admin/state")
        if not isinstance(state, Mapping):
            raise SourceError("malformed /admin/state: not a JSON object")
        return parse_admin_state(state)

    async def aclose(self) -> None:
        await self.client.aclose()

    def describe(self) -> str:
        return f"balancer {self.client.base_url}"


# --------------------------------------------------------------------------- prometheus

#: How several series of one query combine: additive quantities add up; ratios average;
#: latency percentiles take the worst series (a conservative reading).
_COMBINE_SUM = {"rps", "concurrency", "queue_length", "drops", "ready_replicas"}
_COMBINE_MAX = {"latency_p50", "latency_p95", "latency_p99"}


def parse_instant_query(name: str, body: Any) -> float | None:
    """The value of one ``/api/v1/query`` answer (``None`` for an empty result or NaN).

    Scalars and one-series vectors give their value; several series are combined (sum for
    counts and rates, max for latencies, mean for utilisations).
    """
    if not isinstance(body, Mapping) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, Mapping) else None
        raise SourceError(f"prometheus query for {name!r} failed: {error or 'status is not success'}")
    try:
        data = body["data"]
        kind = data["resultType"]
        result = data["result"]
        if kind == "scalar":
            values = [_finite(result[1])]
        elif kind == "vector":
            values = [_finite(series["value"][1]) for series in result]
        else:
            raise SourceError(f"prometheus query for {name!r} returned a {kind}; use an instant vector or scalar")
    except (KeyError, IndexError, TypeError) as exc:
        raise SourceError(f"malformed prometheus answer for {name!r}: {type(exc).__name__}: {exc}") from None
    finite = [v for v in values if v is not None]
    if not finite:
        return None
    if name in _COMBINE_SUM:
        return float(sum(finite))
    if name in _COMBINE_MAX:
        return float(max(finite))
    return float(sum(finite) / len(finite))


class PrometheusSource:
    """One instant query per configured metric name, run concurrently each poll.

    Any failed query fails the whole scrape (the controller then holds or falls back); an
    empty result (no series yet) just leaves that metric out.
    """

    def __init__(self, url: str, queries: Mapping[str, str], token: str | None = None, timeout: float = 5.0,
                 token_field: str = "metrics.token_file") -> None:
        self.client = JsonClient(url, token, timeout, error_type=SourceError, auth_field=token_field,
                                 auth_hint="point it at a file holding a bearer token that Prometheus accepts")
        self.queries = dict(queries)

    async def _query(self, name: str, promql: str) -> float | None:
        # Prometheus answers 4xx/5xx with a JSON error body; the client reports it with the status.
        body = await self.client.request("GET", "/api/v1/query", params={"query": promql})
        return parse_instant_query(name, body)

    async def scrape(self, now: float) -> Scrape:
        names = list(self.queries)
        values = await asyncio.gather(*(self._query(n, self.queries[n]) for n in names))
        metrics = {n: v for n, v in zip(names, values, strict=True) if v is not None}
        ready = metrics.get("ready_replicas")
        return Scrape(metrics=metrics, pods=None, replicas=None,
                      extra={} if ready is None else {"ready": int(round(ready))})

    async def aclose(self) -> None:
        await self.client.aclose()

    def describe(self) -> str:
        return f"prometheus {self.client.base_url}"
