"""The local worker pool: spawns, probes, drains, stops and replaces worker processes.

A worker passes through ``starting`` (spawned, model loading) → ``ready`` (``/readyz`` answered
200; routable) → ``draining`` (scale-in: no new requests; SIGTERM once the balancer's in-flight
count for it is 0, then it exits) and leaves the pool when its process exits. ``failed`` marks
a worker that was ejected (probes failed, start timed out, connection refused) or died: it gets
no requests, is stopped if still running, and a replacement is started at once.

The pool keeps ``desired`` workers in ``starting`` or ``ready``; :meth:`WorkerPool.reconcile`
closes the gap after every change — a scale request, a death, an ejection.

All methods run on the balancer's event loop; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from tidal.loadbalance import DEFAULT_WEIGHT
from tidal.serve.config import ServeConfig
from tidal.serve.worker import LISTENING_PREFIX

log = logging.getLogger("tidal.serve.pool")

STARTING, READY, DRAINING, FAILED = "starting", "ready", "draining", "failed"
STATES = (STARTING, READY, DRAINING, FAILED)
#: How long a stopped worker gets to exit after SIGTERM before SIGKILL.
TERM_GRACE_S = 10.0
#: A local worker's event loop runs on one core: its CPU "request", for ``cpu_utilization``.
CPU_REQUEST_CORES = 1.0
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: Backoff before restarting after workers failed to start (doubles per failure in a row, capped).
RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0


@dataclass(eq=False)
class WorkerProcess:
    """One worker as the pool sees it (mutable: its state and counts change)."""

    id: str
    state: str = STARTING
    port: int | None = None
    pid: int | None = None
    started_at: float = field(default_factory=time.time)  # unix seconds, for the admin API
    ready_at: float | None = None
    in_flight: int = 0  # requests the balancer sent it and has not had answered
    weight: int = DEFAULT_WEIGHT  # relative capacity, for weighted_round_robin
    started_mono: float = field(default_factory=time.monotonic)
    drain_mono: float | None = None
    failed_mono: float | None = None
    probe_failures: int = 0
    suspect: bool = False  # a connection to it failed; no requests until a probe says it is fine
    terminated: bool = False  # SIGTERM (or SIGKILL) sent
    lost: bool = False  # counted as a restart (died or ejected)
    in_backoff: bool = False  # waiting to be spawned after failed starts
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    task: asyncio.Task | None = field(default=None, repr=False)
    # (monotonic time, CPU seconds used) samples, one per health round, to report mean cores.
    cpu_samples: deque = field(default_factory=lambda: deque(maxlen=256), repr=False)

    def cpu_usage(self, window_s: float) -> float | None:
        """Mean cores used over about the last ``window_s`` seconds (None before two samples)."""
        if len(self.cpu_samples) < 2:
            return None
        t1, c1 = self.cpu_samples[-1]
        t0, c0 = self.cpu_samples[0]
        for t, c in self.cpu_samples:
            if t >= t1 - window_s:
                t0, c0 = t, c
                break
        return max(0.0, (c1 - c0) / (t1 - t0)) if t1 > t0 else None

    @property
    def routable(self) -> bool:
        return self.state == READY and not self.suspect and self.port is not None

    def as_dict(self, usage_window_s: float = 10.0) -> dict:
        out = {"id": self.id, "port": self.port, "pid": self.pid, "state": self.state,
               "started_at": self.started_at, "ready_at": self.ready_at, "in_flight": self.in_flight,
               "weight": self.weight, "requests": {"cpu": CPU_REQUEST_CORES}, "usage": {}}
        cpu = self.cpu_usage(usage_window_s)
        if cpu is not None:
            out["usage"]["cpu"] = round(cpu, 6)
        return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process from ``/proc`` (Linux); None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # Fields after the parenthesised command name (which may hold spaces): utime is the 12th.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (IndexError, ValueError):
        return None


class WorkerPool:
    """Local worker processes behind the balancer."""

    def __init__(self, config: ServeConfig, *, on_ready: Callable[[], None] = lambda: None,
                 on_change: Callable[[], None] = lambda: None, python: str | None = None,
                 log_format: str = "text") -> None:
        self.config = config
        self.log_format = log_format
        self.on_ready = on_ready  # a worker became routable (wakes buffered requests)
        self.on_change = on_change  # states or counts changed (stats, gauges)
        self.python = python or sys.executable
        self.workers: dict[str, WorkerProcess] = {}
        self.desired = config.replicas
        self.stopping = False
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._health_task: asyncio.Task | None = None
        self.restarts = 0
        # Workers in a row that died or were ejected before ever becoming ready: a worker that
        # cannot start (bad model dir, broken install) must not be respawned in a tight loop.
        self.start_failures = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.health_timeout),
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
        )
        self.reconcile()
        self._health_task = asyncio.create_task(self._health_loop())

    async def stop(self) -> None:
        """Stop every worker: SIGTERM (they finish what they hold), SIGKILL after a grace period."""
        self.stopping = True
        self.desired = 0
        if self._health_task:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        for w in self.workers.values():
            self._signal(w, signal.SIGTERM)
            if w.in_backoff and w.task is not None:
                w.task.cancel()  # not spawned yet: nothing to wait for
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=TERM_GRACE_S)
            for w in list(self.workers.values()):
                self._signal(w, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        if self._session:
            await self._session.close()

    # ------------------------------------------------------------------ queries
    def routable(self) -> list[WorkerProcess]:
        """Workers that may take a request now, in creation order (stable for the balancers)."""
        return [w for w in self.workers.values() if w.routable]

    def count(self, state: str) -> int:
        return sum(1 for w in self.workers.values() if w.state == state)

    def active(self) -> list[WorkerProcess]:
        """Workers counted against ``desired``: starting or ready."""
        return [w for w in self.workers.values() if w.state in (STARTING, READY)]

    # ------------------------------------------------------------------ scaling
    def set_desired(self, n: int, weight: int | None = None) -> None:
        """Start or drain workers until ``n`` are starting or ready.

        Workers started by this call get ``weight`` (default: the config's ``weight``); any
        later start, including the replacement of a worker that died, gets the config's.
        """
        if not self.config.min <= n <= self.config.max:
            raise ValueError(f"count must lie in [min, max] = [{self.config.min}, {self.config.max}], got {n}")
        if n != self.desired:
            log.info("desired replicas", extra={"event": "pool_desired", "from": self.desired, "to": n})
        self.desired = n
        self.reconcile(weight)

    def drain_worker(self, worker_id: str) -> None:
        """Drain one named worker; ``desired`` drops by one unless already at ``min`` (then it is replaced)."""
        w = self.workers.get(worker_id)
        if w is None:
            raise KeyError(worker_id)
        if w.state not in (STARTING, READY):
            raise ValueError(f"worker {worker_id} is already {w.state}")
        self.desired = max(self.config.min, self.desired - 1)
        self._begin_drain(w)
        self.reconcile()

    def reconcile(self, weight: int | None = None) -> None:
        """Start or drain workers until ``desired`` are starting or ready (new ones get ``weight``)."""
        if self.stopping:
            return
        active = self.active()
        for _ in range(self.desired - len(active)):
            self._spawn(weight)
        excess = len(active) - self.desired
        if excess > 0:
            # Starting workers first (they hold no requests), newest first; then the ready
            # ones holding the fewest requests, newest first — the quickest to drain.
            order = sorted(active, key=lambda w: (w.state == READY, w.in_flight, -w.started_mono))
            for w in order[:excess]:
                self._begin_drain(w)
        self.on_change()

    # ------------------------------------------------------------------ request accounting
    def acquire(self, w: WorkerProcess) -> None:
        w.in_flight += 1
        self.on_change()

    def release(self, w: WorkerProcess) -> None:
        w.in_flight -= 1
        if w.state == DRAINING:
            self._maybe_stop_drained(w)
        self.on_change()

    def connection_failed(self, w: WorkerProcess) -> None:
        """A proxied request could not reach ``w``: stop routing to it until a probe decides."""
        if w.state != READY or w.suspect:
            return
        if w.process is not None and w.process.returncode is not None:
            self._fail(w, "process exited")
            return
        w.suspect = True
        log.warning("connection to worker failed", extra={"event": "worker_suspect", "worker": w.id, "port": w.port})
        asyncio.get_running_loop().create_task(self._probe(w))
        self.on_change()

    # ------------------------------------------------------------------ internals
    def _spawn(self, weight: int | None = None) -> WorkerProcess:
        w = WorkerProcess(id=f"w{next(self._ids)}", weight=self.config.weight if weight is None else weight)
        self.workers[w.id] = w
        w.task = asyncio.get_running_loop().create_task(self._run(w))
        log.info("starting worker", extra={"event": "worker_starting", "worker": w.id, "weight": w.weight})
        return w

    def _command(self) -> list[str]:
        c = self.config
        cmd = [self.python, "-m", "tidal.serve.worker", "--host", "127.0.0.1", "--port", "0",
               "--concurrency", str(c.concurrency), "--model-dir", str(c.model_dir),
               "--load-delay", str(c.load_delay), "--service-time", str(c.service_time),
               "--parent-pid", str(os.getpid())]
        cmd += ["--log-format", self.log_format,
                "--log-level", logging.getLevelName(logging.getLogger("tidal").getEffectiveLevel())]
        return cmd

    async def _run(self, w: WorkerProcess) -> None:
        """Own one worker process from spawn to exit, then let the pool replace it if needed."""
        rc: int | None = None
        try:
            if self.start_failures:
                w.in_backoff = True
                await asyncio.sleep(min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (self.start_failures - 1)))
                w.in_backoff = False
                if w.terminated or self.stopping:
                    return  # drained before it was started (finally removes it)
            proc = await asyncio.create_subprocess_exec(
                *self._command(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            )
            w.process, w.pid = proc, proc.pid
            if w.terminated:  # drained or stopped while spawning
                self._signal(w, signal.SIGTERM, force=True)
            port = await self._read_port(proc)
            if port is None:
                if not (w.terminated or self.stopping):  # else it was stopped before it could listen
                    self._fail(w, "no listening line from worker")
            else:
                w.port = port
                log.info("worker listening", extra={"event": "worker_listening", "worker": w.id,
                                                    "port": port, "pid": proc.pid})
            rc = await proc.wait()
        except asyncio.CancelledError:
            if w.process is not None and w.process.returncode is None:
                w.process.kill()
            raise
        except OSError as exc:
            log.error("cannot start worker", extra={"event": "worker_spawn_failed", "worker": w.id, "error": str(exc)})
        finally:
            self.workers.pop(w.id, None)
        expected = self.stopping or (w.terminated and w.state != FAILED)
        if not expected:
            self._count_loss(w)
        level = logging.INFO if expected else logging.WARNING
        log.log(level, "worker exited", extra={"event": "worker_exited", "worker": w.id, "pid": w.pid,
                                               "rc": rc, "state": w.state, "expected": expected})
        if not self.stopping:
            self.reconcile()

    async def _read_port(self, proc: asyncio.subprocess.Process) -> int | None:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.config.start_timeout)
        except TimeoutError:
            return None
        # Keep reading stdout so a chatty worker can never block on a full pipe.
        asyncio.get_running_loop().create_task(self._discard(proc.stdout))
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith(LISTENING_PREFIX):
            return None
        fields = dict(part.split("=", 1) for part in text.split()[1:] if "=" in part)
        try:
            return int(fields["port"])
        except (KeyError, ValueError):
            return None

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while await stream.read(65536):
                pass

    def _begin_drain(self, w: WorkerProcess) -> None:
        if w.state == DRAINING:
            return
        was = w.state
        w.state = DRAINING
        w.drain_mono = time.monotonic()
        log.info("draining worker", extra={"event": "worker_draining", "worker": w.id, "was": was,
                                           "in_flight": w.in_flight})
        self._maybe_stop_drained(w)

    def _maybe_stop_drained(self, w: WorkerProcess) -> None:
        # SIGTERM only once nothing is in flight: the worker would finish them anyway, but
        # waiting here keeps the connection open and the answer certain.
        if w.in_flight <= 0 and not w.terminated:
            self._signal(w, signal.SIGTERM)
            if w.in_backoff and w.task is not None:
                w.task.cancel()  # never spawned: just forget it

    def _fail(self, w: WorkerProcess, reason: str) -> None:
        """Eject ``w``: no more requests, stop its process, start a replacement."""
        if w.state == FAILED:
            return
        was = w.state
        w.state = FAILED
        w.failed_mono = time.monotonic()
        self._count_loss(w)
        log.warning("worker ejected", extra={"event": "worker_ejected", "worker": w.id, "was": was, "reason": reason})
        self._signal(w, signal.SIGTERM)
        self.reconcile()

    def _count_loss(self, w: WorkerProcess) -> None:
        """Count a worker that died or was ejected (once), before its replacement is spawned."""
        if w.lost or self.stopping:
            return
        w.lost = True
        self.restarts += 1
        if w.ready_at is None:
            self.start_failures += 1

    def _signal(self, w: WorkerProcess, sig: int, force: bool = False) -> None:
        if sig == signal.SIGTERM and w.terminated and not force:
            return
        w.terminated = True
        proc = w.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    async def _probe(self, w: WorkerProcess) -> bool | None:
        """GET /readyz on ``w`` and update its state; True when it answered 200."""
        if w.port is None or self._session is None:
            return None
        try:
            async with self._session.get(f"http://127.0.0.1:{w.port}/readyz") as resp:
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        if w.state == STARTING:
            if ok:
                w.state = READY
                w.ready_at = time.time()
                self.start_failures = 0
                log.info("worker ready", extra={"event": "worker_ready", "worker": w.id, "port": w.port,
                                                "cold_start_s": round(time.monotonic() - w.started_mono, 3)})
                self.on_change()
                self.on_ready()
        elif w.state == READY:
            if ok:
                w.probe_failures = 0
                if w.suspect:
                    w.suspect = False
                    self.on_change()
                    self.on_ready()
            else:
                w.probe_failures += 1
                if w.suspect or w.probe_failures >= self.config.unhealthy_threshold:
                    self._fail(w, "readiness probe failed")
        return ok

    async def _health_loop(self) -> None:
        while True:
            now = time.monotonic()
            for w in list(self.workers.values()):
                if w.state == STARTING and now - w.started_mono > self.config.start_timeout + self.config.load_delay:
                    self._fail(w, "start timeout")
                elif (w.state == DRAINING and not w.terminated and w.drain_mono is not None
                      and now - w.drain_mono > self.config.drain_timeout):
                    # Stuck requests: the worker itself still finishes what it holds after SIGTERM.
                    log.warning("drain timeout", extra={"event": "worker_drain_timeout", "worker": w.id,
                                                        "in_flight": w.in_flight})
                    self._signal(w, signal.SIGTERM)
                elif w.state == FAILED and w.failed_mono is not None and now - w.failed_mono > TERM_GRACE_S:
                    self._signal(w, signal.SIGKILL)  # ejected and still not gone
            for w in self.workers.values():
                if w.pid is not None and (used := cpu_seconds(w.pid)) is not None:
                    w.cpu_samples.append((now, used))
            probes = [self._probe(w) for w in self.workers.values() if w.state in (STARTING, READY)]
            if probes:
                await asyncio.gather(*probes, return_exceptions=True)
            await asyncio.sleep(self.config.health_interval)
