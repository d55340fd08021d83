"""The ``kpa`` policy on tidal's contract: configuration, a scripted plant, state round trips."""

from __future__ import annotations

import json
import math

import pytest

from tidal.core.errors import TidalInputError
from tidal.core.types import Decision, MetricsHistory, Observation
from tidal.policy import build_policy
from tidal.policy.kpa import KPAConfig, KPAPolicy
from tidal.policy.kpa.collector import MetricCollection
from tidal.policy.kpa.config import canonical_key
from tidal.policy.kpa.decider import Autoscaler, DeciderSpec
from tidal.policy.kpa.maxwindow import MaxTimeWindow

# --------------------------------------------------------------------------- configuration


def test_defaults_are_upstream():
    cfg = KPAConfig()
    assert cfg.stable_window == 60 and cfg.panic_window == 6
    assert cfg.panic_threshold_percentage == 200 and cfg.max_scale_up_rate == 1000 and cfg.max_scale_down_rate == 2
    assert cfg.target_burst_capacity == 211 and cfg.scale_to_zero_grace_period == 30
    assert (cfg.metric_target.target, cfg.metric_target.total) == (70, 100)
    rps = KPAConfig(metric="rps").metric_target
    assert (rps.target, rps.total) == (140, 200)


@pytest.mark.parametrize(("key", "field"), [
    ("stable_window", "stable_window"),
    ("stable-window", "stable_window"),
    ("window", "stable_window"),
    ("autoscaling.knative.dev/window", "stable_window"),
    ("autoscaling.knative.dev/target", "target"),
    ("autoscaling.knative.dev/minScale", "min_scale"),
    ("minScale", "min_scale"),
    ("scale-to-zero-grace-period", "scale_to_zero_grace_period"),
    ("autoscaling.knative.dev/panicThresholdPercentage", "panic_threshold_percentage"),
    ("serving.knative.dev/progress-deadline", "progress_deadline"),
])
def test_upstream_key_spellings_are_accepted(key, field):
    assert canonical_key(key) == field
    assert field in KPAConfig.model_fields


def test_annotation_keys_build_a_policy():
    policy = build_policy({"name": "kpa", "autoscaling.knative.dev/target": "50", "window": "2m",
                           "autoscaling.knative.dev/metric-aggregation-algorithm": "weightedExponential"})
    cfg = policy.config
    assert cfg.target == 50 and cfg.stable_window == 120 and cfg.panic_window == 12
    assert cfg.metric_aggregation_algorithm == "weighted-exponential"
    assert policy.spec.target_value == pytest.approx(35.0)


@pytest.mark.parametrize(("block", "path", "words"), [
    ({"stable_window": "5s"}, "policy.stable_window", "greater than or equal to 6"),
    ({"stable_window": "90.5s"}, "policy.stable_window", "whole number of seconds"),
    ({"panic_threshold_percentage": 100}, "policy.panic_threshold_percentage", "110"),
    ({"panic_window_percentage": 0.5}, "policy.panic_window_percentage", "1"),
    ({"max_scale_up_rate": 1}, "policy.max_scale_up_rate", "greater than 1"),
    ({"max_scale_down_rate": 0.5}, "policy.max_scale_down_rate", "greater than 1"),
    ({"target_burst_capacity": -2}, "policy.target_burst_capacity", "-1"),
    ({"target": 0.001}, "policy.target", "0.01"),
    ({"target_utilization_percentage": 120}, "policy.target_utilization_percentage", "100"),
    ({"initial_scale": 0}, "policy.initial_scale", "allow_zero_initial_scale"),
    ({"min_scale": 5, "max_scale": 3}, "policy.max_scale", "min_scale"),
    ({"max_scale_limit": 10, "max_scale": 20}, "policy.max_scale", "max_scale_limit"),
    ({"scale_to_zero_grace_period": 0}, "policy.scale_to_zero_grace_period", "greater than 0"),
    ({"activator_capacity": 0.5}, "policy.activator_capacity", "1"),
    ({"metric": "cpu"}, "policy.metric", "concurrency"),
    ({"container_concurrency_target_percentage": 1, "container_concurrency_target_default": 0.005},
     "policy.container_concurrency_target_default", "0.01"),
    ({"panic-window": 10}, "policy.panic-window", "unknown key"),
])
def test_bad_parameters_name_the_field(block, path, words):
    with pytest.raises(TidalInputError) as err:
        build_policy({"name": "kpa", **block})
    assert path in str(err.value)
    assert words in str(err.value)


