"""The Kubernetes actuator against kmock, a local Kubernetes API mock server (real paths, real client).

kmock's emulator stores objects and serves the core verbs, but it has no ``scale`` subresource
and no optimistic concurrency (it never compares ``resourceVersion``), so the test declares the
two ``.../deployments/{name}/scale`` endpoints as kmock reactions that implement exactly that:
GET returns an ``autoscaling/v1`` Scale with the current ``resourceVersion``; PUT answers 409
Conflict unless the body carries that version, then stores the count and bumps the version.
Pods are plain emulator objects, listed through the real ``/api/v1/namespaces/{ns}/pods`` path.
"""

from __future__ import annotations

import asyncio

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration

from tidal.live import Controller, KubernetesActuator
from tidal.live.faults import ActuationError, Backoff
from tidal.live.testing import ScriptedSource
from tidal.policy import build_policy

NS, NAME = "prod", "web"
SCALE_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}/scale"


class ScaleSubresource:
    """The Deployment's scale subresource with resourceVersion semantics.

    ``interfere`` > 0 makes a concurrent writer change the object right after each of that many
    reads, so the reader's write carries a stale version and gets 409.
    """

    def __init__(self, replicas: int = 2) -> None:
        self.replicas = replicas
        self.version = 100
        self.interfere = 0
        self.conflicts = 0
        self.puts: list[dict] = []

    def document(self) -> dict:
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": NAME, "namespace": NS, "resourceVersion": str(self.version)},
                "spec": {"replicas": self.replicas},
                "status": {"replicas": self.replicas, "selector": "app=web"}}

    def get(self, request: kmock.Request) -> dict:
        doc = self.document()
        if self.interfere > 0:
            self.interfere -= 1
            self.version += 1  # someone else (kubectl scale, another controller) wrote meanwhile
        return doc

    def put(self, request: kmock.Request) -> dict:
        body = request.data or {}
        self.puts.append(body)
        if body.get("metadata", {}).get("resourceVersion") != str(self.version):
            self.conflicts += 1
            raise kmock.KubernetesError(status=409, reason="Conflict", message=(
                f'Operation cannot be fulfilled on deployments.apps "{NAME}": the object has been modified; '
                "please apply your changes to the latest version and try again"))
        self.replicas = int(body["spec"]["replicas"])
        self.version += 1
        return self.document()


