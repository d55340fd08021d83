"""The simulator's control plane: step the policy, actuate, scrape, and drive the data plane.

Each tick (the shorter of the sync period and the scrape interval):

1. at a sync point the policy sees an :class:`Observation` (metrics delayed by ``metrics_lag``)
   and its decision is scheduled for ``actuation_delay`` later;
2. actuations due inside the tick change the replica pool (the data plane handles a mid-tick
   change exactly: the tick is split at that instant);
3. the compiled data plane serves the tick's arrivals;
4. drained and crashed replicas stop, metrics are scraped, the per-tick row is written.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tidal.config.scenario import Scenario, ServiceSpec
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.policy import Policy, build_policy
from tidal.sim import dataplane as dp
from tidal.sim import histogram
from tidal.sim.distributions import sample
from tidal.sim.replicas import ReplicaPool
from tidal.sim.results import SimulationResult, TickTable, summarize
from tidal.sim.state import DataPlaneState
from tidal.workload import Workload, build_workload

log = logging.getLogger(__name__)

#: Arrivals are generated in chunks of about this many simulated seconds (a multiple of the
#: tick), independent of the policy so every policy replays identical requests.
CHUNK_SECONDS = 60.0


@dataclass(frozen=True)
class ResourceModel:
    request: float
    idle: float
    per_busy_slot: float
    per_request: float


def resource_models(service: ServiceSpec) -> dict[str, ResourceModel]:
    """The scenario's resources; CPU defaults to one core fully used when all slots are busy."""
    models = {
        name: ResourceModel(spec.request, spec.idle, spec.per_busy_slot, spec.per_request)
        for name, spec in service.resources.items()
    }
    models.setdefault("cpu", ResourceModel(1.0, 0.0, 1.0 / service.concurrency, 0.0))
    return models


def _timing(scenario: Scenario) -> tuple[float, int, int]:
    """(tick, ticks per sync, ticks per scrape) with the longer period a multiple of the shorter."""
    sync = scenario.control.sync_period
    scrape = scenario.control.scrape
    tick = min(sync, scrape)
    ratio = max(sync, scrape) / tick
    if abs(ratio - round(ratio)) > 1e-9:
        raise TidalInputError(
            "control.scrape_interval",
            f"must divide or be a multiple of the sync period ({sync:g}s), got {scrape:g}s",
        )
    per_sync = round(sync / tick)
    per_scrape = round(scrape / tick)
    return tick, per_sync, per_scrape


