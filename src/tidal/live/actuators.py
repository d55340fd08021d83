"""Actuators: how a decided replica count reaches the replicas.

* :class:`LocalActuator` — tidal's local worker pool, through the balancer admin API
  (``PUT /admin/replicas {"count": N}``).
* :class:`KubernetesActuator` — a Deployment's ``scale`` subresource with the official client
  (``read_namespaced_deployment_scale`` / ``replace_namespaced_deployment_scale``). The write
  carries the ``resourceVersion`` just read, so a concurrent change makes the API server answer
  409 Conflict instead of silently losing one of the writes; the actuator then re-reads and
  retries with backoff (what ``kubectl scale`` and the HPA controller do).

An actuator raises :class:`~tidal.live.faults.ActuationError`; the controller retries it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from tidal.core.types import PodSample
from tidal.live.client import JsonClient
from tidal.live.faults import ActuationError, Backoff, Sleep, retry
from tidal.live.sources import ADMIN_TOKEN_HINT, pod_id

log = logging.getLogger(__name__)


class Actuator(Protocol):
    """Sets (and, when it can, reads) the replica count of the controlled service."""

    async def scale(self, replicas: int) -> None:
        """Ask for ``replicas``; raises :class:`ActuationError` on failure."""

    async def current(self) -> int | None:
        """The count currently asked for (``None`` when it cannot be read)."""

    async def aclose(self) -> None:
        """Release connections."""


class LocalActuator:
    """The balancer admin API: ``PUT /admin/replicas`` sets the desired worker count.

    A 401/403 raises :class:`~tidal.live.faults.AuthError` naming ``token_field`` (fatal, not retried).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0,
                 token_field: str = "actuator.token_file") -> None:
        self.client = JsonClient(url, token, timeout, error_type=ActuationError, auth_field=token_field,
                                 auth_hint=ADMIN_TOKEN_HINT)

    async def scale(self, replicas: int) -> None:
        state = await self.client.request("PUT", "/admin/replicas", json={"count": int(replicas)})
        got = state.get("desired") if isinstance(state, Mapping) else None
        if got is not None and int(got) != int(replicas):
            raise ActuationError(f"balancer set desired={got} after asking for {replicas}")

    async def current(self) -> int | None:
        state = await self.client.request("GET", "/admin/state")
        desired = state.get("desired") if isinstance(state, Mapping) else None
        return None if desired is None else int(desired)

    async def bounds(self) -> tuple[int, int] | None:
        """The balancer's own ``[min, max]`` from ``/admin/state`` (``None`` if it does not report them)."""
        state = await self.client.request("GET", "/admin/state")
        if not isinstance(state, Mapping):
            return None
        lo, hi = state.get("min"), state.get("max")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
            return None
        return int(lo), int(hi)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        await self.client.aclose()

    def describe(self) -> str:
        return f"local pool via {self.client.base_url}"


# --------------------------------------------------------------------------- kubernetes


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_UNITS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3}


def _quantity(text: str) -> float | None:
    """A Kubernetes quantity (``500m``, ``2``, ``256Mi``) as a float; ``None`` if unparsable."""
    text = str(text).strip()
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * _UNITS[suffix]
            except ValueError:
                return None
    try:
        return float(text)
    except ValueError:
        return None


def pod_sample(pod: Any, index: int) -> PodSample:
    """A :class:`PodSample` from a ``V1Pod`` (ready from its Ready condition; CPU in cores, memory in MiB)."""
    status = pod.status
    conditions = {c.type: c for c in (status.conditions or [])} if status is not None else {}
    ready_cond = conditions.get("Ready")
    ready = ready_cond is not None and ready_cond.status == "True"
    draining = pod.metadata.deletion_timestamp is not None
    requests: dict[str, float] = {}
    for container in (pod.spec.containers or []) if pod.spec is not None else []:
        reqs = (container.resources.requests or {}) if container.resources is not None else {}
        for resource, qty in reqs.items():
            value = _quantity(qty)
            if value is None:
                continue
            name = "memory" if resource == "memory" else "gpu" if resource.endswith("gpu") else resource
            scale = 1.0 / 1024.0**2 if name == "memory" else 1.0
            requests[name] = requests.get(name, 0.0) + value * scale
    started = _timestamp(status.start_time if status is not None else None)
    started = started if started is not None else _timestamp(pod.metadata.creation_timestamp)
    uid = pod.metadata.uid or pod.metadata.name or str(index)
    return PodSample(
        id=pod_id(uid),
        ready=ready and not draining,
        started_at=started if started is not None else math.nan,
        ready_at=_timestamp(ready_cond.last_transition_time) if ready else None,
        in_flight=0,
        requests=requests,
        draining=draining,
    )


