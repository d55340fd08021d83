"""The controller's memory per HPA: recommendations and scale events, and how they are used.

Kubernetes keeps these in controller memory (lost on restart); tidal keeps them in the policy
object and exports them through ``state_dict``. Timestamps are seconds on the policy's clock.
Comparisons are strict like Go's ``After``/``Before`` (spec §7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tidal.policy.hpa.behavior import Behavior, ScalingRules


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A prenormalized (pre-stabilization) desired count and when it was computed."""

    replicas: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A rescale: the absolute change, when, and whether it may be overwritten (``outdated``)."""

    replica_change: int
    timestamp: float
    outdated: bool = False


@dataclass
class HPAState:
    """Everything the controller remembers about one HPA between syncs.

    ``recommendations`` is ``None`` until the first sync records the initial size (spec §3 step 1);
    an empty list is a different, valid state.
    """

    recommendations: list[Recommendation] | None = None
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe snapshot."""
        recs = None if self.recommendations is None else [[r.replicas, r.timestamp] for r in self.recommendations]
        return {
            "recommendations": recs,
            "scale_up_events": [[e.replica_change, e.timestamp, e.outdated] for e in self.scale_up_events],
            "scale_down_events": [[e.replica_change, e.timestamp, e.outdated] for e in self.scale_down_events],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HPAState:
        recs = data.get("recommendations")
        return cls(
            recommendations=None if recs is None else [Recommendation(int(r), float(t)) for r, t in recs],
            scale_up_events=[ScaleEvent(int(c), float(t), bool(o)) for c, t, o in data.get("scale_up_events", [])],
            scale_down_events=[ScaleEvent(int(c), float(t), bool(o)) for c, t, o in data.get("scale_down_events", [])],
        )


def record_initial_recommendation(state: HPAState, current_replicas: int, now: float) -> None:
    """``recordInitialRecommendation``: why an HPA never scales down in its first window."""
    if state.recommendations is None:
        state.recommendations = [Recommendation(current_replicas, now)]


def _store(recs: list[Recommendation], old_index: int | None, rec: Recommendation) -> None:
    # A stale slot is reused so the history stays bounded by the window.
    if old_index is None:
        recs.append(rec)
    else:
        recs[old_index] = rec


def stabilize_recommendation(state: HPAState, prenormalized: int, window: float, now: float) -> int:
    """``stabilizeRecommendation`` (no behavior): the highest recommendation of the last ``window``."""
    recs = state.recommendations if state.recommendations is not None else []
    cutoff = now - window
    best = prenormalized
    old_index = None
    for i, rec in enumerate(recs):
        if rec.timestamp < cutoff:
            old_index = i  # the last stale entry
        elif rec.replicas > best:
            best = rec.replicas
    _store(recs, old_index, Recommendation(prenormalized, now))
    state.recommendations = recs
    return best


def stabilize_recommendation_with_behaviors(state: HPAState, current: int, desired: int, up_window: float,
                                            down_window: float, now: float) -> int:
    """``stabilizeRecommendationWithBehaviors``: clamp ``current`` into [lowest recent, highest recent].

    Scale-up goes at most to the lowest recommendation of the up window, scale-down at most to
    the highest of the down window; the prenormalized ``desired`` is then recorded.
    """
    recs = state.recommendations if state.recommendations is not None else []
    up_cutoff = now - up_window
    down_cutoff = now - down_window
    up_rec = down_rec = desired
    old_index = None
    for i, rec in enumerate(recs):
        if rec.timestamp > up_cutoff:
            up_rec = min(up_rec, rec.replicas)
        if rec.timestamp > down_cutoff:
            down_rec = max(down_rec, rec.replicas)
        if rec.timestamp < up_cutoff and rec.timestamp < down_cutoff:
            old_index = i
    result = current
    if result < up_rec:
        result = up_rec
    if result > down_rec:
        result = down_rec
    _store(recs, old_index, Recommendation(desired, now))
    state.recommendations = recs
    return result


def replicas_change_per_period(period_seconds: float, events: Sequence[ScaleEvent], now: float) -> int:
    """``getReplicasChangePerPeriod``: total change of events after ``now - period`` (outdated or not)."""
    cutoff = now - period_seconds
    return sum(e.replica_change for e in events if e.timestamp > cutoff)


def store_scale_event(state: HPAState, behavior: Behavior | None, prev_replicas: int, new_replicas: int,
                      now: float) -> None:
    """``storeScaleEvent``: remember a rescale for the rate limits (only with a behavior)."""
    if behavior is None:
        return
    if new_replicas > prev_replicas:
        state.scale_up_events = _store_event(state.scale_up_events, behavior.scale_up,
                                             new_replicas - prev_replicas, now)
    else:
        state.scale_down_events = _store_event(state.scale_down_events, behavior.scale_down,
                                               prev_replicas - new_replicas, now)


def _store_event(events: list[ScaleEvent], rules: ScalingRules | None, change: int, now: float) -> list[ScaleEvent]:
    longest = rules.longest_period() if rules is not None else 0
    cutoff = now - longest
    # markScaleEventsOutdated: sticky, so an old event is never counted again once reused.
    events = [replace(e, outdated=True) if e.timestamp < cutoff else e for e in events]
    old_index = None
    for i, e in enumerate(events):
        if e.outdated:
            old_index = i
    new = ScaleEvent(change, now, False)
    if old_index is None:
        events.append(new)
    else:
        events[old_index] = new
    return events
