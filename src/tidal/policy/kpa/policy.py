"""The ``kpa`` policy: Knative's decider, multiscaler status and KPA reconciler on one tick.

Each :meth:`KPAPolicy.decide` plays, in upstream order:

1. the metric collector: new per-second ``concurrency``/``rps`` samples go into the stable and
   panic bucket windows (a sample with no ready pod and no traffic is skipped, as upstream
   scrapes nothing then);
2. the decider tick (``Scale(now)``), whose valid results update the multiscaler status
   (desired scale, starting at -1, and excess burst capacity);
3. the reconciler: bounds, initial scale and the scale-to-zero gate turn the desired scale into
   a patch of the replica count; then the SKS mode (Proxy = activator in the path), the
   activator count and the PA's Active condition are updated for the next tick.

Upstream runs the decider every 2 s and the reconciler on events and requeues; here both run
once per decision. The policy registers Knative's cadence (a decision every 2 s on 1 s scrapes),
which the simulator and the live controller use unless told otherwise.
The activator probe succeeds when the SKS is in Proxy mode (the activator then fronts the pods).
"""

from __future__ import annotations

from typing import Any

from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.kpa.collector import MetricCollection, StableAndPanic, observed_stats
from tidal.policy.kpa.config import KPAConfig
from tidal.policy.kpa.decider import Autoscaler, ScaleResult
from tidal.policy.kpa.resources import BUCKET_SIZE
from tidal.policy.kpa.scaler import SCALE_UNKNOWN, PAStatus, ScaleOutcome, SKSStatus, scale
from tidal.policy.kpa.status import (
    MIN_ACTIVATORS,
    ActiveCondition,
    compute_active_condition,
    compute_num_activators,
    sks_mode,
    status_desired_scale,
)
from tidal.policy.registry import Cadence, register


def initial_excess_burst_capacity(initial_scale: int, total_value: float, target_burst_capacity: float) -> int:
    """A new decider's burst capacity before its first tick (upstream ``createScaler``)."""
    if target_burst_capacity in (-1, 0):
        return int(target_burst_capacity)
    return int(initial_scale * total_value - target_burst_capacity)  # int() truncates, as Go