def test_the_same_knob_twice_is_an_error():
    with pytest.raises(TidalInputError, match="'window' and 'stable_window' both set stable_window"):
        build_policy({"name": "kpa", "window": "30s", "stable_window": "60s"})


def test_zero_initial_scale_when_allowed():
    cfg = KPAConfig(allow_zero_initial_scale=True, initial_scale=0)
    assert cfg.effective_initial_scale == 0


# --------------------------------------------------------------------------- pieces


def test_scale_down_delay_window_keeps_the_max_for_the_delay():
    # Spec §4.4: with a 300 s delay a 4 recorded at t=2 is the max at t=300, gone at t=302.
    window = MaxTimeWindow(300, 2)
    window.record(2, 4)
    window.record(4, 1)
    window.record(300, 1)
    assert window.current() == 4
    window.record(302, 1)
    assert window.current() == 1


def test_decider_scale_down_delay_holds_the_recommendation():
    spec = DeciderSpec(target_value=10, total_value=10, target_burst_capacity=0, panic_threshold=2,
                       max_scale_up_rate=10, max_scale_down_rate=10, activator_capacity=100,
                       stable_window=60, scale_down_delay=10)
    decider = Autoscaler(spec, 1, 0.0)
    assert decider.scale(0, 5, 50, 50).desired == 5
    assert decider.scale(4, 5, 10, 10).desired == 5  # held by the delay window
    assert decider.scale(10, 5, 10, 10).desired == 1  # t=0's slot has slid out


def test_unlimited_burst_capacity_reads_empty_windows_as_zero():
    collection = MetricCollection(60, 6, scrape_target=False)
    observed = collection.stable_and_panic("concurrency", 100.0)
    assert observed is not None and observed.stable == 0 and observed.panic == 0
    assert MetricCollection(60, 6).stable_and_panic("concurrency", 100.0) is None


# --------------------------------------------------------------------------- a scripted plant


def concurrency_profile(t: float) -> float:
    """Quiet, then a burst that trips panic mode, then silence (scale to zero)."""
    if t <= 60:
        return 5.0
    if t <= 120:
        return 400.0
    return 0.0


class Plant:
    """Pods become ready one tick after they are asked for; metrics every second."""

    def __init__(self, replicas: int = 1) -> None:
        self.history = MetricsHistory()
        self.replicas = replicas
        self.ready = replicas

    def scrape(self, t: float) -> None:
        value = concurrency_profile(t)
        self.history.record(t, {"concurrency": value, "rps": value * 5, "ready_replicas": float(self.ready)})

    def observe(self, t: float) -> Observation:
        return Observation(time=t, replicas=self.replicas, ready=self.ready, starting=0, pods=(),
                           metrics=self.history.view(t))

    def actuate(self, decision: Decision) -> None:
        self.ready = self.replicas
        self.replicas = decision.replicas


def drive(policy, plant: Plant, start: float, end: float) -> list[Decision]:
    decisions = []
    t = start
    while t < end:
        for s in (t - 1, t):
            if s > 0:
                plant.scrape(s)
        decision = policy.decide(plant.observe(t))
        plant.actuate(decision)
        decisions.append(decision)
        t += 2
    return decisions


def kpa(**params) -> KPAPolicy:
    return KPAPolicy(KPAConfig(target=10, target_burst_capacity=0, **params))