class Simulation:
    """One run of a scenario with one policy. ``run()`` returns a :class:`SimulationResult`."""

    def __init__(self, scenario: Scenario, policy: Policy | None = None, *, seed: int | None = None,
                 workload: Workload | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        svc = scenario.service
        self.policy = policy or build_policy(scenario.policy, scenario.replicas.min, scenario.replicas.max)
        streams = np.random.SeedSequence(self.seed).spawn(4)
        self.workload = workload or build_workload(scenario.workload, int(streams[0].generate_state(1)[0]))
        self.service_rng = np.random.default_rng(streams[1])
        self.replica_rng = np.random.default_rng(streams[2])
        self.routing_seed = int(streams[3].generate_state(1)[0] % (2**31))
        duration = scenario.duration or self.workload.duration
        if duration is None:
            raise TidalInputError("duration", "required for a synthetic workload (e.g. duration: 1h)")
        self.tick, self.per_sync, self.per_scrape = _timing(scenario)
        self.n_ticks = max(1, math.ceil(duration / self.tick - 1e-9))
        self.duration = self.n_ticks * self.tick
        self.state = DataPlaneState(
            balancer=scenario.load_balancer.algorithm, slots=svc.concurrency, queue_limit=svc.queue_limit,
            timeout=svc.timeout, buffer_limit=scenario.load_balancer.buffer_limit,
            buffer_timeout=scenario.load_balancer.buffer_timeout, hash_vnodes=scenario.load_balancer.hash_replicas,
            slowdown=svc.warmup.slowdown, slo_latency=scenario.slo.latency,
            capacity=max(16, 2 * scenario.replicas.initial_count),
        )
        self.pool = ReplicaPool(self.state, svc, self.replica_rng)
        self.resources = resource_models(svc)
        self.history = MetricsHistory(retention_s=max(3600.0, 10 * scenario.control.sync_period))
        # Per-pod usage snapshots (scrape time, window, {replica uid: usage}), kept as long as the
        # metrics lag needs, so pods are seen with the same delay as the metrics.
        self._pod_snapshots: deque[tuple[float, float, dict[int, dict[str, float]]]] = deque()

    # ------------------------------------------------------------------ arrivals
    def requests(self):
        """Yield the run's requests chunk by chunk: ``(start, end, times, service_times, keys)``.

        The stream depends only on the scenario and seed (not on the policy), so every policy
        replays identical requests; benchmarks use it to feed a reference model the same input.
        """
        chunk = self.tick * max(1, round(CHUNK_SECONDS / self.tick))
        svc = self.scenario.service
        t = 0.0
        while t < self.duration:
            end = min(t + chunk, self.duration)
            arrivals = self.workload.arrivals(t, end)
            service = sample(svc.service_time, self.service_rng, len(arrivals))
            if svc.size_coefficient:
                service += svc.size_coefficient * arrivals.sizes
            yield t, end, arrivals.times, service, arrivals.keys
            t = end

    # ------------------------------------------------------------------ run
    def run(self, progress: Callable[[float], None] | None = None) -> SimulationResult:
        """Simulate the whole scenario. ``progress(fraction)`` is called every few ticks."""
        self.start()
        lag = self.scenario.control.metrics_lag
        report_every = max(1, self.n_ticks // 200)
        for k in range(self.n_ticks):
            decided = None
            if k % self.per_sync == 0:
                decided = self.policy.decide(self._observe(k * self.tick, lag)).replicas
            self.advance(k, decided)
            if progress is not None and (k % report_every == 0 or k == self.n_ticks - 1):
                progress((k + 1) / self.n_ticks)
        return self.result()

    def start(self) -> None:
        """Set up a run: initial replicas (ready), empty tables, the request stream."""
        sc = self.scenario
        self.state.sched[dp.S_RNG] = dp.seed_state(self.routing_seed)
        self.pool.create(0.0, sc.replicas.initial_count, cold=False)
        self.pool.spec = sc.replicas.initial_count
        self._spec = self.pool.spec
        self.table = TickTable(self.n_ticks)
        self.ticks_done = 0
        self.decisions = 0
        self._pending: list[tuple[float, int]] = []  # (actuation time, desired)
        self._scrape_acc = _ScrapeAccumulator(self.state.hist_tick.shape[0])
        self._chunks = self.requests()
        self._chunk = next(self._chunks)

    def advance(self, k: int, decided: int | None) -> None:
        """Simulate tick ``k``; ``decided`` is the replica count decided at its start, if any."""
        pool, st, table = self.pool, self.state, self.table
        t0 = k * self.tick
        t1 = min(t0 + self.tick, self.duration)
        if decided is not None:
            self.decisions += 1
            table.desired[k] = decided
            # Like a Deployment's spec.replicas, the decided count is the spec at once; the pool
            # follows after the actuation delay.
            self._spec = decided
            delay = self.scenario.control.actuation_delay
            if delay <= 0:
                pool.scale_to(t0, decided)
            else:
                self._pending.append((t0 + delay, decided))
        else:
            table.desired[k] = table.desired[k - 1] if k else pool.spec
        while self._pending and self._pending[0][0] < t1:
            when, desired = self._pending.pop(0)
            pool.scale_to(when, desired)
        # Serve this tick's arrivals (slicing the current chunk).
        while t0 >= self._chunk[1]:
            self._chunk = next(self._chunks)
        _, _, times, service, keys = self._chunk
        lo = int(np.searchsorted(times, t0, side="left"))
        hi = int(np.searchsorted(times, t1, side="left"))
        cand = pool.candidates()
        st.serve(t0, t1, cand, times[lo:hi], service[lo:hi], keys[lo:hi])
        billed, serving = pool.settle(t0, t1, cand)
        self._record_tick(table, k, t0, t1, cand, billed, serving)
        self._scrape_acc.add(st, cand, t1 - t0, serving)
        if (k + 1) % self.per_scrape == 0:
            self._scrape(t1, cand, self._scrape_acc)
            self._scrape_acc = _ScrapeAccumulator(st.hist_tick.shape[0])
        self.ticks_done = k + 1

    def result(self) -> SimulationResult:
        """The run so far (the whole run once every tick is simulated)."""
        if self.ticks_done == 0:
            raise RuntimeError("nothing simulated yet")
        table = self.table if self.ticks_done == self.n_ticks else self.table.head(self.ticks_done)
        return summarize(self.scenario, self.policy, self.seed, self.tick, table, self.state.hist_total,
                         self.state.hist_wait, self.pool, self.decisions)

    # ------------------------------------------------------------------ per tick
    def _record_tick(self, table: TickTable, k: int, t0: float, t1: float, cand: np.ndarray,
                     billed: float, serving: float) -> None:
        st = self.state
        c = st.counters
        ready, starting, draining = self.pool.counts(t1)
        table.time[k] = t0
        table.spec[k] = self.pool.spec
        table.ready[k] = ready
        table.starting[k] = starting
        table.draining[k] = draining
        table.arrivals[k] = c[dp.C_ARRIVALS]
        table.completions[k] = c[dp.C_COMPLETED]
        table.drops[k] = c[dp.C_QUEUE_FULL] + c[dp.C_TIMEOUT] + c[dp.C_BUFFER_FULL] + c[dp.C_CRASH]
        table.drops_by_reason[k] = c[[dp.C_QUEUE_FULL, dp.C_TIMEOUT, dp.C_BUFFER_FULL, dp.C_CRASH]]
        table.slo_ok[k] = c[dp.C_SLO_OK]
        table.in_flight[k] = int(st.in_flight(cand).sum()) + st.buffered() if len(cand) else st.buffered()
        table.busy_seconds[k] = float(st.busy[cand].sum()) if len(cand) else 0.0
        table.serving_seconds[k] = serving
        table.utilization[k] = table.busy_seconds[k] / (serving * st.slots) if serving > 0 else math.nan
        table.replica_seconds[k] = billed
        p50, p95, p99 = histogram.quantiles(st.hist_tick, (0.5, 0.95, 0.99))
        table.latency_p50[k] = p50
        table.latency_p95[k] = p95
        table.latency_p99[k] = p99

    def _scrape(self, t: float, cand: np.ndarray, acc: _ScrapeAccumulator) -> None:
        st = self.state
        window = acc.seconds
        running = st.running(cand, t) if len(cand) else np.zeros(0, dtype=np.int64)
        in_flight = st.in_flight(cand) if len(cand) else np.zeros(0, dtype=np.int64)
        queued = float((in_flight - running).sum()) + st.buffered()
        p50, p95, p99 = histogram.quantiles(acc.hist, (0.5, 0.95, 0.99))
        ready, _, _ = self.pool.counts(t)
        values = {
            "rps": acc.arrivals / window,
            "concurrency": acc.insys / window + st.buffered(),
            "utilization": acc.busy / (acc.serving * st.slots) if acc.serving > 0 else 0.0,
            "queue_length": queued,
            "drops": acc.drops / window,
            "ready_replicas": float(ready),
        }
        if not math.isnan(p50):
            values.update(latency_p50=p50, latency_p95=p95, latency_p99=p99)
        pods = self._pod_usage(t, cand, acc)
        for resource in ("cpu", "gpu", "memory"):
            if resource in self.resources and pods:
                pct = [100.0 * usage[resource] / self.resources[resource].request for _, usage in pods]
                values[f"{resource}_utilization"] = float(np.mean(pct))
        self.history.record(t, values)
        self._pod_snapshots.append((t, window, {int(self.state.uid[r]): usage for r, usage in pods}))
        horizon = t - self.scenario.control.metrics_lag
        while len(self._pod_snapshots) > 1 and self._pod_snapshots[1][0] <= horizon:
            self._pod_snapshots.popleft()

    def _pod_usage(self, t: float, cand: np.ndarray, acc: _ScrapeAccumulator) -> list[tuple[int, dict[str, float]]]:
        """Mean usage per ready pod over the scrape window, as metrics-server reports it."""
        out = []
        window = acc.seconds
        for r in cand:
            if self.pool.ready_at[r] > t or not self.pool.alive[r]:
                continue
            uid = int(self.state.uid[r])
            busy = acc.busy_by_uid.get(uid, 0.0) / window
            insys = acc.insys_by_uid.get(uid, 0.0) / window
            usage = {
                name: m.idle + m.per_busy_slot * busy + m.per_request * insys
                for name, m in self.resources.items()
            }
            out.append((int(r), usage))
        return out

    def _observe(self, t: float, lag: float) -> Observation:
        pool = self.pool
        ready, starting, _ = pool.counts(t)
        usage_time, usage_window, usage_by_uid = None, 0.0, {}
        for snap_time, snap_window, snap in reversed(self._pod_snapshots):
            if snap_time <= t - lag:
                usage_time, usage_window, usage_by_uid = snap_time, snap_window, snap
                break
        in_flight = {}
        cand = pool.candidates()
        if len(cand):
            in_flight = dict(zip(cand.tolist(), self.state.in_flight(cand).tolist(), strict=True))
        pods = []
        requests = {name: m.request for name, m in self.resources.items()}
        for r in cand.tolist():
            is_ready = pool.ready_at[r] <= t and math.isinf(pool.drain_at[r])
            uid = int(self.state.uid[r])
            usage = usage_by_uid.get(uid)
            pods.append(
                PodSample(
                    id=uid,
                    ready=is_ready,
                    started_at=float(pool.created_at[r]),
                    ready_at=float(pool.ready_at[r]) if pool.ready_at[r] <= t else None,
                    in_flight=int(in_flight.get(r, 0)),
                    requests=requests,
                    usage=usage or {},
                    draining=not math.isinf(pool.drain_at[r]),
                    usage_time=usage_time if usage else None,
                    usage_window=usage_window if usage else 0.0,
                )
            )
        return Observation(time=t, replicas=self._spec, ready=ready, starting=starting, pods=pods,
                           metrics=self.history.view(t, lag))


class _ScrapeAccumulator:
    """Sums of one scrape window's per-tick figures."""

    def __init__(self, n_buckets: int) -> None:
        self.seconds = 0.0
        self.arrivals = 0
        self.drops = 0
        self.busy = 0.0
        self.insys = 0.0
        self.serving = 0.0
        self.hist = np.zeros(n_buckets, dtype=np.int64)
        self.busy_by_uid: dict[int, float] = {}
        self.insys_by_uid: dict[int, float] = {}

    def add(self, st: DataPlaneState, cand: np.ndarray, seconds: float, serving: float) -> None:
        c = st.counters
        self.seconds += seconds
        self.arrivals += int(c[dp.C_ARRIVALS])
        self.drops += int(c[dp.C_QUEUE_FULL] + c[dp.C_TIMEOUT] + c[dp.C_BUFFER_FULL] + c[dp.C_CRASH])
        self.serving += serving
        self.hist += st.hist_tick
        if len(cand):
            busy = st.busy[cand]
            insys = st.insys[cand]
            self.busy += float(busy.sum())
            self.insys += float(insys.sum())
            for uid, b, q in zip(st.uid[cand].tolist(), busy.tolist(), insys.tolist(), strict=True):
                self.busy_by_uid[uid] = self.busy_by_uid.get(uid, 0.0) + b
                self.insys_by_uid[uid] = self.insys_by_uid.get(uid, 0.0) + q


def simulate(scenario: Scenario, policy: Policy | None = None, *, seed: int | None = None,
             progress: Callable[[float], None] | None = None) -> SimulationResult:
    """Run ``scenario`` (with its own policy block unless ``policy`` is given)."""
    return Simulation(scenario, policy, seed=seed).run(progress)
