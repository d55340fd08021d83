"""Pods as the HPA sees them: classification (``groupPods``) and requests (``calculateRequests``).

Times are seconds on the policy's clock (``Observation.time``); ``None`` is a missing field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tidal.policy.hpa.errors import MetricError
from tidal.policy.hpa.metrics import PodMetric
from tidal.policy.hpa.numeric import ZERO_TIME

RUNNING = "Running"
PENDING = "Pending"
FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class Container:
    """A container spec: ``requests`` maps resource -> milli-units (absent = no request)."""

    name: str
    requests: Mapping[str, int] = field(default_factory=dict)
    #: ``"Always"`` on an init container marks a sidecar, whose request counts (spec §4.3).
    restart_policy: str | None = None


@dataclass(frozen=True, slots=True)
class PodInfo:
    """The fields of a Pod the HPA reads.

    ``ready`` is the status of the PodReady condition (``None``: the pod has no such condition)
    and ``ready_transition_time`` its ``lastTransitionTime``; ``start_time`` is
    ``status.startTime``; ``deleting`` is a set ``deletionTimestamp``; ``pod_requests`` holds
    pod-level ``spec.resources.requests`` when set.
    """

    name: str
    phase: str = RUNNING
    ready: bool | None = True
    ready_transition_time: float | None = None
    start_time: float | None = None
    deleting: bool = False
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    pod_requests: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class PodGroups:
    """``groupPods``' answer: the ready count and the names of unready, missing and ignored pods."""

    ready_count: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def group_pods(pods: Sequence[PodInfo], metrics: Mapping[str, PodMetric], resource: str, now: float,
               cpu_initialization_period: float, delay_of_initial_readiness_status: float) -> PodGroups:
    """Classify pods for one metric (spec §4.2).

    Deleted or failed pods are ignored; pending pods are unready; pods without a sample are
    missing. For ``cpu`` only, a pod is also unready if its sample may include its start-up burst:
    no Ready condition or start time; still initializing and either not ready or sampled partly
    before it became ready; or past initialization, not ready, and never ready since starting.
    """
    ready_count = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase == FAILED:
            ignored.add(pod.name)
            continue
        if pod.phase == PENDING:
            unready.add(pod.name)
            continue
        metric = metrics.get(pod.name)
        if metric is None:
            missing.add(pod.name)
            continue
        if resource == "cpu" and _cpu_sample_unready(pod, metric, now, cpu_initialization_period,
                                                     delay_of_initial_readiness_status):
            unready.add(pod.name)
            continue
        ready_count += 1
    return PodGroups(ready_count, frozenset(unready), frozenset(missing), frozenset(ignored))


def _cpu_sample_unready(pod: PodInfo, metric: PodMetric, now: float, init_period: float,
                        readiness_delay: float) -> bool:
    if pod.ready is None or pod.start_time is None:
        return True
    # An unset lastTransitionTime is Go's zero time, as in the API object.
    transition = pod.ready_transition_time if pod.ready_transition_time is not None else ZERO_TIME
    if pod.start_time + init_period > now:
        # Still initializing: the sample must be entirely from after the last readiness change.
        return pod.ready is False or metric.timestamp < transition + metric.window
    # Initialized: only a pod that has never been ready since it started is discarded.
    return pod.ready is False and pod.start_time + readiness_delay > transition


def calculate_requests(pods: Sequence[PodInfo], container: str, resource: str,
                       pod_level_resources: bool = True) -> dict[str, int]:
    """Request of ``resource`` per pod, in milli-units, for every pod in the list (spec §4.3).

    Pod-level requests win when the feature is on, the pod sets them and no container is named;
    otherwise containers plus sidecar init containers are summed, or the named container is used.
    Any missing request is an error (it fails the metric).
    """
    requests: dict[str, int] = {}
    for pod in pods:
        if pod_level_resources and pod.pod_requests and not container:
            if resource not in pod.pod_requests:
                raise MetricError(f"missing pod-level request for {resource} in Pod {pod.name}")
            requests[pod.name] = pod.pod_requests[resource]
        else:
            requests[pod.name] = _container_requests(pod, container, resource)
    return requests


def _container_requests(pod: PodInfo, container: str, resource: str) -> int:
    if container:
        for c in pod.containers:
            if c.name == container:
                return _request(c, resource, pod)
        raise MetricError(f"container {container} not found in Pod {pod.name}")
    total = sum(_request(c, resource, pod) for c in pod.containers)
    total += sum(_request(c, resource, pod) for c in pod.init_containers if c.restart_policy == "Always")
    return total


def _request(c: Container, resource: str, pod: PodInfo) -> int:
    if resource not in c.requests:
        raise MetricError(f"missing request for {resource} in container {c.name} of Pod {pod.name}")
    return c.requests[resource]
