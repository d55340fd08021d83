"""Ray Serve's default autoscaling policy (``ray.serve.autoscaling_policy``) on tidal's contract.

Ray Serve sizes a deployment so that each replica has ``target_ongoing_requests`` requests
running or queued. Every control-loop tick it:

1. takes ``total_num_requests``: ongoing requests (running at replicas plus queued at handles)
   aggregated over ``look_back_period_s``;
2. on a cold start (no running replica, requests waiting) asks for
   ``max(ceil(upscaling_factor), target)`` at once, bypassing the delays;
3. otherwise computes ``desired = total / target_ongoing_requests`` and moves only a fraction
   of the way there (``upscaling_factor`` / ``downscaling_factor``, which default to the older
   ``smoothing_factor``), never getting stuck one replica above the goal;
4. applies the delays: a scale-up happens after ``upscale_delay_s`` of consecutive up-votes,
   a scale-down after ``downscale_delay_s`` of down-votes (``downscale_to_zero_delay_s`` for
   the last 1 -> 0 step; only that step may reach zero);
5. clips to ``[min_replicas, max_replicas]``.

tidal maps Ray's quantities as follows: running replicas are ``obs.ready``; the current target
is ``obs.replicas``; ongoing requests are the ``concurrency`` metric (mean requests in the
replicas plus those buffered at the balancer, per scrape), aggregated over the look-back window
with ``aggregation_function``. The delays use the newer, time-based rule of
``_apply_delay_logic`` on ``obs.time``: a decision fires once ``now - first_vote >= delay``, so
with a sync period ``P`` a delay that is a multiple of ``P`` fires on vote ``delay / P + 1``
(Ray's older counter rule at its 0.1 s loop gives the same count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from tidal.config.fields import Duration
from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.registry import Cadence, PolicyConfig, register

#: ``DEFAULT_TARGET_ONGOING_REQUESTS`` in ``ray.serve._private.constants``.
DEFAULT_TARGET_ONGOING_REQUESTS = 2.0
#: Tolerance of the delay's elapsed-time comparison (``_DELAY_ELAPSED_EPS_S``).
DELAY_EPS_S = 1e-6


class RayServeConfig(PolicyConfig):
    """Ray Serve ``AutoscalingConfig`` (names and defaults as upstream)."""

    min_replicas: int = Field(1, ge=0, description="0 allows scale to zero")
    max_replicas: int = Field(1, ge=1, description="upstream default is 1: set it")
    initial_replicas: int | None = Field(None, ge=0, description="target when the deployment starts")
    target_ongoing_requests: float = Field(DEFAULT_TARGET_ONGOING_REQUESTS, gt=0,
                                           description="running + queued requests per replica")
    metrics_interval_s: Duration = Field(10.0, gt=0, description="deprecated upstream; tidal scrapes on its own interval")
    look_back_period_s: Duration = Field(30.0, gt=0, description="window the ongoing requests are aggregated over")
    aggregation_function: Literal["mean", "max", "min"] = "mean"
    smoothing_factor: float = Field(1.0, gt=0, description="deprecated: default of both scaling factors")
    upscale_smoothing_factor: float | None = Field(None, gt=0, description="deprecated: use upscaling_factor")
    downscale_smoothing_factor: float | None = Field(None, gt=0, description="deprecated: use downscaling_factor")
    upscaling_factor: float | None = Field(None, gt=0, description="fraction of an upward gap closed per decision")
    downscaling_factor: float | None = Field(None, gt=0, description="fraction of a downward gap closed per decision")
    upscale_delay_s: Duration = Field(30.0, ge=0)
    downscale_delay_s: Duration = Field(600.0, ge=0)
    downscale_to_zero_delay_s: Duration | None = Field(None, ge=0, description="delay of the 1 -> 0 step")

    @model_validator(mode="after")
    def _replicas_settings_valid(self) -> RayServeConfig:
        # Ray's `replicas_settings_valid`, with its messages.
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be greater than "
                             f"or equal to min_replicas ({self.min_replicas})!")
        if self.initial_replicas is not None:
            if self.initial_replicas < self.min_replicas:
                raise ValueError(f"min_replicas ({self.min_replicas}) must be less than "
                                 f"or equal to initial_replicas ({self.initial_replicas})!")
            if self.initial_replicas > self.max_replicas:
                raise ValueError(f"max_replicas ({self.max_replicas}) must be greater than "
                                 f"or equal to initial_replicas ({self.initial_replicas})!")
        return self

    def get_upscaling_factor(self) -> float:
        return self.upscaling_factor or self.upscale_smoothing_factor or self.smoothing_factor

    def get_downscaling_factor(self) -> float:
        return self.downscaling_factor or self.downscale_smoothing_factor or self.smoothing_factor


# --------------------------------------------------------------------------- pure stages


@dataclass(frozen=True, slots=True)
class DelayState:
    """Ray's internal policy state: the signed consecutive-vote counter and the first vote time."""

    counter: int = 0
    timestamp: float | None = None


def cold_start_replicas(current: int, target: int, total_requests: float, config: RayServeConfig) -> int | None:
    """``_get_cold_start_scale_up_replicas``: with no running replica and work waiting, scale
    up at once (``None`` when the fast path does not apply)."""
    if current == 0 and total_requests > 0:
        return max(math.ceil(1 * config.get_upscaling_factor()), target)
    return None


