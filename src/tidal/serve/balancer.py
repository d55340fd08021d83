"""The balancer: an aiohttp reverse proxy in front of the local worker pool, with an admin API.

Per request (``POST /predict`` and any method under ``/v1/``):

1. read the body; with ``consistent_hash`` take the key from ``X-Tidal-Key`` or a JSON ``key``;
2. pick a routable worker with the configured algorithm (:mod:`tidal.loadbalance`) and count
   the request against it — pick and count happen in one step of the event loop, so a worker
   chosen for draining can never receive a request after that;
3. while no worker is ready, wait in a bounded FIFO buffer (scale from zero); a full buffer or
   a wait longer than ``buffer_timeout`` answers 503 (a *drop*);
4. forward; if the connection fails, stop routing to the worker pending a probe and, for
   idempotent requests (GET/HEAD/PUT/DELETE/OPTIONS and ``POST /predict``), try another worker —
   up to ``retries`` more times, buffering again if none is left. Only failures that prove the
   request never reached the worker — a refused connection (aiohttp's ``ClientConnectorError``)
   or the worker's "not processed" 503 (``X-Tidal-Unavailable``) — are retried for any method;
   any other connection error (a dropped or reset connection, a failed send) may come after the
   worker processed it, so a non-idempotent request then gets 502.

Admin API (``Authorization: Bearer <token>``, compared in constant time): ``GET /admin/state``,
``PUT /admin/replicas {"count": N}``, ``POST /admin/replicas {"add": k}`` (``"weight": w`` gives
the new workers that weighted-round-robin weight), ``DELETE /admin/replicas/<id>``. ``GET /metrics`` is Prometheus text, without a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tidal.loadbalance import make_balancer
from tidal.serve.config import WEIGHT_MAX, ServeConfig
from tidal.serve.pool import DRAINING, READY, STATES, WorkerPool, WorkerProcess
from tidal.serve.stats import TrafficStats
from tidal.serve.worker import LATENCY_BUCKETS, UNAVAILABLE_HEADER

log = logging.getLogger("tidal.serve.balancer")

KEY_HEADER = "X-Tidal-Key"
WORKER_HEADER = "X-Tidal-Worker"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: Paths whose POST is declared idempotent (a prediction has no side effect).
IDEMPOTENT_POSTS = frozenset({"/predict"})
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Trailers",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Content-Encoding",
))


class Dropped(Exception):
    """No worker could take the request in time (answered 503)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Balancer:
    """Proxy, buffer, pool and admin API of ``tidal serve`` (one asyncio process)."""

    def __init__(self, config: ServeConfig, token: str, *, python: str | None = None,
                 log_format: str = "text") -> None:
        if not token:
            raise ValueError("the admin token must not be empty")
        self.config = config
        self._token = token.encode("utf-8")
        self.algorithm = make_balancer(config.algorithm, seed=config.seed, vnodes=config.hash_replicas)
        self.pool = WorkerPool(config, on_ready=self._wake_buffered, on_change=self._on_pool_change,
                               python=python, log_format=log_format)
        self.stats = TrafficStats(config.stats_window, time.monotonic())
        self._buffer: dict[asyncio.Future, None] = {}  # FIFO of waiting requests
        self._in_flight = 0  # accepted requests not yet answered (buffered included)
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._init_metrics()

    # ------------------------------------------------------------------ app wiring
    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[self._auth])
        app.router.add_post("/predict", self.proxy)
        app.router.add_route("*", "/v1/{tail:.*}", self.proxy)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/admin/state", self.admin_state)
        app.router.add_put("/admin/replicas", self.admin_set)
        app.router.add_post("/admin/replicas", self.admin_add)
        app.router.add_delete("/admin/replicas/{id}", self.admin_drain)
        app.on_startup.append(self._startup)
        # aiohttp: on_shutdown runs once the listener is closed, then in-flight handlers finish,
        # then on_cleanup — so workers are stopped only after the last proxied answer.
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=True,
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout),
        )
        await self.pool.start()
        log.info("balancer started", extra={"event": "balancer_started", "algorithm": self.config.algorithm,
                                            "replicas": self.config.replicas})

    async def _shutdown(self, app: web.Application) -> None:
        self.begin_close()

    async def _cleanup(self, app: web.Application) -> None:
        await self.close()

    def begin_close(self) -> None:
        """Refuse new and buffered requests (503); requests at workers carry on."""
        if not self._closing:
            self._closing = True
            log.info("balancer closing", extra={"event": "balancer_closing", "in_flight": self._in_flight})
        self._wake_buffered()

    async def close(self) -> None:
        """Stop every worker and close the client session."""
        self.begin_close()
        if self.pool.stopping:
            return
        await self.pool.stop()
        if self._session is not None:
            await self._session.close()
        log.info("balancer stopped", extra={"event": "balancer_stopped"})

    # ------------------------------------------------------------------ metrics
    def _init_metrics(self) -> None:
        r = self.registry = CollectorRegistry()
        self.m_requests = Counter("tidal_requests", "Requests answered by the balancer, by HTTP status code",
                                  ["code"], registry=r)
        self.m_duration = Histogram("tidal_request_duration_seconds", "Request latency at the balancer, seconds",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.m_in_flight = Gauge("tidal_in_flight", "Requests accepted and not yet answered (buffered included)",
                                 registry=r)
        self.m_buffered = Gauge("tidal_buffered", "Requests waiting for a ready worker", registry=r)
        self.m_replicas = Gauge("tidal_replicas", "Workers by state", ["state"], registry=r)
        self.m_desired = Gauge("tidal_desired_replicas", "Desired worker count", registry=r)
        self.m_drops = Counter("tidal_drops", "Requests refused with 503, by reason", ["reason"], registry=r)
        self.m_retries = Counter("tidal_retries", "Requests sent again to another worker, by cause", ["cause"],
                                 registry=r)
        self.m_restarts = Gauge("tidal_worker_restarts", "Workers replaced after dying or being ejected",
                                registry=r)
        for state in STATES:
            self.m_replicas.labels(state).set(0)

    def _on_pool_change(self) -> None:
        """Keep the step integrals of the stats in line with the pool (called on every change)."""
        now = time.monotonic()
        c = self.config.concurrency
        in_flight = busy = serving = 0
        for w in self.pool.workers.values():
            in_flight += w.in_flight
            busy += min(max(w.in_flight, 0), c)
            if w.state == READY or (w.state == DRAINING and w.in_flight > 0):
                serving += 1
        self.stats.in_system.set(now, in_flight + len(self._buffer))
        self.stats.busy.set(now, busy)
        self.stats.capacity.set(now, serving * c)

    def queue_length(self) -> int:
        """Buffered requests plus those waiting for a slot at a worker, now."""
        c = self.config.concurrency
        return len(self._buffer) + sum(max(w.in_flight - c, 0) for w in self.pool.workers.values())

    async def metrics(self, request: web.Request) -> web.Response:
        for state in STATES:
            self.m_replicas.labels(state).set(self.pool.count(state))
        self.m_in_flight.set(self._in_flight)
        self.m_buffered.set(len(self._buffer))
        self.m_desired.set(self.pool.desired)
        self.m_restarts.set(self.pool.restarts)
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    # ------------------------------------------------------------------ buffering and picking
    def _wake_buffered(self) -> None:
        waiters = list(self._buffer)
        self._buffer.clear()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        self._on_pool_change()

    async def _acquire(self, key: str | None, excluded: set[str], deadline: float) -> WorkerProcess:
        """A worker for this request, counted; waits in the buffer while none is routable."""
        while True:
            if self._closing:
                raise Dropped("shutting down")
            candidates = [w for w in self.pool.routable() if w.id not in excluded]
            if candidates:
                worker = self.algorithm.pick(candidates, key)
                self.pool.acquire(worker)
                return worker
            if len(self._buffer) >= self.config.buffer_limit:
                raise Dropped("buffer full")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Dropped("buffer timeout")
            fut = asyncio.get_running_loop().create_future()
            self._buffer[fut] = None
            self._on_pool_change()
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                raise Dropped("buffer timeout") from None
            finally:
                if fut in self._buffer:
                    del self._buffer[fut]
                    self._on_pool_change()

    # ------------------------------------------------------------------ the proxy
    def _key(self, request: web.Request, body: bytes) -> str | None:
        if self.config.algorithm != "consistent_hash":
            return None
        key = request.headers.get(KEY_HEADER)
        if key is not None:
            return key
        if body[:1] == b"{":
            try:
                value = json.loads(body).get("key")
            except (ValueError, AttributeError):
                return None
            if value is not None and not isinstance(value, (dict, list)):
                return str(value)
        return None

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        self.stats.arrival(started)
        self._in_flight += 1
        try:
            response = await self._proxy(request, started)
        except asyncio.CancelledError:
            self.m_requests.labels("499").inc()  # the client went away
            raise
        finally:
            self._in_flight -= 1
        self.m_requests.labels(str(response.status)).inc()
        self.m_duration.observe(time.monotonic() - started)
        return response

    async def _proxy(self, request: web.Request, started: float) -> web.Response:
        body = await request.read()
        key = self._key(request, body)
        idempotent = request.method in IDEMPOTENT_METHODS or (
            request.method == "POST" and request.path in IDEMPOTENT_POSTS)
        deadline = started + self.config.buffer_timeout
        excluded: set[str] = set()
        failure = "no attempt"
        for attempt in range(1 + self.config.retries):
            try:
                worker = await self._acquire(key, excluded, deadline)
            except Dropped as drop:
                self.stats.drop(time.monotonic())
                self.m_drops.labels(drop.reason).inc()
                log.debug("dropped", extra={"event": "request_dropped", "reason": drop.reason})
                return web.json_response({"error": f"no worker available ({drop.reason})"}, status=503,
                                         headers={"Retry-After": "1"})
            try:
                status, headers, payload = await self._forward(worker, request, body)
            except aiohttp.ClientConnectorError as exc:
                # Never connected: nothing was sent, so any method may go elsewhere. The worker
                # is now suspect (not routable) until a probe clears or ejects it.
                self.pool.connection_failed(worker)
                failure = f"cannot connect to worker {worker.id}: {exc.os_error}"
                if attempt < self.config.retries:
                    self.m_retries.labels("connect").inc()
                continue
            except TimeoutError:
                # Before the connection errors below: aiohttp's ServerTimeoutError is both.
                now = time.monotonic()
                self.stats.error(now)
                return web.json_response({"error": f"worker {worker.id} timed out"}, status=504)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
                # Connected, then lost or garbled: the worker closed or reset the connection, aiohttp
                # "Failed to send bytes" mid-request, or an unparsable answer. Part of the request may
                # have reached the worker, so it may have been processed: only an idempotent request
                # is sent again. The worker is suspect until a probe clears or ejects it.
                self.pool.connection_failed(worker)
                failure = f"lost the connection to worker {worker.id}: {type(exc).__name__}"
                if not idempotent:
                    break  # it may have been processed: sending it again is not safe
                if attempt < self.config.retries:
                    self.m_retries.labels("disconnect").inc()
                continue
            finally:
                self.pool.release(worker)
            if status == 503 and UNAVAILABLE_HEADER in headers and attempt < self.config.retries:
                # The worker refused it unprocessed (loading or draining): another one may take it.
                excluded.add(worker.id)
                self.m_retries.labels("unavailable").inc()
                continue
            now = time.monotonic()
            self.stats.answered(now, now - started, status)
            headers[WORKER_HEADER] = worker.id
            return web.Response(status=status, body=payload, headers=headers)
        self.stats.error(time.monotonic())
        log.warning("request failed", extra={"event": "request_failed", "error": failure, "path": request.path})
        return web.json_response({"error": failure}, status=502)

    async def _forward(self, worker: WorkerProcess, request: web.Request, body: bytes):
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        peer = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        url = f"http://127.0.0.1:{worker.port}{request.rel_url}"
        async with self._session.request(request.method, url, data=body or None, headers=headers,
                                         allow_redirects=False) as resp:
            payload = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
            return resp.status, out, payload

    # ------------------------------------------------------------------ admin API
    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if request.path.startswith("/admin/") or request.path == "/admin":
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            # compare_digest: the time taken does not depend on how much of the token matched.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), self._token):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="tidal"'})
        return await handler(request)

    def state(self) -> dict[str, Any]:
        """The ``GET /admin/state`` document."""
        now = time.monotonic()
        return {
            "time": time.time(),
            "desired": self.pool.desired,
            "replicas": [w.as_dict(self.config.stats_window) for w in self.pool.workers.values()],
            "buffered": len(self._buffer),
            "window_s": float(self.config.stats_window),
            "stats": self.stats.snapshot(now, self.queue_length()),
            "restarts": self.pool.restarts,
            "algorithm": self.config.algorithm,
            "min": self.config.min,
            "max": self.config.max,
        }

    async def admin_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _json_int(self, request: web.Request, field: str) -> int:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text=json.dumps({"error": "expected a JSON object"}),
                                     content_type="application/json") from None
        value = body.get(field) if isinstance(body, dict) else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise web.HTTPBadRequest(text=json.dumps({"error": f"{field}: expected an integer"}),
                                     content_type="application/json")
        return value

    def _set_desired(self, n: int, weight: int | None = None) -> web.Response:
        try:
            self.pool.set_desired(n, weight)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.state())

    async def admin_set(self, request: web.Request) -> web.Response:
        return self._set_desired(await self._json_int(request, "count"))

    async def admin_add(self, request: web.Request) -> web.Response:
        """``{"add": k}`` changes the desired count by ``k``; ``"weight": w`` gives the ``k`` new workers
        that weighted-round-robin weight (a bigger or smaller replica than the config's ``weight``)."""
        add = await self._json_int(request, "add")
        body = await request.json()  # already parsed and checked by _json_int (aiohttp caches the body)
        weight = body.get("weight")
        if weight is not None:
            if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= WEIGHT_MAX:
                return web.json_response({"error": f"weight: expected an integer in [1, {WEIGHT_MAX}]"}, status=400)
            if add <= 0:
                return web.json_response({"error": "weight: only for added workers (add > 0)"}, status=400)
        return self._set_desired(self.pool.desired + add, weight)

    async def admin_drain(self, request: web.Request) -> web.Response:
        worker_id = request.match_info["id"]
        try:
            self.pool.drain_worker(worker_id)
        except KeyError:
            return web.json_response({"error": f"no worker {worker_id!r}"}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response(self.state())


async def start_balancer(config: ServeConfig, token: str, **kwargs: Any) -> tuple[Balancer, web.AppRunner, int]:
    """Start the balancer's HTTP server on the running loop; returns it, its runner and the bound port."""
    balancer = Balancer(config, token, **kwargs)
    runner = web.AppRunner(balancer.app(), access_log=None, handle_signals=False,
                           shutdown_timeout=config.request_timeout)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        raise
    port = runner.addresses[0][1]
    log.info("listening", extra={"event": "balancer_listening", "host": config.host, "port": port})
    return balancer, runner, port