def pod(name: str, ready: bool, deleting: bool = False) -> dict:
    meta = {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": {"app": "web"},
            "creationTimestamp": "2026-01-01T00:00:00Z"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "model", "image": "m:1",
                                     "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:10Z",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": "2026-01-01T00:01:00Z"}]}}


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def with_cluster(body, scale: ScaleSubresource, pods=(), conflict_retries: int = 5):
    """Run ``body(actuator, k, sleeps)`` against a kmock API server on a free loopback port."""

    async def go():
        async with kmock.KubernetesEmulator() as k, kmock.Server(k) as server:
            k["get " + SCALE_PATH] << scale.get
            k["put " + SCALE_PATH] << scale.put
            for p in pods:
                k.objects[kmock.resource("", "v1", "pods"), NS, p["metadata"]["name"]] = p
            api = ApiClient(Configuration(host=str(server.url).rstrip("/")))
            sleeps = Sleeps()
            actuator = KubernetesActuator(NS, NAME, api, timeout=5.0, conflict_retries=conflict_retries, sleep=sleeps)
            try:
                return await asyncio.wait_for(body(actuator, k, sleeps), 30)
            finally:
                await actuator.aclose()

    return asyncio.run(go())


def test_scale_writes_the_count_with_the_version_it_read():
    scale = ScaleSubresource(replicas=2)

    async def body(actuator, k, sleeps):
        before = await actuator.current()
        await actuator.scale(5)
        return before, await actuator.current(), [(str(r.method), r.url.path) for r in k]

    before, after, requests = with_cluster(body, scale)
    assert (before, after, scale.replicas) == (2, 5, 5)
    (put,) = scale.puts
    assert put["kind"] == "Scale" and put["spec"]["replicas"] == 5 and put["metadata"]["resourceVersion"] == "100"
    assert [path for _, path in requests] == [SCALE_PATH] * 4
    assert [m.split(".")[-1] for m, _ in requests] == ["GET", "GET", "PUT", "GET"]


def test_no_write_when_the_count_is_already_right():
    scale = ScaleSubresource(replicas=3)

    async def body(actuator, k, sleeps):
        await actuator.scale(3)

    with_cluster(body, scale)
    assert scale.puts == []


def test_conflicts_are_retried_after_a_fresh_read_with_backoff():
    scale = ScaleSubresource(replicas=2)
    scale.interfere = 2

    async def body(actuator, k, sleeps):
        await actuator.scale(4)
        return actuator.conflicts, sleeps.waits

    conflicts, waits = with_cluster(body, scale)
    assert scale.conflicts == conflicts == 2 and scale.replicas == 4
    assert [p["metadata"]["resourceVersion"] for p in scale.puts] == ["100", "101", "102"]
    assert waits == [0.05, 0.1]


def test_endless_conflicts_give_up_with_an_actuation_error():
    scale = ScaleSubresource(replicas=2)
    scale.interfere = 100

    async def body(actuator, k, sleeps):
        with pytest.raises(ActuationError, match="still conflicting after 3 attempts"):
            await actuator.scale(4)
        return sleeps.waits

    assert with_cluster(body, scale, conflict_retries=2) == [0.05, 0.1]
    assert scale.replicas == 2 and scale.conflicts == 3


def test_a_missing_deployment_is_an_actuation_error():
    async def go():
        async with kmock.KubernetesEmulator() as k, kmock.Server(k) as server:
            api = ApiClient(Configuration(host=str(server.url).rstrip("/")))
            actuator = KubernetesActuator(NS, "missing", api, timeout=5.0)
            try:
                with pytest.raises(ActuationError, match="HTTP 404"):
                    await actuator.scale(2)
            finally:
                await actuator.aclose()

    asyncio.run(go())


def test_pods_are_listed_by_the_scale_selector():
    scale = ScaleSubresource(replicas=3)
    cluster_pods = [pod("web-a", ready=True), pod("web-b", ready=False), pod("web-c", ready=True, deleting=True)]

    async def body(actuator, k, sleeps):
        samples = await actuator.pods()
        listing = [r for r in k if r.url.path == f"/api/v1/namespaces/{NS}/pods"]
        return samples, listing

    samples, listing = with_cluster(body, scale, cluster_pods)
    assert len(listing) == 1 and listing[0].params.get("labelSelector") == "app=web"
    a, b, c = samples
    assert a.ready and not a.draining and a.ready_at is not None
    assert a.requests == pytest.approx({"cpu": 0.5, "memory": 256.0})
    assert not b.ready and b.ready_at is None
    assert c.draining and not c.ready
    assert a.started_at == pytest.approx(1767225610.0)


def test_controller_scales_a_deployment():
    scale = ScaleSubresource(replicas=2)
    scale.interfere = 2  # the controller's read of the count, then the actuator's read before writing
    cluster_pods = [pod("web-a", ready=True), pod("web-b", ready=True)]

    async def body(actuator, k, sleeps):
        policy = build_policy({"name": "target_utilization", "target": 0.5, "window": 0}, 1, 10)
        source = ScriptedSource({"utilization": 1.0})  # Prometheus-like: no count, no pods
        controller = Controller(policy, source, actuator, min_replicas=1, max_replicas=10, sync_period=15.0,
                                retry_backoff=Backoff(attempts=2, base=0.0))
        return await controller.step(1000.0)

    record = with_cluster(body, scale, cluster_pods)
    # Pods come from the cluster (2 ready), the count from the scale subresource (2).
    assert (record.current, record.ready, record.desired, record.actuated) == (2, 2, 4, True)
    assert scale.replicas == 4 and scale.conflicts == 1


def test_actuator_built_from_a_kubeconfig_file(tmp_path):
    """The config path: ``actuator: {kind: kubernetes, kubeconfig: ...}`` through the real loader."""
    from tidal.live import build_actuator, controller_config_from_dict

    scale = ScaleSubresource(replicas=1)

    async def go():
        async with kmock.KubernetesEmulator() as k, kmock.Server(k) as server:
            k["get " + SCALE_PATH] << scale.get
            k["put " + SCALE_PATH] << scale.put
            (tmp_path / "kubeconfig").write_text(
                "apiVersion: v1\nkind: Config\ncurrent-context: mock\n"
                f"clusters: [{{name: mock, cluster: {{server: '{str(server.url).rstrip('/')}'}}}}]\n"
                "users: [{name: me, user: {token: abc}}]\n"
                "contexts: [{name: mock, context: {cluster: mock, user: me, namespace: prod}}]\n")
            config = controller_config_from_dict({
                "policy": {"name": "static", "replicas": 3}, "replicas": {"min": 1, "max": 5},
                "metrics": {"source": "prometheus", "url": "http://127.0.0.1:9", "queries": {"rps": "up"}},
                "actuator": {"kind": "kubernetes", "namespace": NS, "deployment": NAME, "kubeconfig": "kubeconfig"},
            }, base_dir=tmp_path)
            actuator = build_actuator(config.actuator)
            try:
                await actuator.scale(3)
            finally:
                await actuator.aclose()
            return [r.headers.get("Authorization") for r in k]

    auth = asyncio.run(go())
    assert scale.replicas == 3 and auth and set(auth) == {"Bearer abc"}


def test_an_unreadable_kubeconfig_is_an_input_error(tmp_path):
    from tidal.core.errors import TidalInputError
    from tidal.live import build_actuator
    from tidal.live.config import KubernetesActuatorSpec

    spec = KubernetesActuatorSpec(kind="kubernetes", deployment="web", kubeconfig=tmp_path / "missing")
    with pytest.raises(TidalInputError, match="actuator.kubeconfig"):
        build_actuator(spec)
