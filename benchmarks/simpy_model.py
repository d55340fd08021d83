"""SimPy reference model of the system tidal's compiled simulator models.

A deliberately plain, idiomatic SimPy (https://simpy.readthedocs.io) model used side by side
with tidal in the simulator benchmark: fed the same arrival and service times (common random
numbers), it checks that tidal's latencies agree statistically and gives a throughput baseline.

The system: a load balancer in front of ``replicas`` identical replicas. Each replica serves
up to ``concurrency`` requests at once (a ``simpy.Resource`` of that capacity) and queues the
rest FCFS without limit. A request's latency is completion time minus arrival time. With
``autoscale`` a proportional (HPA-style) controller resizes the pool every sync period.

Run as a script for the throughput figure::

    .venv/bin/python benchmarks/simpy_model.py --replicas 100 --concurrency 4 --rho 0.7 --requests 200000
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import time
from collections.abc import Callable, Generator
from operator import attrgetter
from typing import Any

import numpy as np
import simpy

BALANCERS = ("random", "round_robin", "least_connections", "power_of_two")
AUTOSCALE_DEFAULTS: dict[str, float] = {
    "sync_period": 15.0,
    "target": 0.6,
    "cold_start": 60.0,
    "min": 1,
    "max": 200,
    "tolerance": 0.0,  # no change while |util/target - 1| <= tolerance (HPA's is 0.1)
}


class _Replica:
    """One replica: its slots, its in-flight count, and a running integral of busy slots."""

    __slots__ = ("index", "slots", "in_flight", "busy", "busy_area", "last_change", "area_mark", "ready_at", "state")

    def __init__(self, env: simpy.Environment, index: int, concurrency: int, state: str) -> None:
        self.index = index
        self.slots = simpy.Resource(env, capacity=concurrency)
        self.in_flight = 0  # queued + running; balancers read it, so keep it O(1)
        self.busy = 0  # slots serving right now
        self.busy_area = 0.0  # ∫ busy dt up to last_change
        self.last_change = env.now
        self.area_mark = 0.0  # busy_area at the previous autoscaler sync
        self.ready_at = env.now
        self.state = state  # "starting" | "ready" | "draining" | "cancelled"

    def busy_change(self, now: float, delta: int) -> None:
        self.busy_area += self.busy * (now - self.last_change)
        self.last_change = now
        self.busy += delta

    def busy_area_at(self, now: float) -> float:
        return self.busy_area + self.busy * (now - self.last_change)


def _make_balancer(name: str, routable: list[_Replica], rng: random.Random) -> Callable[[], _Replica]:
    """A zero-argument chooser over ``routable`` (kept sorted by index, mutated in place)."""
    if name == "random":
        return lambda: routable[rng.randrange(len(routable))]

    if name == "round_robin":
        counter = [0]

        def round_robin() -> _Replica:
            # Modulo the live size so the rotation survives the pool growing and shrinking.
            replica = routable[counter[0] % len(routable)]
            counter[0] += 1
            return replica

        return round_robin

    if name == "least_connections":
        in_flight = attrgetter("in_flight")
        # min() keeps the first minimum, and routable is in index order: ties go to the lowest index.
        return lambda: min(routable, key=in_flight)

    if name == "power_of_two":

        def power_of_two() -> _Replica:
            n = len(routable)
            if n == 1:
                return routable[0]
            # Two distinct uniform picks without rng.sample's overhead: draw the second from the
            # n - 1 others by skipping over the first.
            i = rng.randrange(n)
            j = rng.randrange(n - 1)
            if j >= i:
                j += 1
            first, second = routable[i], routable[j]
            return second if second.in_flight < first.in_flight else first  # tie -> first pick

        return power_of_two

    raise ValueError(f"balancer must be one of {BALANCERS}, got {name!r}")


def _autoscale_config(autoscale: dict[str, Any], replicas: int) -> dict[str, float]:
    unknown = set(autoscale) - set(AUTOSCALE_DEFAULTS)
    if unknown:
        raise ValueError(f"autoscale: unknown keys {sorted(unknown)}; known: {sorted(AUTOSCALE_DEFAULTS)}")
    cfg = {**AUTOSCALE_DEFAULTS, **autoscale}
    if cfg["sync_period"] <= 0 or cfg["target"] <= 0 or cfg["cold_start"] < 0 or cfg["tolerance"] < 0:
        raise ValueError(f"autoscale: sync_period and target must be > 0, cold_start and tolerance >= 0: {cfg}")
    if not 1 <= cfg["min"] <= replicas <= cfg["max"]:
        raise ValueError(f"autoscale: need 1 <= min <= replicas <= max, got min={cfg['min']}, "
                         f"replicas={replicas}, max={cfg['max']}")
    return cfg


def run_simpy(
    arrival_times: np.ndarray,
    service_times: np.ndarray,
    replicas: int,
    concurrency: int,
    balancer: str = "power_of_two",
    seed: int = 0,
    autoscale: dict | None = None,
) -> dict:
    """Simulate the requests through the balanced replica pool and return their latencies.

    ``arrival_times`` (non-decreasing, seconds) and ``service_times`` (seconds) are per request.
    Balancers: ``random``; ``round_robin``; ``least_connections`` (fewest in-flight = queued +
    running, ties to the lowest index); ``power_of_two`` (two distinct uniform picks from
    ``random.Random(seed)``, the one with fewer in-flight wins, ties to the first pick).

    ``autoscale`` (keys as :data:`AUTOSCALE_DEFAULTS`, missing ones defaulted): every
    ``sync_period`` the controller measures busy-slot utilization over the last period across
    the ready replicas, sets desired = ceil(ready * util / target) clamped to [min, max], and
    compares it with the provisioned count (ready + starting). It starts new replicas, routable
    after ``cold_start``, or removes the highest-index ones: still-starting replicas first
    (they never become routable), then ready ones, which leave routing at once and finish the
    work already queued on them.

    Returns ``latencies`` (np.ndarray, completion order), ``completed``, ``replica_timeline``
    (``(time, ready_replicas)`` after each sync; empty without autoscaling), ``end_time`` (the
    simulated time of the last completion) and ``wall_s`` (wall-clock seconds of the run).
    """
    wall_start = time.perf_counter()
    arrivals = np.asarray(arrival_times, dtype=np.float64)
    services = np.asarray(service_times, dtype=np.float64)
    if arrivals.ndim != 1 or arrivals.shape != services.shape:
        raise ValueError("arrival_times and service_times must be 1-D arrays of the same length")
    if arrivals.size and (np.any(np.diff(arrivals) < 0) or arrivals[0] < 0 or not np.all(np.isfinite(arrivals))):
        raise ValueError("arrival_times must be finite, >= 0 and non-decreasing")
    if np.any(services < 0) or not np.all(np.isfinite(services)):
        raise ValueError("service_times must be finite and >= 0")
    if replicas < 1 or concurrency < 1:
        raise ValueError(f"replicas and concurrency must be >= 1, got {replicas} and {concurrency}")
    cfg = _autoscale_config(autoscale, replicas) if autoscale is not None else None

    env = simpy.Environment()
    rng = random.Random(seed)
    pool = [_Replica(env, i, concurrency, "ready") for i in range(replicas)]  # every replica ever made
    routable = list(pool)  # ready replicas in index order: what the balancer chooses from
    starting: list[_Replica] = []  # provisioned but still in cold start, in index order
    pick = _make_balancer(balancer, routable, rng)
    n = int(arrivals.size)
    latencies: list[float] = []
    timeline: list[tuple[float, int]] = []
    all_done = env.event()

    def request(replica: _Replica, arrival: float, service: float) -> Generator[simpy.Event, Any, None]:
        with replica.slots.request() as slot:  # FCFS queue for a free slot
            yield slot
            replica.busy_change(env.now, +1)
            yield env.timeout(service)
            replica.busy_change(env.now, -1)
        replica.in_flight -= 1
        latencies.append(env.now - arrival)
        if len(latencies) == n:
            all_done.succeed()

    def source() -> Generator[simpy.Event, Any, None]:
        # One process walks the trace; requests sharing a timestamp are routed without a yield.
        for arrival, service in zip(arrivals.tolist(), services.tolist(), strict=True):
            if arrival > env.now:
                yield env.timeout(arrival - env.now)
            replica = pick()
            replica.in_flight += 1
            env.process(request(replica, arrival, service))

    def cold_start(replica: _Replica, delay: float) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(delay)
        if replica.state != "starting":  # cancelled by a scale-in while it was starting
            return
        replica.state = "ready"
        replica.ready_at = env.now
        replica.area_mark = replica.busy_area_at(env.now)
        starting.remove(replica)
        bisect.insort(routable, replica, key=attrgetter("index"))

    def autoscaler(cfg: dict[str, float]) -> Generator[simpy.Event, Any, None]:
        period, target = cfg["sync_period"], cfg["target"]
        lo, hi = int(cfg["min"]), int(cfg["max"])
        last_sync = 0.0
        while True:
            yield env.timeout(period)
            now = env.now
            busy = capacity = 0.0
            for r in routable:
                busy += r.busy_area_at(now) - r.area_mark
                # Replicas that became ready mid-period count only for the time they were ready.
                capacity += concurrency * (now - max(last_sync, r.ready_at))
            ready, provisioned = len(routable), len(routable) + len(starting)
            if capacity <= 0.0:
                desired = provisioned  # nothing measured: hold
            else:
                ratio = (busy / capacity) / target
                in_band = abs(ratio - 1.0) <= cfg["tolerance"]
                # The -1e-9 keeps ceil() from adding a replica for a ratio that is 1 up to rounding.
                desired = provisioned if in_band else math.ceil(ready * ratio - 1e-9)
            desired = min(max(desired, lo), hi)
            for _ in range(desired - provisioned):
                replica = _Replica(env, len(pool), concurrency, "starting")
                pool.append(replica)
                starting.append(replica)
                env.process(cold_start(replica, cfg["cold_start"]))
            for _ in range(provisioned - desired):
                victim = starting.pop() if starting else routable.pop()  # highest index first
                victim.state = "cancelled" if victim.state == "starting" else "draining"
            timeline.append((now, len(routable)))
            for r in routable:
                r.area_mark = r.busy_area_at(now)
            last_sync = now

    if n:
        env.process(source())
        if cfg is not None:
            env.process(autoscaler(cfg))
        env.run(until=all_done)

    return {
        "latencies": np.asarray(latencies, dtype=np.float64),
        "completed": len(latencies),
        "replica_timeline": timeline,
        "end_time": float(env.now),
        "wall_s": time.perf_counter() - wall_start,
    }


def poisson_workload(
    n: int, rate: float, mean_service: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Poisson arrivals at ``rate``/s with exponential service times of the given mean."""
    gen = np.random.default_rng(seed)
    arrivals = np.cumsum(gen.exponential(1.0 / rate, n))
    services = gen.exponential(mean_service, n)
    return arrivals, services


def main() -> None:
    parser = argparse.ArgumentParser(description="Throughput of the SimPy reference model.")
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rho", type=float, default=0.7, help="utilization of the slots")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--balancer", default="power_of_two", choices=BALANCERS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rate = args.rho * args.replicas * args.concurrency  # mean service 1 s
    arrivals, services = poisson_workload(args.requests, rate, 1.0, args.seed)
    out = run_simpy(arrivals, services, args.replicas, args.concurrency, args.balancer, args.seed)
    lat = out["latencies"]
    print(
        f"simpy: {out['completed']} requests in {out['wall_s']:.2f} s wall "
        f"= {out['completed'] / out['wall_s']:,.0f} requests/s; "
        f"latency mean {lat.mean():.4f} s, p99 {np.quantile(lat, 0.99):.4f} s"
    )


if __name__ == "__main__":
    main()