class KubernetesActuator:
    """A Deployment's ``scale`` subresource, with 409 Conflict retried after a fresh read.

    ``api_client`` is a ``kubernetes.client.ApiClient`` (tests point one at a mock server with
    ``Configuration(host=...)``). The client is synchronous, so calls run in a worker thread.
    """

    def __init__(self, namespace: str, deployment: str, api_client: Any, *, timeout: float = 5.0,
                 conflict_retries: int = 5, conflict_backoff: Backoff | None = None, sleep: Sleep = asyncio.sleep,
                 list_pods: bool = True) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.deployment = deployment
        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.timeout = timeout
        self.list_pods = list_pods
        self.backoff = conflict_backoff or Backoff(attempts=conflict_retries + 1, base=0.05, factor=2.0, cap=1.0)
        self.sleep = sleep
        self.conflicts = 0
        self._selector: str | None = None

    @classmethod
    def from_kubeconfig(cls, namespace: str, deployment: str, kubeconfig: str | None = None,
                        context: str | None = None, **kwargs: Any) -> KubernetesActuator:
        """Client from a kubeconfig file; without one, in-cluster config, then ``~/.kube/config``."""
        from kubernetes import config

        if kubeconfig is not None:
            api_client = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        else:
            try:
                config.load_incluster_config()
                from kubernetes import client

                api_client = client.ApiClient()
            except config.ConfigException:
                api_client = config.new_client_from_config(context=context)
        return cls(namespace, deployment, api_client, **kwargs)

    def _read(self) -> Any:
        return self.apps.read_namespaced_deployment_scale(self.deployment, self.namespace,
                                                          _request_timeout=self.timeout)

    def _write_once(self, replicas: int) -> bool:
        """Read the scale, write it back with the same resourceVersion; False on 409 Conflict."""
        from kubernetes.client.rest import ApiException

        scale = self._read()
        self._selector = getattr(scale.status, "selector", None) or self._selector
        if scale.spec is not None and scale.spec.replicas == replicas:
            return True
        scale.spec.replicas = replicas
        try:
            self.apps.replace_namespaced_deployment_scale(self.deployment, self.namespace, scale,
                                                          _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def scale(self, replicas: int) -> None:
        async def attempt() -> None:
            try:
                ok = await asyncio.to_thread(self._write_once, int(replicas))
            except Exception as exc:  # noqa: BLE001 — API errors, refused connections, timeouts
                raise _NotRetried(exc) from exc
            if not ok:
                self.conflicts += 1
                raise _Conflict()

        def note(attempt_no: int, exc: BaseException) -> None:
            if isinstance(exc, _Conflict):
                log.info("scale %s/%s: 409 conflict (attempt %d), re-reading", self.namespace, self.deployment,
                         attempt_no)

        try:
            await retry(attempt, self.backoff, self.sleep, note, retry_on=(_Conflict,))
        except _Conflict:
            raise ActuationError(f"scale {self.namespace}/{self.deployment}: still conflicting after "
                                 f"{self.backoff.attempts} attempts") from None
        except _NotRetried as wrapped:
            raise ActuationError(f"scale {self.namespace}/{self.deployment}: {_describe(wrapped.error)}") from None

    async def current(self) -> int | None:
        try:
            scale = await asyncio.to_thread(self._read)
        except Exception as exc:  # noqa: BLE001
            raise ActuationError(f"read scale {self.namespace}/{self.deployment}: {_describe(exc)}") from None
        self._selector = getattr(scale.status, "selector", None) or self._selector
        return None if scale.spec is None or scale.spec.replicas is None else int(scale.spec.replicas)

    async def pods(self) -> Sequence[PodSample] | None:
        """The Deployment's pods (selected by the scale subresource's ``status.selector``)."""
        if not self.list_pods:
            return None
        if self._selector is None:
            await self.current()
        if not self._selector:
            return None
        try:
            listing = await asyncio.to_thread(self.core.list_namespaced_pod, self.namespace,
                                              label_selector=self._selector, _request_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            raise ActuationError(f"list pods of {self.namespace}/{self.deployment}: {_describe(exc)}") from None
        return tuple(pod_sample(pod, i) for i, pod in enumerate(listing.items or []))

    async def aclose(self) -> None:
        close = getattr(self.api_client, "close", None)
        if close is not None:
            await asyncio.to_thread(close)

    def describe(self) -> str:
        return f"kubernetes deployment {self.namespace}/{self.deployment}"


class _Conflict(Exception):
    pass


class _NotRetried(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(exc).__name__}: {exc}"