def core_desired(current: int, target: int, total_requests: float, config: RayServeConfig) -> float:
    """``_core_replica_queue_length_policy``: ``current x total / (target_ongoing x current)``."""
    if current == 0:
        return float(target)
    error_ratio = total_requests / (config.target_ongoing_requests * current)
    return current * error_ratio


def apply_scaling_factors(desired: float, current: int, config: RayServeConfig) -> int:
    """``_apply_scaling_factors``: close a fraction of the gap; never stuck one above it."""
    if current == 0:
        return math.ceil(desired)
    delta = desired - current
    factor = config.get_upscaling_factor() if delta > 0 else config.get_downscaling_factor()
    scaled = math.ceil(current + factor * delta)
    if math.ceil(desired) < current and scaled == current:
        scaled -= 1
    return scaled


def apply_delay_logic(desired: int, target: int, config: RayServeConfig, state: DelayState,
                      now: float) -> tuple[int, DelayState]:
    """``_apply_delay_logic`` (time-based): act on a direction only after it has been voted
    for continuously for the delay; otherwise keep ``target``."""
    decision = target
    counter, stamp = state.counter, state.timestamp
    if desired > target:
        if counter < 0:
            counter, stamp = 0, None
        counter += 1
        if stamp is None:
            stamp = now
        if now - stamp + DELAY_EPS_S >= config.upscale_delay_s:
            counter, stamp, decision = 0, None, desired
    elif desired < target:
        if counter > 0:
            counter, stamp = 0, None
        counter -= 1
        if target == 1:  # only 1 -> 0 may reach zero, with its own delay
            delay = config.downscale_to_zero_delay_s if config.downscale_to_zero_delay_s is not None \
                else config.downscale_delay_s
        else:
            delay = config.downscale_delay_s
            desired = max(1, desired)
        if stamp is None:
            stamp = now
        if now - stamp + DELAY_EPS_S >= delay:
            counter, stamp, decision = 0, None, desired
    else:
        counter, stamp = 0, None
    return decision, DelayState(counter, stamp)


def apply_bounds(replicas: int, config: RayServeConfig) -> int:
    """``apply_bounds``: clip to ``[min_replicas, max_replicas]``."""
    return max(config.min_replicas, min(config.max_replicas, replicas))


# --------------------------------------------------------------------------- the policy


class RayServePolicy(Policy):
    """Ray Serve's ``replica_queue_length_autoscaling_policy`` with the default wrappers."""

    def __init__(self, config: RayServeConfig) -> None:
        self.config = config
        self._delay = DelayState()
        self._started = False

    def total_num_requests(self, obs: Observation) -> float:
        """Ongoing requests over the look-back window (running + queued, incl. the balancer's buffer)."""
        _, values = obs.metrics.series("concurrency", self.config.look_back_period_s)
        if len(values):
            agg = {"mean": np.mean, "max": np.max, "min": np.min}[self.config.aggregation_function]
            return float(agg(values))
        # No scrape inside the window yet: fall back to the replicas' in-flight requests now.
        return float(sum(pod.in_flight for pod in obs.pods if not pod.draining))

    def decide(self, obs: Observation) -> Decision:
        cfg = self.config
        if not self._started:
            self._started = True
            if cfg.initial_replicas is not None:
                # The deployment is (re)deployed with initial_replicas; autoscaling starts from there.
                return Decision(apply_bounds(cfg.initial_replicas, cfg), reason="ray_serve: initial_replicas")
        current, target = obs.ready, obs.replicas
        total = self.total_num_requests(obs)
        cold = cold_start_replicas(current, target, total, cfg)
        if cold is not None:
            return Decision(apply_bounds(cold, cfg), reason=f"ray_serve: cold start, {total:.3g} requests waiting")
        raw = core_desired(current, target, total, cfg)
        scaled = apply_scaling_factors(raw, current, cfg)
        if current == 0 and scaled > 0:
            decision = scaled  # scaling up from zero bypasses the delay
        else:
            decision, self._delay = apply_delay_logic(max(0, scaled), target, cfg, self._delay, obs.time)
        final = apply_bounds(decision, cfg)
        reason = (f"ray_serve: ongoing={total:.3g} target={cfg.target_ongoing_requests:g} "
                  f"desired={raw:.3g} -> {scaled}")
        if decision == target and scaled != target:
            waited = 0.0 if self._delay.timestamp is None else obs.time - self._delay.timestamp
            reason += f" (held by {'upscale' if scaled > target else 'downscale'} delay, {waited:g}s so far)"
        return Decision(final, reason=reason)

    def state_dict(self) -> dict[str, Any]:
        return {"started": self._started, "decision_counter": self._delay.counter,
                "decision_timestamp": self._delay.timestamp}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._started = bool(state.get("started", False))
        stamp = state.get("decision_timestamp")
        self._delay = DelayState(int(state.get("decision_counter", 0)), None if stamp is None else float(stamp))

    def describe(self) -> str:
        return f"ray_serve(target_ongoing_requests={self.config.target_ongoing_requests:g})"


# Ray's control loop runs every 0.1 s; 1 s keeps a simulated day cheap, and with the time-based
# delays a decision fires at most 1 s later. Replicas push their metrics every 10 s.
register("ray_serve", RayServeConfig, "Ray Serve: target ongoing requests per replica, with up/down delays",
         cadence=Cadence(1.0, 10.0, "controller loop 0.1 s (tidal: 1 s); metrics pushed every 10 s"))(
    RayServePolicy)
