"""Online estimates of the queueing model's inputs from aggregate metrics.

Policies never see individual requests, only per-scrape aggregates (arrival rate, busy fraction of
the slots, in-flight count). Little's law on the servers alone turns those into a service time:
the mean number of busy slots equals throughput × mean service time. The helpers here are plain
numbers in, numbers out; the policies own the state and decide when a sample is trustworthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def service_time_from_load(throughput: float, utilization: float, ready: float, concurrency: int) -> float | None:
    """Mean service time (seconds) by Little's law on the servers, or None without evidence.

    ``utilization`` is the busy fraction of the ``ready × concurrency`` slots over a window in
    which ``throughput`` requests per second completed; busy slots = throughput × E[S].
    """
    busy_slots = utilization * ready * concurrency
    if not (throughput > 0.0 and busy_slots > 0.0) or not math.isfinite(busy_slots / throughput):
        return None
    return busy_slots / throughput


@dataclass
class Ewma:
    """Exponentially weighted moving average over irregular time steps.

    The weight of the old value decays with a ``half_life`` in seconds rather than per sample,
    so the smoothing does not depend on how often the policy is called. ``half_life = 0``
    keeps only the latest sample.
    """

    half_life: float
    value: float | None = None
    time: float | None = None

    def update(self, time: float, sample: float) -> float:
        """Blend in ``sample`` observed at ``time`` and return the new estimate."""
        if self.value is None or self.time is None or self.half_life <= 0.0:
            self.value = float(sample)
        else:
            elapsed = max(time - self.time, 0.0)
            keep = 0.5 ** (elapsed / self.half_life)
            self.value = keep * self.value + (1.0 - keep) * float(sample)
        self.time = float(time)
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "time": self.time}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        value, time = state.get("value"), state.get("time")
        self.value = None if value is None else float(value)
        self.time = None if time is None else float(time)
