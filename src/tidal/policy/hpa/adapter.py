"""Observation -> what the Kubernetes APIs would return (a :class:`MetricsSource`).

The calculator works on Kubernetes-shaped plain values; this adapter is the only place that knows
tidal's :class:`~tidal.core.types.Observation`:

* each :class:`PodSample` becomes a pod ``pod-<id>`` with one container ``main``: a pod that is
  not ready yet is ``Pending`` (unready for every metric), a draining pod is being deleted
  (ignored), a ready pod is ``Running`` with Ready since ``ready_at``;
* requests and usage are converted to Kubernetes base units in milli-units (cpu cores, memory
  bytes from tidal's MiB, gpu devices), stamped with the last scrape's time and window;
* Pods metrics: ``concurrency`` (alias ``in_flight``) is each pod's in-flight requests; another
  name is read from the scraped history: per-pod averages (``*utilization``, latencies) are given
  to every ready pod as is, totals (``rps``, ``queue_length``, ...) are split evenly among them;
* Object and External metrics are ``obs.metrics.last(name)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tidal.core.types import Observation, PodSample
from tidal.policy.hpa.errors import MetricError
from tidal.policy.hpa.metrics import PodMetric, PodMetricsItem
from tidal.policy.hpa.pods import PENDING, RUNNING, Container, PodInfo

#: tidal unit -> Kubernetes base unit.
_TO_BASE_UNIT = {"cpu": 1.0, "memory": 1024.0 * 1024.0, "gpu": 1.0}
#: Scraped metrics that are already per-pod averages (every pod reports the value itself).
_PER_POD_AVERAGES = frozenset({"utilization", "cpu_utilization", "gpu_utilization", "memory_utilization",
                               "latency_p50", "latency_p95", "latency_p99"})
_IN_FLIGHT = frozenset({"concurrency", "in_flight"})
#: A metric every scrape records, used to date the samples.
_SCRAPE_MARKER = "ready_replicas"


def to_milli(resource: str, amount: float) -> int:
    """A tidal resource amount as Kubernetes milli-units of its base unit."""
    return round(amount * _TO_BASE_UNIT.get(resource, 1.0) * 1000.0)


def pod_name(sample: PodSample) -> str:
    return f"pod-{sample.id}"


def pod_info(sample: PodSample) -> PodInfo:
    """The Kubernetes view of one replica."""
    requests = {r: to_milli(r, v) for r, v in sample.requests.items()}
    ready = sample.ready_at is not None
    return PodInfo(
        name=pod_name(sample),
        phase=RUNNING if ready else PENDING,
        ready=ready,
        ready_transition_time=sample.ready_at if ready else sample.started_at,
        start_time=sample.started_at,
        deleting=sample.draining,
        containers=(Container("main", requests),),
    )


class ObservationSource:
    """A :class:`~tidal.policy.hpa.controller.MetricsSource` reading one :class:`Observation`."""

    def __init__(self, obs: Observation) -> None:
        self.obs = obs
        self._pods = tuple(pod_info(p) for p in obs.pods)
        self.sample_time, self.sample_window = _scrape_timing(obs)

    @property
    def status_replicas(self) -> int:
        """``scale.status.replicas``: pods of the target that are not terminating."""
        return sum(1 for p in self.obs.pods if not p.draining)

    def pods(self) -> Sequence[PodInfo]:
        return self._pods

    def resource_metrics(self, resource: str) -> Sequence[PodMetricsItem]:
        items = []
        for sample in self.obs.pods:
            if not sample.usage:
                continue  # not scraped yet: metrics-server has no item for it
            usage = {r: to_milli(r, v) for r, v in sample.usage.items()}
            items.append(PodMetricsItem(pod_name(sample), self.sample_time, self.sample_window, {"main": usage}))
        return items

    def pods_metric(self, name: str, selector: Mapping[str, object] | None) -> Mapping[str, PodMetric]:
        serving = [p for p in self.obs.pods if p.ready_at is not None and not p.draining]
        if name in _IN_FLIGHT:
            return {pod_name(p): PodMetric(p.in_flight * 1000, self.obs.time, 0.0) for p in serving}
        value = self.obs.metrics.last(name)
        if value is None or not serving:
            return {}
        per_pod = value if name in _PER_POD_AVERAGES else value / len(serving)
        return {pod_name(p): PodMetric(round(per_pod * 1000.0), self.sample_time, self.sample_window) for p in serving}

    def object_metric(self, name: str, described_object: Mapping[str, str] | None,
                      selector: Mapping[str, object] | None) -> int:
        value = self.obs.metrics.last(name)
        if value is None:
            raise MetricError(f"unable to get metric {name}: no value in the metrics history")
        return round(value * 1000.0)

    def external_metric(self, name: str, selector: Mapping[str, object] | None) -> Sequence[int]:
        value = self.obs.metrics.last(name)
        return [] if value is None else [round(value * 1000.0)]


def _scrape_timing(obs: Observation) -> tuple[float, float]:
    """Time and window of the pods' latest visible usage sample.

    Pods carry both (``usage_time``, ``usage_window``); observations built without them fall back
    to the dates of the scraped metric series (the window is then the scrape interval).
    """
    for pod in obs.pods:
        if pod.usage_time is not None:
            return pod.usage_time, pod.usage_window
    times, _ = obs.metrics.series(_SCRAPE_MARKER)
    if len(times) == 0:
        return obs.time, 0.0
    last = float(times[-1])
    window = last - float(times[-2]) if len(times) > 1 else last
    return last, window
