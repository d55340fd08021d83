"""Test doubles for the live controller: scripted source, recording actuator, fake balancer.

:class:`FakeBalancer` is a small aiohttp server that speaks exactly the balancer admin API of
``tidal serve`` (``GET /admin/state``, ``PUT``/``POST /admin/replicas``,
``DELETE /admin/replicas/<id>``, bearer token, 401 otherwise) without running any worker, so
controller tests need neither processes nor a model. Loopback only; port 0 picks a free port.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from tidal.core.types import PodSample
from tidal.live.faults import ActuationError, SourceError
from tidal.live.sources import Scrape


class ScriptedSource:
    """A metrics source whose answer the test sets; ``fail = True`` makes it raise."""

    def __init__(self, metrics: Mapping[str, float] | None = None, pods: Sequence[PodSample] | None = None,
                 replicas: int | None = None) -> None:
        self.metrics = dict(metrics or {})
        self.pods = pods
        self.replicas = replicas
        self.fail = False
        self.calls = 0

    async def scrape(self, now: float) -> Scrape:
        self.calls += 1
        if self.fail:
            raise SourceError("scripted source is down")
        return Scrape(metrics=dict(self.metrics), pods=self.pods, replicas=self.replicas)

    async def aclose(self) -> None:
        return None

    def describe(self) -> str:
        return "scripted"


class RecordingActuator:
    """Records every ``scale`` call; the first ``fail_next`` calls raise :class:`ActuationError`."""

    def __init__(self, replicas: int | None = None, fail_next: int = 0, readable: bool = True) -> None:
        self.replicas = replicas
        self.fail_next = fail_next
        self.readable = readable
        self.calls: list[int] = []

    async def scale(self, replicas: int) -> None:
        self.calls.append(replicas)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ActuationError("scripted actuation failure")
        self.replicas = replicas

    async def current(self) -> int | None:
        if not self.readable:
            raise ActuationError("scripted actuator cannot be read")
        return self.replicas

    async def aclose(self) -> None:
        return None

    def describe(self) -> str:
        return "recording"


class FakeBalancer:
    """The balancer admin API over real HTTP, with workers that are ready the moment they exist.

    Set :attr:`stats` to what ``/admin/state`` should report, :attr:`down` to answer 503.
    Every admin request is appended to :attr:`requests` as ``(method, path, json body)``.
    With ``bounds=(min, max)`` it reports them in ``/admin/state`` and, like ``tidal serve``,
    answers 400 to a count outside them; without, it reports none and takes any count.
    """

    def __init__(self, token: str = "secret-token", replicas: int = 1, host: str = "127.0.0.1",
                 bounds: tuple[int, int] | None = None) -> None:
        self.token = token
        self.host = host
        self.bounds = bounds
        self.desired = 0
        self.workers: list[dict[str, Any]] = []
        self.stats: dict[str, Any] = {"rps": 0.0, "concurrency": 0.0, "utilization": 0.0, "latency_p50": None,
                                      "latency_p95": None, "latency_p99": None, "drops": 0.0, "queue_length": 0,
                                      "completed": 0, "errors": 0}
        self.buffered = 0
        self.down = False
        self.requests: list[tuple[str, str, Any]] = []
        self._next_id = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._scale_to(replicas)

    # ---------------------------------------------------------------- pool
    def _scale_to(self, count: int) -> None:
        self.desired = count
        live = [w for w in self.workers if w["state"] != "draining"]
        while len(live) < count:
            now = time.time()
            worker = {"id": f"w{self._next_id}", "port": 40000 + self._next_id, "pid": 1000 + self._next_id,
                      "state": "ready", "started_at": now, "ready_at": now, "in_flight": 0}
            self._next_id += 1
            self.workers.append(worker)
            live.append(worker)
        for worker in live[count:]:
            # Drained at once: a fake worker has no requests in flight.
            self.workers.remove(worker)

    def state(self) -> dict[str, Any]:
        state = {"time": time.time(), "desired": self.desired, "replicas": [dict(w) for w in self.workers],
                 "buffered": self.buffered, "window_s": 10.0, "stats": dict(self.stats)}
        if self.bounds is not None:
            state["min"], state["max"] = self.bounds
        return state

    def _refuse(self, count: int) -> web.Response | None:
        """The balancer's 400 for a count outside its bounds (``None`` when the count is fine)."""
        if self.bounds is not None and not self.bounds[0] <= count <= self.bounds[1]:
            lo, hi = self.bounds
            return web.json_response({"error": f"count must lie in [min, max] = [{lo}, {hi}], got {count}"}, status=400)
        return None

    # ---------------------------------------------------------------- http
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = f"Bearer {self.token}"
        return hmac.compare_digest(header.encode(), expected.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        self.requests.append((request.method, request.path, body))
        if request.path.startswith("/admin/"):
            if not self._authorized(request):
                return web.json_response({"error": "unauthorized"}, status=401)
            if self.down:
                return web.json_response({"error": "down"}, status=503)
        return await handler(request)

    async def _get_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _put_replicas(self, request: web.Request) -> web.Response:
        body = await request.json()
        count = body.get("count") if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return web.json_response({"error": "count must be an integer >= 0"}, status=400)
        if (refused := self._refuse(count)) is not None:
            return refused
        self._scale_to(count)
        return web.json_response(self.state())

    async def _post_replicas(self, request: web.Request) -> web.Response:
        body = await request.json()
        add = body.get("add") if isinstance(body, dict) else None
        if not isinstance(add, int) or isinstance(add, bool) or add < 0:
            return web.json_response({"error": "add must be an integer >= 0"}, status=400)
        if (refused := self._refuse(self.desired + add)) is not None:
            return refused
        self._scale_to(self.desired + add)
        return web.json_response(self.state())

    async def _delete_replica(self, request: web.Request) -> web.Response:
        wid = request.match_info["id"]
        worker = next((w for w in self.workers if w["id"] == wid), None)
        if worker is None:
            return web.json_response({"error": f"no replica {wid}"}, status=404)
        self.workers.remove(worker)
        self.desired = max(0, self.desired - 1)
        return web.json_response(self.state())

    async def start(self) -> FakeBalancer:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/admin/state", self._get_state)
        app.router.add_put("/admin/replicas", self._put_replicas)
        app.router.add_post("/admin/replicas", self._post_replicas)
        app.router.add_delete("/admin/replicas/{id}", self._delete_replica)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 — the bound ephemeral port
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBalancer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
