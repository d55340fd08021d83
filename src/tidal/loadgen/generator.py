"""The load generator: asyncio + aiohttp, open loop (arrival times) or closed loop (max throughput).

**Open loop**: a driver walks the schedule and starts each request at its arrival time as its
own task, never waiting for answers — the server sees the workload whatever its latency, as in
production (a closed-loop client slows down with the server and hides its queueing). The only
brake is a safety cap of ``connections`` requests in flight: at the cap the driver waits, which
shows up as ``send_lag`` in the summary.

**Closed loop**: ``clients`` tasks each send a request as soon as their previous one is answered,
for ``duration`` or ``max_requests`` — the maximum throughput a target sustains.

``stop()`` ends sending and lets requests in flight finish (each is bounded by ``timeout``);
``abort()`` also cancels them (recorded as ``cancelled``). Both are safe to call from a signal
handler on the generator's loop; from another thread use ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from tidal.loadgen.results import ERROR_KINDS, LoadSummary, RequestLog, summarize, timeline
from tidal.loadgen.schedule import Schedule, build_schedule
from tidal.loadgen.spec import KEY_HEADER, LoadSpec
from tidal.workload import Arrivals

log = logging.getLogger(__name__)

WORKER_HEADER = "X-Tidal-Worker"
#: Due requests started in a row before the driver yields to the event loop (keeps I/O flowing
#: when the generator runs behind schedule).
_BURST = 64


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays."""

    elapsed_s: float
    sent: int
    finished: int
    in_flight: int


@dataclass
class LoadResult:
    """A finished run: its spec, summary and per-request log."""

    spec: LoadSpec
    summary: LoadSummary
    log: RequestLog

    def timeline(self, bin_s: float = 1.0) -> list[dict[str, Any]]:
        return timeline(self.log, bin_s)

    def to_dict(self, *, requests: bool = False, bin_s: float = 1.0) -> dict[str, Any]:
        """JSON document: spec, summary, per-second timeline, and optionally every request."""
        doc: dict[str, Any] = {
            "spec": self.spec.model_dump(mode="json"),
            "summary": self.summary.to_dict(),
            "timeline": self.timeline(bin_s),
        }
        if requests:
            a = self.log.arrays()
            doc["requests"] = {name: col.tolist() for name, col in a.items()}
            doc["requests"]["error_kinds"] = list(ERROR_KINDS)
        return doc


