"""A model worker: ``python -m tidal.serve.worker --port P --concurrency C --model-dir DIR``.

An aiohttp server that loads the digits MLP (:mod:`tidal.serve.model`) after it starts
listening, so ``/healthz`` answers during the cold start and ``/readyz`` turns 200 once the
model is in memory.

Endpoints:

- ``POST /predict`` — ``{"inputs": [[64 floats], ...]}`` or ``{"digits": k}`` (k random digits
  from the data set) → ``{"predictions": [...]}`` (plus ``"labels"``, the true digits, for
  ``digits``). At most ``C`` requests run at once (an ``asyncio.Semaphore``); more wait in FIFO.
- ``GET /healthz`` — 200 while the process is alive.
- ``GET /readyz`` — 200 once the model is loaded; 503 before and while draining.
- ``GET /metrics`` — Prometheus: ``tidal_worker_requests_total{code}``,
  ``tidal_worker_in_flight``, ``tidal_worker_request_duration_seconds``.

SIGTERM starts draining: ``/readyz`` answers 503, new ``/predict`` requests are refused with 503
and the header ``X-Tidal-Unavailable: draining`` (so a balancer knows the request was never
processed and may send it elsewhere), requests already accepted finish, and the process exits 0.

The first line on stdout is ``TIDAL_WORKER_LISTENING port=<port> pid=<pid>``: with ``--port 0``
the OS picks a free port and the parent learns it from that line. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tidal.serve.logs import configure_logging
from tidal.serve.model import N_FEATURES, DigitsModel, ensure_model

log = logging.getLogger("tidal.serve.worker")

LISTENING_PREFIX = "TIDAL_WORKER_LISTENING"
#: Response header of a request refused unprocessed (``loading`` or ``draining``): safe to retry.
UNAVAILABLE_HEADER = "X-Tidal-Unavailable"
MAX_DIGITS = 1000
MAX_ROWS = 10_000
#: Latency buckets (seconds) of the request histograms, worker and balancer alike.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class BadRequest(ValueError):
    """A request body the model cannot serve (answered 400)."""


class Worker:
    """State and handlers of one worker process (also usable in-process, for tests)."""

    def __init__(self, *, concurrency: int, model_dir: Path, load_delay: float = 0.0,
                 service_time: float = 0.0, drain_timeout: float = 60.0, seed: int | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.concurrency = concurrency
        self.model_dir = Path(model_dir)
        self.load_delay = load_delay
        self.service_time = service_time
        self.drain_timeout = drain_timeout
        self.rng = np.random.default_rng(seed)
        self.model: DigitsModel | None = None
        self.draining = False
        self.in_flight = 0  # accepted and not yet answered: running plus waiting for a slot
        self._slots: asyncio.Semaphore | None = None
        self._idle: asyncio.Event | None = None
        self.stopped: asyncio.Event | None = None
        self.registry = CollectorRegistry()
        self.m_requests = Counter("tidal_worker_requests", "Predict requests answered, by HTTP status code",
                                  ["code"], registry=self.registry)
        self.m_in_flight = Gauge("tidal_worker_in_flight", "Predict requests accepted and not yet answered",
                                 registry=self.registry)
        self.m_duration = Histogram("tidal_worker_request_duration_seconds", "Predict request latency, seconds",
                                    buckets=LATENCY_BUCKETS, registry=self.registry)
        self.m_ready = Gauge("tidal_worker_ready", "1 once the model is loaded and the worker is not draining",
                             registry=self.registry)

    # ------------------------------------------------------------------ lifecycle
    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/predict", self.predict)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.on_startup.append(self._on_startup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        # Loop-bound primitives are made on the serving loop.
        self._slots = asyncio.Semaphore(self.concurrency)
        self._idle = asyncio.Event()
        self.stopped = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.model is not None and not self.draining

    async def load_model(self) -> None:
        """The cold start: read (or first train) the model, then the emulated extra load time."""
        started = time.monotonic()
        model = await asyncio.to_thread(ensure_model, self.model_dir)
        if self.load_delay > 0:
            await asyncio.sleep(self.load_delay)
        self.model = model
        self.m_ready.set(0 if self.draining else 1)
        log.info("model loaded", extra={"event": "worker_model_loaded", "pid": os.getpid(),
                                        "seconds": round(time.monotonic() - started, 3)})

    def begin_drain(self) -> None:
        """Stop taking requests; set ``stopped`` once the accepted ones are answered."""
        if self.draining:
            return
        self.draining = True
        self.m_ready.set(0)
        log.info("draining", extra={"event": "worker_draining", "pid": os.getpid(), "in_flight": self.in_flight})
        asyncio.get_running_loop().create_task(self._finish_drain())

    async def _finish_drain(self) -> None:
        assert self._idle is not None and self.stopped is not None
        if self.in_flight > 0:
            try:
                await asyncio.wait_for(self._idle.wait(), self.drain_timeout)
            except TimeoutError:
                log.warning("drain timeout with requests in flight",
                            extra={"event": "worker_drain_timeout", "in_flight": self.in_flight})
        self.stopped.set()

    # ------------------------------------------------------------------ handlers
    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        if self.model is None:
            return web.json_response({"status": "loading"}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def predict(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        if self.draining or self.model is None:
            reason = "draining" if self.draining else "loading"
            self.m_requests.labels("503").inc()
            return web.json_response({"error": f"worker {reason}"}, status=503, headers={UNAVAILABLE_HEADER: reason})
        assert self._slots is not None and self._idle is not None
        self.in_flight += 1
        self.m_in_flight.inc()
        status = 200
        try:
            try:
                body = await request.json()
                rows, labels = self._parse(body)
            except (BadRequest, json.JSONDecodeError, UnicodeDecodeError) as exc:
                status = 400
                return web.json_response({"error": str(exc) or "invalid JSON"}, status=400)
            async with self._slots:
                predictions = self.model.predict(rows)
                if self.service_time > 0:
                    # Holds the slot like a heavier model would (lets tests and demos load the pool).
                    await asyncio.sleep(self.service_time)
            result: dict[str, list[int]] = {"predictions": [int(p) for p in predictions]}
            if labels is not None:
                result["labels"] = [int(v) for v in labels]
            return web.json_response(result)
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's code); nothing to answer
            raise
        finally:
            self.in_flight -= 1
            self.m_in_flight.dec()
            self.m_requests.labels(str(status)).inc()
            self.m_duration.observe(time.perf_counter() - started)
            if self.in_flight == 0:
                self._idle.set()
            else:
                self._idle.clear()

    def _parse(self, body: object) -> tuple[np.ndarray, np.ndarray | None]:
        if not isinstance(body, dict):
            raise BadRequest('expected a JSON object: {"inputs": [[64 numbers], ...]} or {"digits": k}')
        if "digits" in body:
            k = body["digits"]
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_DIGITS:
                raise BadRequest(f"digits: expected an integer in [1, {MAX_DIGITS}], got {k!r}")
            assert self.model is not None
            return self.model.sample(k, self.rng)
        if "inputs" in body:
            inputs = body["inputs"]
            if not isinstance(inputs, list) or not inputs or len(inputs) > MAX_ROWS:
                raise BadRequest(f"inputs: expected a list of 1 to {MAX_ROWS} rows")
            try:
                rows = np.asarray(inputs, dtype=np.float64)
            except (TypeError, ValueError):
                raise BadRequest(f"inputs: expected rows of {N_FEATURES} numbers") from None
            if rows.ndim != 2 or rows.shape[1] != N_FEATURES or not np.isfinite(rows).all():
                raise BadRequest(f"inputs: expected rows of {N_FEATURES} finite numbers, got shape {list(rows.shape)}")
            return rows, None
        raise BadRequest('expected "inputs" or "digits"')


# ---------------------------------------------------------------------- process entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tidal.serve.worker", description="tidal model worker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (reported on stdout)")
    p.add_argument("--concurrency", type=int, default=4, help="requests served at once; more wait")
    p.add_argument("--model-dir", type=Path, default=Path(".tidal/model"))
    p.add_argument("--load-delay", type=float, default=0.0, help="extra seconds of model loading")
    p.add_argument("--service-time", type=float, default=0.0, help="extra seconds each request holds a slot")
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=None, help="seed of the digits sampler")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process goes away")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    if args.load_delay < 0 or args.service_time < 0:
        p.error("--load-delay and --service-time must be >= 0")
    return args


async def _watch_parent(worker: Worker, parent_pid: int) -> None:
    # A worker must not outlive the balancer that spawned it (a crash there leaves no one to stop it).
    while not worker.draining:
        if os.getppid() != parent_pid:
            log.warning("parent gone, stopping", extra={"event": "worker_orphaned", "parent_pid": parent_pid})
            worker.begin_drain()
            return
        await asyncio.sleep(1.0)


async def serve(args: argparse.Namespace) -> int:
    worker = Worker(concurrency=args.concurrency, model_dir=args.model_dir, load_delay=args.load_delay,
                    service_time=args.service_time, drain_timeout=args.drain_timeout, seed=args.seed)
    runner = web.AppRunner(worker.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"{LISTENING_PREFIX} port={port} pid={os.getpid()}", flush=True)
    log.info("listening", extra={"event": "worker_listening", "port": port, "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.begin_drain)
    tasks = [asyncio.create_task(worker.load_model())]
    if args.parent_pid:
        tasks.append(asyncio.create_task(_watch_parent(worker, args.parent_pid)))
    assert worker.stopped is not None
    stop = asyncio.create_task(worker.stopped.wait())
    done, _ = await asyncio.wait([stop, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
    rc = 0
    if tasks[0] in done and tasks[0].exception() is not None:
        exc = tasks[0].exception()
        log.error("model load failed", extra={"event": "worker_load_failed", "error": repr(exc)})
        rc = 1
    else:
        await stop
    for task in tasks:
        task.cancel()
    stop.cancel()
    await runner.cleanup()
    log.info("stopped", extra={"event": "worker_stopped", "pid": os.getpid(), "rc": rc})
    return rc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_format, getattr(logging, str(args.log_level).upper(), logging.INFO))
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