def test_panic_mode_shows_in_reasons_and_never_scales_down():
    policy = kpa()
    decisions = drive(policy, Plant(), 0, 200)
    panic = [(i, d) for i, d in enumerate(decisions) if d.reason.startswith("panic:")]
    assert panic, "the burst must trip panic mode"
    first = panic[0][0]
    assert first * 2 == pytest.approx(62, abs=2)  # the first tick that sees the burst
    counts = [d.replicas for _, d in panic]
    assert counts == sorted(counts), "panic mode never scales down"
    assert max(counts) >= 400 / 7 - 1
    assert policy.panic_entries == 1 and policy.first_panic_at == first * 2


def test_silence_after_the_burst_scales_to_zero():
    policy = kpa()
    decisions = drive(policy, Plant(), 0, 400)
    assert decisions[-1].replicas == 0
    assert policy.sks is not None and policy.sks.mode == "Proxy"
    assert policy.active.status.active == "False"


def test_state_round_trips_through_json():
    for cut in (100, 150, 260):
        original, plant = kpa(scale_down_delay="10s"), Plant()
        drive(original, plant, 0, cut)
        state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
        restored = kpa(scale_down_delay="10s")
        restored.load_state_dict(state)
        assert restored.state_dict() == original.state_dict()
        # Both continue on the same observations: same decisions.
        for t in range(cut, cut + 160, 2):
            for s in (t - 1, t):
                plant.scrape(s)
            obs = plant.observe(t)
            a, b = original.decide(obs), restored.decide(obs)
            assert a == b, f"t={t} (cut {cut})"
            plant.actuate(a)


def test_restored_state_resizes_to_a_new_window():
    original, plant = kpa(), Plant()
    drive(original, plant, 0, 100)
    restored = kpa(stable_window="30s")
    restored.load_state_dict(original.state_dict())
    assert restored.collection.stable["concurrency"].window == 30
    assert math.isfinite(restored.collection.stable["concurrency"].window_average(100))


# --------------------------------------------------------------------------- knobs reach the decider


def _first_time(decisions: list[Decision], predicate, after: float = 0.0) -> float:
    """Time of the first decision (one per 2 s from t=0) after ``after`` that satisfies ``predicate``."""
    return next(2.0 * i for i, d in enumerate(decisions) if 2.0 * i > after and predicate(d.replicas))


def test_rps_metric_scales_on_requests_per_second():
    quiet_concurrency = drive(kpa(), Plant(), 0, 58)[-1].replicas
    quiet_rps = drive(kpa(metric="rps"), Plant(), 0, 58)[-1].replicas
    assert quiet_concurrency == 1          # 5 in flight / (10 x 70 %)
    assert quiet_rps == 4                  # 25 req/s / (10 x 70 %)


def test_activation_and_initial_scale_from_the_block():
    assert {d.replicas for d in drive(kpa(), Plant(), 20, 58)} == {1}
    assert {d.replicas for d in drive(kpa(activation_scale=3), Plant(), 20, 58)} == {3}
    assert drive(kpa(initial_scale=5), Plant(), 0, 2)[0].replicas == 5


def test_weighted_averaging_changes_the_stable_window():
    linear = [d.replicas for d in drive(kpa(), Plant(), 0, 400)]
    weighted = [d.replicas for d in drive(kpa(metric_aggregation_algorithm="weighted-exponential"), Plant(), 0, 400)]
    assert linear != weighted


def test_scale_down_delay_and_pod_retention_postpone_scale_down():
    base = drive(kpa(), Plant(), 0, 600)
    delayed = drive(kpa(scale_down_delay="60s"), Plant(), 0, 600)
    retained = drive(kpa(scale_to_zero_pod_retention_period="3m"), Plant(), 0, 600)
    to_zero = _first_time(base, lambda n: n == 0, after=120)
    assert _first_time(delayed, lambda n: n == 0, after=120) >= to_zero + 60 - 2
    assert _first_time(retained, lambda n: n == 0, after=120) > to_zero
    assert _first_time(retained, lambda n: n == 0, after=120) >= 120 + 180