class LoadGenerator:
    """One run of ``spec`` (build a new generator for another run)."""

    def __init__(self, spec: LoadSpec, schedule: Schedule | None = None) -> None:
        self.spec = spec
        if spec.open_loop and schedule is None:
            schedule = build_schedule(spec.workload, seed=spec.seed, duration=spec.duration,
                                      time_scale=spec.time_scale, chunk=spec.chunk,
                                      max_requests=spec.max_requests)
        self.schedule = schedule
        self.log = RequestLog()
        self._url = spec.target
        self._body = spec.body_bytes()
        self._headers = dict(spec.headers)
        if self._body is not None:
            self._headers.setdefault("Content-Type", "application/json")
        self._tasks: set[asyncio.Task] = set()
        self._driver: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._stopping = False
        self._stopped_at: float | None = None
        self._finished = 0
        self._planned = 0

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Send nothing more; requests in flight finish."""
        if not self._stopping and self._loop is not None:
            self._stopped_at = self._loop.time() - self._t0
        self._stopping = True
        # The open-loop driver may be asleep until a distant arrival: wake it now. Closed-loop
        # clients check the flag after each answer (cancelling them would cancel their requests).
        if self.spec.open_loop and self._driver is not None and not self._driver.done():
            self._driver.cancel()

    def abort(self) -> None:
        """Stop and cancel the requests in flight."""
        self.stop()
        for task in list(self._tasks):
            task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def progress(self) -> Progress:
        now = self._loop.time() - self._t0 if self._loop is not None else 0.0
        sent = len(self.log)
        return Progress(now, sent, self._finished, sent - self._finished)

    # ------------------------------------------------------------------ run
    async def run(self) -> LoadResult:
        """Send the whole load (or until stopped) and wait for the answers."""
        if self._loop is not None:
            raise RuntimeError("a LoadGenerator runs once")
        spec = self.spec
        self._loop = asyncio.get_running_loop()
        cap = spec.connections if spec.open_loop else max(spec.connections, spec.clients or 1)
        connector = aiohttp.TCPConnector(limit=cap, limit_per_host=0, enable_cleanup_closed=True)
        # trust_env=False: the generator talks to the address it was given, never through a proxy.
        async with aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=spec.timeout)) as session:
            if spec.open_loop:
                assert self.schedule is not None
                # The first window is drawn before the clock starts: it may load compiled code
                # (hundreds of ms), which would otherwise make the first requests late.
                chunks = self.schedule.chunks()
                first = next(chunks, None)
                chunks = itertools.chain([] if first is None else [first], chunks)
                self._t0 = self._loop.time()
                self._driver = asyncio.create_task(self._open_loop(session, chunks, asyncio.Semaphore(cap)))
            else:
                self._t0 = self._loop.time()
                self._driver = asyncio.create_task(self._closed_loop(session))
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        end = self._loop.time() - self._t0
        if spec.open_loop:
            assert self.schedule is not None
            duration = self.schedule.wall_duration
            if spec.max_requests is not None and self._planned >= spec.max_requests and len(self.log):
                # The request cap, not the duration, ended the schedule: it spanned until the last one.
                duration = min(duration, max(self.log.scheduled))
        else:
            duration = min(end, spec.duration) if spec.duration is not None else end
        last_done = max((d for d in self.log.done if d >= 0), default=0.0)
        stopped = self._stopped_at is not None and self._stopped_at < duration
        span = self._stopped_at if stopped else duration
        summary = summarize(self.log, mode="open" if spec.open_loop else "closed", target=self._url,
                            duration_s=duration, span_s=span, elapsed_s=max(last_done, span),
                            planned=self._planned if spec.open_loop else len(self.log), stopped_early=stopped)
        return LoadResult(spec, summary, self.log)

    async def _open_loop(self, session: aiohttp.ClientSession, chunks: Iterator[Arrivals],
                         slots: asyncio.Semaphore) -> None:
        assert self._loop is not None
        loop, t0 = self._loop, self._t0
        keys = self.spec.keys
        burst = 0
        for arrivals in chunks:
            times = arrivals.times.tolist()
            key_list = arrivals.keys.tolist() if keys else [None] * len(times)
            for t, key in zip(times, key_list, strict=True):
                if self._stopping:  # stopped before the driver started, or between two awaits
                    return
                delay = t0 + t - loop.time()
                if delay > 0:
                    burst = 0
                    await asyncio.sleep(delay)
                elif burst >= _BURST:
                    burst = 0
                    await asyncio.sleep(0)
                burst += 1
                self._planned += 1  # its time has come (sent now, or as soon as a slot frees)
                await slots.acquire()
                self._spawn(self._send(session, t, key, slots))

    async def _closed_loop(self, session: aiohttp.ClientSession) -> None:
        assert self._loop is not None
        loop = self._loop
        end = None if self.spec.duration is None else self._t0 + self.spec.duration
        budget = [self.spec.max_requests]

        async def client() -> None:
            while not self._stopping and (end is None or loop.time() < end):
                if budget[0] is not None:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                await self._send(session, loop.time() - self._t0, None, None)

        clients = [self._spawn(client()) for _ in range(self.spec.clients or 1)]
        # The clients are tracked as in-flight tasks too, so abort() cancels them.
        await asyncio.gather(*clients, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send(self, session: aiohttp.ClientSession, scheduled: float, key: int | None,
                    slots: asyncio.Semaphore | None) -> None:
        assert self._loop is not None
        loop, t0 = self._loop, self._t0
        row = self.log.start(scheduled, loop.time() - t0)
        headers = self._headers if key is None else {**self._headers, KEY_HEADER: str(key)}
        try:
            async with session.request(self.spec.method, self._url, data=self._body, headers=headers) as resp:
                await resp.read()
                self.log.answered(row, loop.time() - t0, resp.status, resp.headers.get(WORKER_HEADER))
        except asyncio.CancelledError:
            self.log.failed(row, loop.time() - t0, "cancelled")
            raise
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            self.log.failed(row, loop.time() - t0, "timeout", f"no answer within {self.spec.timeout:g} s {exc}".strip())
        except aiohttp.ClientConnectorError as exc:
            self.log.failed(row, loop.time() - t0, "connect", str(exc))
        except aiohttp.ServerDisconnectedError as exc:
            self.log.failed(row, loop.time() - t0, "disconnect", str(exc) or "server disconnected")
        except aiohttp.ClientPayloadError as exc:
            self.log.failed(row, loop.time() - t0, "payload", str(exc))
        except aiohttp.ClientOSError as exc:
            self.log.failed(row, loop.time() - t0, "os", str(exc))
        except (aiohttp.ClientError, OSError) as exc:
            self.log.failed(row, loop.time() - t0, "other", f"{type(exc).__name__}: {exc}")
        finally:
            self._finished += 1
            if slots is not None:
                slots.release()


async def run_load(spec: LoadSpec, schedule: Schedule | None = None) -> LoadResult:
    """Run ``spec`` to the end and return its result (see :class:`LoadGenerator` for stopping early)."""
    return await LoadGenerator(spec, schedule).run()
