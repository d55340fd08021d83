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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tidal.config.scenario import Scenario, ServiceSpec, periods_nest
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.policy import Policy, build_policy, effective_control
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
    sync = scenario.control.sync
    scrape = scenario.control.scrape
    tick = min(sync, scrape)
    if not periods_nest(sync, scrape):
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
        self.policy = policy or build_policy(scenario.policy, scenario.replicas.min, scenario.replicas.max)
        # The upstream cadence of the policy that runs (its registry name; the scenario's block
        # when none is given) fills an unset sync period / scrape interval.
        running = self.policy.name or scenario.policy
        scenario = scenario.model_copy(update={"control": effective_control(scenario.control, running)})
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        svc = scenario.service
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
        # The run ends at the scenario's duration, not at a whole tick (the last tick may be
        # short), so policies with different ticks replay exactly the same requests.
        self.duration = float(duration)
        self.state = DataPlaneState(
            balancer=scenario.load_balancer.algorithm, slots=svc.concurrency, queue_limit=svc.queue_limit,
            timeout=svc.timeout, buffer_limit=scenario.load_balancer.buffer_limit,
            buffer_timeout=scenario.load_balancer.buffer_timeout, hash_vnodes=scenario.load_balancer.hash_replicas,
            slowdown=svc.warmup.slowdown, slo_latency=scenario.slo.latency,
            capacity=max(16, 2 * scenario.replicas.initial_count),
        )
        self.pool = ReplicaPool(self.state, svc, self.replica_rng)
        self.resources = resource_models(svc)
        self.history = MetricsHistory(retention_s=max(3600.0, 10 * scenario.control.sync))
        # Per-pod usage snapshots (scrape time, window, usage by replica uid), kept as long as the
        # metrics lag needs, so pods are seen with the same delay as the metrics.
        self._pod_snapshots: deque[tuple[float, float, _UsageSnapshot]] = deque()

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
        latency = self._record_tick(table, k, t0, t1, cand, billed, serving)
        self._scrape_acc.add(st, cand, t1 - t0, serving)
        if (k + 1) % self.per_scrape == 0:
            # A one-tick scrape window has this tick's histogram: reuse its quantiles.
            self._scrape(t1, cand, self._scrape_acc, latency if self.per_scrape == 1 else None)
            self._scrape_acc = _ScrapeAccumulator(st.hist_tick.shape[0])
        self.ticks_done = k + 1

    def result(self) -> SimulationResult:
        """The run so far (the whole run once every tick is simulated)."""
        if self.ticks_done == 0:
            raise RuntimeError("nothing simulated yet")
        table = self.table if self.ticks_done == self.n_ticks else self.table.head(self.ticks_done)
        return summarize(self.scenario, self.policy, self.seed, self.tick, table, self.state.hist_total,
                         self.state.hist_wait, self.pool, self.decisions, end=self.duration)

    # ------------------------------------------------------------------ per tick
    def _record_tick(self, table: TickTable, k: int, t0: float, t1: float, cand: np.ndarray,
                     billed: float, serving: float) -> tuple[float, float, float]:
        """Write row ``k`` of the tick table; returns the tick's latency p50, p95, p99."""
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
        return p50, p95, p99

    def _scrape(self, t: float, cand: np.ndarray, acc: _ScrapeAccumulator,
                latency: tuple[float, float, float] | None = None) -> None:
        """Record one scrape's metrics; ``latency`` passes quantiles already computed from ``acc.hist``."""
        st = self.state
        window = acc.seconds
        running = st.running(cand, t) if len(cand) else np.zeros(0, dtype=np.int64)
        in_flight = st.in_flight(cand) if len(cand) else np.zeros(0, dtype=np.int64)
        queued = float((in_flight - running).sum()) + st.buffered()
        p50, p95, p99 = latency if latency is not None else histogram.quantiles(acc.hist, (0.5, 0.95, 0.99))
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
        uids, usage = self._pod_usage(t, cand, acc)
        if len(uids):
            for resource in ("cpu", "gpu", "memory"):
                if resource in self.resources:
                    pct = 100.0 * usage[resource] / self.resources[resource].request
                    values[f"{resource}_utilization"] = float(np.mean(pct))
        self.history.record(t, values)
        self._pod_snapshots.append((t, window, _UsageSnapshot(uids, usage)))
        horizon = t - self.scenario.control.metrics_lag
        while len(self._pod_snapshots) > 1 and self._pod_snapshots[1][0] <= horizon:
            self._pod_snapshots.popleft()

    def _pod_usage(self, t: float, cand: np.ndarray,
                   acc: _ScrapeAccumulator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Mean usage of each ready pod over the scrape window, as metrics-server reports it.

        Returns the pods' uids and, per resource, their usage (arrays aligned with the uids).
        """
        window = acc.seconds
        pool = self.pool
        serving = cand[(pool.ready_at[cand] <= t) & pool.alive[cand]]
        uids = self.state.uid[serving]
        busy, insys = acc.per_uid(uids)
        busy = busy / window
        insys = insys / window
        usage = {name: m.idle + m.per_busy_slot * busy + m.per_request * insys for name, m in self.resources.items()}
        return uids, usage

    def _observe(self, t: float, lag: float) -> Observation:
        pool = self.pool
        ready, starting, _ = pool.counts(t)
        usage_time, usage_window, usage = None, 0.0, None
        for snap_time, snap_window, snap in reversed(self._pod_snapshots):
            if snap_time <= t - lag:
                usage_time, usage_window, usage = snap_time, snap_window, snap
                break
        cand = pool.candidates()
        ready_at = pool.ready_at[cand]
        draining = ~np.isinf(pool.drain_at[cand])
        pods = _PodSnapshot(
            uid=self.state.uid[cand], ready=(ready_at <= t) & ~draining, started_at=pool.created_at[cand],
            ready_at=np.where(ready_at <= t, ready_at, np.nan), in_flight=self.state.in_flight(cand).copy(),
            draining=draining, requests={name: m.request for name, m in self.resources.items()},
            usage=usage, usage_time=usage_time, usage_window=usage_window,
        )
        return Observation(time=t, replicas=self._spec, ready=ready, starting=starting, pods=pods,
                           metrics=self.history.view(t, lag))


class _UsageSnapshot:
    """Per-pod resource usage of one scrape: uids and, per resource, usage aligned with them."""

    __slots__ = ("uids", "usage", "_index")

    def __init__(self, uids: np.ndarray, usage: dict[str, np.ndarray]) -> None:
        self.uids = uids
        self.usage = usage
        self._index: dict[int, int] | None = None

    def get(self, uid: int) -> dict[str, float] | None:
        """The usage of pod ``uid`` ({resource: value}), or None if it was not scraped."""
        if self._index is None:
            self._index = {u: k for k, u in enumerate(self.uids.tolist())}
        k = self._index.get(uid)
        if k is None:
            return None
        return {name: float(values[k]) for name, values in self.usage.items()}


class _PodSnapshot(Sequence[PodSample]):
    """The pods of one observation, turned into :class:`PodSample` objects only when read.

    Most policies read aggregate metrics only, and building a ``PodSample`` per replica at every
    sync was a visible share of the simulator's control plane. The per-replica figures are copied
    when the observation is made, so reading them later (a policy that keeps observations) shows
    what was true at that time.
    """

    __slots__ = ("_columns", "_requests", "_usage", "_usage_time", "_usage_window", "_pods")

    def __init__(self, *, uid: np.ndarray, ready: np.ndarray, started_at: np.ndarray, ready_at: np.ndarray,
                 in_flight: np.ndarray, draining: np.ndarray, requests: Mapping[str, float],
                 usage: _UsageSnapshot | None, usage_time: float | None, usage_window: float) -> None:
        self._columns = (uid, ready, started_at, ready_at, in_flight, draining)
        self._requests = requests
        self._usage = usage
        self._usage_time = usage_time
        self._usage_window = usage_window
        self._pods: tuple[PodSample, ...] | None = None

    def _build(self) -> tuple[PodSample, ...]:
        if self._pods is None:
            pods = []
            for uid, ready, started_at, ready_at, in_flight, draining in zip(
                    *(column.tolist() for column in self._columns), strict=True):
                usage = self._usage.get(uid) if self._usage is not None else None
                pods.append(PodSample(
                    id=uid, ready=ready, started_at=started_at,
                    ready_at=None if math.isnan(ready_at) else ready_at, in_flight=in_flight,
                    requests=self._requests, usage=usage or {}, draining=draining,
                    usage_time=self._usage_time if usage else None,
                    usage_window=self._usage_window if usage else 0.0,
                ))
            self._pods = tuple(pods)
        return self._pods

    def __len__(self) -> int:
        return len(self._columns[0])

    def __getitem__(self, index):  # type: ignore[override]
        return self._build()[index]

    def __iter__(self) -> Iterator[PodSample]:
        return iter(self._build())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _PodSnapshot):
            return self._build() == other._build()
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self._build()))


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
        self._ticks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (uids, busy, in-system)

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
            self._ticks.append((st.uid[cand], busy, insys))

    def per_uid(self, uids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Busy and in-system seconds of each replica in ``uids`` over the window (0 if unseen)."""
        if not self._ticks or not len(uids):
            return np.zeros(len(uids)), np.zeros(len(uids))
        # Sum tick by tick in time order (the order a running total would use); ``seen`` is sorted.
        seen, inverse = np.unique(np.concatenate([u for u, _, _ in self._ticks]), return_inverse=True)
        busy = np.bincount(inverse, np.concatenate([b for _, b, _ in self._ticks]), len(seen))
        insys = np.bincount(inverse, np.concatenate([q for _, _, q in self._ticks]), len(seen))
        idx = np.minimum(np.searchsorted(seen, uids), len(seen) - 1)
        found = seen[idx] == uids
        return np.where(found, busy[idx], 0.0), np.where(found, insys[idx], 0.0)


def simulate(scenario: Scenario, policy: Policy | None = None, *, seed: int | None = None,
             progress: Callable[[float], None] | None = None) -> SimulationResult:
    """Run ``scenario`` (with its own policy block unless ``policy`` is given)."""
    return Simulation(scenario, policy, seed=seed).run(progress)