class KPAPolicy(Policy):
    """Knative Pod Autoscaler: concurrency or RPS targets, stable/panic windows, scale to zero."""

    def __init__(self, config: KPAConfig) -> None:
        self.config = config
        self.spec = config.decider_spec()
        self.settings = config.scale_settings()
        self.collection = self._new_collection()
        self.decider: Autoscaler | None = None
        self._fed_until: float | None = None
        self._reset_status()

    def _new_collection(self) -> MetricCollection:
        cfg = self.config
        return MetricCollection(cfg.stable_window, cfg.panic_window, cfg.metric_aggregation_algorithm,
                                scrape_target=cfg.target_burst_capacity != -1)

    def _reset_status(self) -> None:
        self.desired_scale = SCALE_UNKNOWN
        self.excess_burst_capacity = initial_excess_burst_capacity(
            self.spec.initial_scale, self.spec.total_value, self.spec.target_burst_capacity)
        self.active = ActiveCondition(PAStatus("Unknown", 0.0))
        self.sks: SKSStatus | None = None
        self.status_desired_scale: int | None = None
        self.num_activators = MIN_ACTIVATORS
        self.last_result: ScaleResult | None = None
        self.last_observed: StableAndPanic | None = None
        # Run statistics for reports and tests.
        self.panic_entries = 0
        self.panic_ticks = 0
        self.first_panic_at: float | None = None

    # ------------------------------------------------------------------ properties
    @property
    def panicking(self) -> bool:
        return self.decider is not None and self.decider.panicking

    def describe(self) -> str:
        target = self.spec.target_value
        return f"kpa({self.config.metric} target={target:g}/pod)"

    # ------------------------------------------------------------------ the tick
    def decide(self, obs: Observation) -> Decision:
        now = obs.time
        self._feed(obs)
        if self.decider is None:
            # Created with the PA: its conditions start "Unknown" (activating) now.
            self.decider = Autoscaler(self.spec, obs.ready, now)
            self.active = ActiveCondition(PAStatus("Unknown", now))
        result = self._tick(now, obs.ready)
        outcome = self._reconcile(now, obs)
        replicas = outcome.patch if outcome.patch is not None else obs.replicas
        return Decision(replicas, reason=self._reason(result, outcome, obs.ready))

    def _feed(self, obs: Observation) -> None:
        previous: float | None = None
        for t, concurrency, rps in observed_stats(obs.metrics, self._fed_until, self.config.stable_window):
            # Knative scrapes every second. A coarser scrape (e.g. 15 s) reports the mean over its
            # interval, so it stands for one sample per second of that interval: fill them all,
            # or the windows would average in empty seconds and read far too low.
            gap = self._sample_gap(obs, t, previous)
            for k in range(max(1, min(int(round(gap / BUCKET_SIZE)), int(self.config.stable_window)))):
                self.collection.record("concurrency", t - k * BUCKET_SIZE, concurrency)
                self.collection.record("rps", t - k * BUCKET_SIZE, rps)
            previous = t
        self._fed_until = obs.metrics.visible_until if self._fed_until is None else max(
            self._fed_until, obs.metrics.visible_until)

    @staticmethod
    def _sample_gap(obs: Observation, t: float, previous: float | None) -> float:
        """Seconds one scraped sample covers: the spacing of the metric series around ``t``."""
        if previous is not None:
            return t - previous
        earlier = obs.metrics.time_before("concurrency", t)
        return float(t - earlier) if earlier is not None else BUCKET_SIZE

    def _tick(self, now: float, ready: int) -> ScaleResult:
        assert self.decider is not None
        was_panicking = self.decider.panicking
        observed = self.collection.stable_and_panic(self.spec.scaling_metric, now)
        self.last_observed = observed
        if observed is None:
            result = self.decider.scale(now, ready, None, None)
        else:
            result = self.decider.scale(now, ready, observed.stable, observed.panic)
        if result.valid:
            # The multiscaler keeps the last valid recommendation.
            self.desired_scale = result.desired
            self.excess_burst_capacity = result.excess_burst_capacity
        if self.decider.panicking:
            self.panic_ticks += 1
            if not was_panicking:
                self.panic_entries += 1
                if self.first_panic_at is None:
                    self.first_panic_at = now
        self.last_result = result
        return result

    def _reconcile(self, now: float, obs: Observation) -> ScaleOutcome:
        sks = self.sks
        outcome = scale(
            self.desired_scale, now=now, settings=self.settings, pa=self.active.status, sks=sks,
            current_replicas=obs.replicas,
            # The activator answers the probe once the SKS routes through it.
            activator_in_path=lambda: sks is not None and sks.mode == "Proxy",
        )
        want = outcome.scale
        mode = sks_mode(want, self.excess_burst_capacity, self.active.status.active == "False")
        if sks is None or sks.mode != mode:
            self.sks = SKSStatus(mode, now if mode == "Proxy" else None)
        self.num_activators = compute_num_activators(
            obs.ready, self.spec.total_value, self.spec.target_burst_capacity, self.spec.activator_capacity)
        self.status_desired_scale = status_desired_scale(self.status_desired_scale, want)
        min_scale = self.settings.min_scale if self.active.status.reachable else 0
        self.active = compute_active_condition(self.active, want=want, ready=obs.ready, min_scale=min_scale,
                                               initial_scale=self.settings.initial_scale, now=now)
        return outcome

    def _reason(self, result: ScaleResult, outcome: ScaleOutcome, ready: int) -> str:
        metric = self.spec.scaling_metric
        if result.valid and self.last_observed is not None:
            mode = "panic" if result.panicking else "stable"
            s, p = self.last_observed.stable, self.last_observed.panic
            head = (f"{mode}: {metric} stable={s:.4g} panic={p:.4g} target={self.spec.target_value:.4g}/pod, "
                    f"desired {result.desired} (ready {ready})")
        else:
            head = f"{'panic' if self.panicking else 'stable'}: no data, holding {self.desired_scale}"
        parts = [head]
        if outcome.note:
            parts.append(outcome.note)
        if self.sks is not None:
            parts.append(f"sks={self.sks.mode} ebc={self.excess_burst_capacity} activators={self.num_activators}")
        return "; ".join(parts)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        pa = self.active.status
        return {
            "fed_until": self._fed_until,
            "collection": self.collection.state_dict(),
            "decider": None if self.decider is None else self.decider.state_dict(),
            "desired_scale": self.desired_scale,
            "excess_burst_capacity": self.excess_burst_capacity,
            "pa": {"active": pa.active, "active_since": pa.active_since,
                   "scale_target_initialized": pa.scale_target_initialized,
                   "reachability": pa.reachability, "reason": self.active.reason},
            "sks": None if self.sks is None else {"mode": self.sks.mode, "proxy_since": self.sks.proxy_since},
            "status_desired_scale": self.status_desired_scale,
            "num_activators": self.num_activators,
            "stats": {"panic_entries": self.panic_entries, "panic_ticks": self.panic_ticks,
                      "first_panic_at": self.first_panic_at},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self._fed_until = state["fed_until"]
        self.collection = self._new_collection()
        self.collection.load_state_dict(state["collection"])
        if self._fed_until is not None:
            # A changed window (upstream: a new annotation) resizes the saved buckets.
            self.collection.resize(self.config.stable_window, self.config.panic_window, self._fed_until)
        if state["decider"] is None:
            self.decider = None
        else:
            self.decider = Autoscaler(self.spec, 0, 0.0)
            self.decider.load_state_dict(state["decider"])
        self.desired_scale = int(state["desired_scale"])
        self.excess_burst_capacity = int(state["excess_burst_capacity"])
        pa = state["pa"]
        self.active = ActiveCondition(
            PAStatus(pa["active"], float(pa["active_since"]), bool(pa["scale_target_initialized"]),
                     pa["reachability"]), pa.get("reason", ""))
        sks = state["sks"]
        self.sks = None if sks is None else SKSStatus(sks["mode"], sks["proxy_since"])
        self.status_desired_scale = state["status_desired_scale"]
        self.num_activators = int(state["num_activators"])
        stats = state.get("stats", {})
        self.panic_entries = int(stats.get("panic_entries", 0))
        self.panic_ticks = int(stats.get("panic_ticks", 0))
        self.first_panic_at = stats.get("first_panic_at")


register("kpa", KPAConfig,
         summary="Knative Pod Autoscaler: stable/panic windows, burst capacity, scale to zero",
         cadence=Cadence(2.0, 1.0, "autoscaler tick 2 s (tickInterval), metric scrape every 1 s"))(KPAPolicy)

__all__ = ["KPAPolicy", "initial_excess_burst_capacity"]
