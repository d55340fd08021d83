"""Feedback control: the PID controller and policy, and the RLS-based adaptive policy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import tidal.policy.control as control
from test_policy_queueing import feed, observe
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory
from tidal.policy import build_policy
from tidal.policy.control import PIDController, PIDGains, RecursiveLeastSquares

DT = 15.0
KAPPA = 10.0  # requests/s one replica serves at 100 % utilization
SETPOINT = 0.6


def closed_loop(load, steps, *, kp=50.0, ki=1.0, kd=0.0, anti_windup="back_calculation", hi=1000.0,
                n0=50, derivative_filter=30.0):
    """Drive the utilization plant u = min(1, load / (n κ)) with the PID; return counts and controller."""
    pid = PIDController(PIDGains(kp, ki, kd), SETPOINT, output_limits=(0.0, hi), anti_windup=anti_windup,
                        derivative_filter=derivative_filter)
    n, counts = n0, []
    for k in range(steps):
        u = min(1.0, load(k) / (n * KAPPA)) if n else 1.0
        v = pid.start(k * DT, u, n) if k == 0 else pid.update(k * DT, u)
        n = int(math.floor(v + 0.5))
        counts.append(n)
    return counts, pid


# --------------------------------------------------------------------------- the controller


def test_step_response_converges_without_overshoot():
    counts, _ = closed_loop(lambda k: 300.0 if k < 3 else 450.0, 80)
    target = 450.0 / (KAPPA * SETPOINT)  # 75 replicas hold utilization at the setpoint
    assert counts[:3] == [50, 50, 50]  # bumpless start: no jump on the first call
    assert counts[-20:] == [75] * 20
    assert max(counts) <= target  # no overshoot on this first-order-like plant
    first = next(k for k, n in enumerate(counts) if abs(n - target) <= 0.05 * target)
    assert first <= 30


@pytest.mark.parametrize("anti_windup", ["back_calculation", "clamp"])
def test_anti_windup_releases_saturation_at_once(anti_windup):
    """Demand needs 150 replicas but the output is capped at 100 for 40 steps, then falls to 50."""
    def load(k):
        return 300.0 if k < 3 else (900.0 if k < 43 else 300.0)

    counts, pid = closed_loop(load, 110, anti_windup=anti_windup, hi=100.0)
    wound, _ = closed_loop(load, 110, anti_windup="none", hi=100.0)
    after = counts[43:]
    assert 95 <= max(counts) <= 100
    assert after[2] < 100  # leaves the limit within a couple of steps of the drop
    # The integral stayed near the limit instead of accumulating 40 steps of error.
    assert wound[43:63] == [100] * 20  # without anti-windup it sits at the limit for 20+ steps
    assert all(n <= 100 for n in after)
    assert abs(counts[-1] - 50) <= 1


def test_integral_is_bounded_while_saturated():
    pid = PIDController(PIDGains(10.0, 1.0, 0.0), SETPOINT, output_limits=(0.0, 20.0), anti_windup="clamp")
    pid.start(0.0, 1.0, 20)
    for k in range(1, 100):
        pid.update(k * DT, 1.0)  # error stuck at +0.4
    assert pid.integral <= 20.0
    pid = PIDController(PIDGains(10.0, 1.0, 0.0), SETPOINT, output_limits=(0.0, 20.0))
    pid.start(0.0, 1.0, 20)
    for k in range(1, 100):
        pid.update(k * DT, 1.0)
    # back-calculation: I settles where ki·e·dt is balanced by the tracking term
    assert pid.integral < 20.0 + 10.0


def test_derivative_acts_on_the_measurement_through_a_filter():
    pid = PIDController(PIDGains(0.0, 0.0, 30.0), SETPOINT, derivative_filter=0.0)
    pid.start(0.0, 0.5, 10)
    pid.update(10.0, 0.6)
    assert pid.derivative == pytest.approx(30.0 * 0.1 / 10.0)  # unfiltered: kd·dy/dt
    pid.setpoint = 0.2  # a setpoint change gives no derivative kick
    pid.update(20.0, 0.6)
    assert pid.derivative == 0.0
    filtered = PIDController(PIDGains(0.0, 0.0, 30.0), SETPOINT, derivative_filter=20.0)
    filtered.start(0.0, 0.5, 10)
    filtered.update(10.0, 0.6)
    d1 = filtered.derivative
    assert d1 == pytest.approx(30.0 * 0.1 / (20.0 + 10.0))
    filtered.update(20.0, 0.6)  # flat measurement: the filtered derivative decays geometrically
    assert filtered.derivative == pytest.approx(d1 * 20.0 / 30.0)


def test_repeated_time_returns_the_previous_output():
    pid = PIDController(PIDGains(1.0, 1.0, 0.0), SETPOINT)
    pid.start(0.0, 0.9, 5)
    out = pid.update(15.0, 0.9)
    assert pid.update(15.0, 0.1) == out
    with pytest.raises(RuntimeError):
        PIDController(PIDGains(1.0, 0.0, 0.0), SETPOINT).update(1.0, 0.5)
    with pytest.raises(ValueError):
        PIDController(PIDGains(-1.0, 0.0, 0.0), SETPOINT)


# --------------------------------------------------------------------------- the PID policy


def _utilization_history(points):
    h = MetricsHistory()
    for t, u in points:
        h.record(t, {"utilization": u, "concurrency": 8 * u, "ready_replicas": 10.0})
    return h


def test_pid_policy_starts_bumpless_then_acts():
    p = build_policy({"name": "pid", "kp": 10, "ki": 0.1, "setpoint": 0.6})
    h = _utilization_history([(15, 0.9)])
    assert p.decide(observe(h, 15, 10)).replicas == 10
    h.record(30, {"utilization": 0.9})
    d = p.decide(observe(h, 30, 10))
    # same error, I += ki·e·dt = 0.1·0.3·15 = 0.45 → 10.45 → 10
    assert d.replicas == 10 and "utilization=0.9" in d.reason
    h.record(45, {"utilization": 0.9})
    assert p.decide(observe(h, 45, 10)).replicas == 11  # 10.9


def test_pid_policy_signals_and_hold():
    p = build_policy({"name": "pid", "signal": "concurrency_per_replica", "setpoint": 4, "kp": 1, "window": "30s"})
    assert p.decide(observe(MetricsHistory(), 0, 3)).reason.startswith("no concurrency_per_replica")
    h = MetricsHistory()
    h.record(10, {"concurrency": 40.0, "ready_replicas": 5.0})
    h.record(20, {"concurrency": 60.0, "ready_replicas": 5.0})
    assert control.read_signal(observe(h, 20, 5), "concurrency_per_replica", 30.0) == pytest.approx(10.0)
    assert control.read_signal(observe(h, 20, 5), "concurrency", 0.0) == 60.0
    assert p.decide(observe(h, 20, 5)).replicas == 5


def test_track_replicas_bleeds_the_integral_when_something_else_limits():
    """The PID wants more, a max bound holds the fleet at 8; with tracking, the integral follows
    the applied count, so when demand falls it comes down at once."""
    block = {"name": "pid", "kp": 10, "ki": 0.5, "setpoint": 0.6, "tracking_time": "15s"}
    tracked = build_policy({**block, "track_replicas": True}, min_replicas=0, max_replicas=8)
    free = build_policy(block, min_replicas=0, max_replicas=8)
    results = {}
    for name, p in (("tracked", tracked), ("free", free)):
        h = MetricsHistory()
        n = 8
        out = []
        for k in range(1, 40):
            u = 1.0 if k < 20 else 0.3
            h.record(k * DT, {"utilization": u})
            n = p.decide(observe(h, k * DT, n)).replicas
            out.append(n)
        results[name] = out
    assert results["tracked"][19] < 8  # reacts on the first low sample
    assert results["free"][19] == 8  # still unwinding an integral far above the bound


@pytest.mark.parametrize("block, where", [
    ({"kp": -1}, "policy.kp"),
    ({"ki": -0.1}, "policy.ki"),
    ({"kd": -2}, "policy.kd"),
    ({"kp": 0, "ki": 0, "kd": 0}, "policy"),
    ({"min_output": 5, "max_output": 2}, "policy.max_output"),
    ({"signal": "temperature"}, "policy.signal"),
    ({"tracking_time": "0s"}, "policy.tracking_time"),
    ({"derivative_filter": "-1s"}, "policy.derivative_filter"),
    ({"setpoint": -0.5}, "policy.setpoint"),
    ({"anti_windup": "magic"}, "policy.anti_windup"),
])
def test_pid_bad_parameters_name_the_field(block, where):
    with pytest.raises(TidalInputError) as info:
        build_policy({"name": "pid", **block})
    message = str(info.value)
    assert message.startswith(where + ":"), message
    if block.get("kp") == 0:
        assert "kp, ki and kd are all 0" in message


def test_pid_state_dict_round_trip():
    block = {"name": "pid", "kp": 20, "ki": 0.3, "kd": 5, "setpoint": 0.6}
    a, b = build_policy(block), build_policy(block)
    h = MetricsHistory()
    n = 10
    for k, u in enumerate([0.7, 0.9, 0.95, 0.8, 0.5, 0.4, 0.65, 0.6]):
        h.record(k * DT, {"utilization": u})
        d = a.decide(observe(h, k * DT, n))
        if k == 3:
            state = json.loads(json.dumps(a.state_dict()))
            b.load_state_dict(state)
        elif k > 3:
            assert b.decide(observe(h, k * DT, n)) == d
        n = d.replicas
    assert a.state_dict() == b.state_dict()


# --------------------------------------------------------------------------- RLS and the adaptive policy


def test_rls_equals_weighted_least_squares():
    rng = np.random.default_rng(7)
    phi = rng.uniform(1, 20, size=(60, 2))
    y = phi @ np.array([3.0, -1.5]) + rng.normal(0, 0.1, 60)
    for lam in (1.0, 0.9):
        rls = RecursiveLeastSquares(2, lam, 1e9)
        for row, target in zip(phi, y, strict=True):
            rls.update(row, float(target))
        w = np.sqrt(lam ** np.arange(59, -1, -1))
        expected, *_ = np.linalg.lstsq(phi * w[:, None], y * w, rcond=None)
        assert rls.theta == pytest.approx(expected, rel=1e-6)


def test_rls_forgetting_tracks_a_change_and_covariance_stays_bounded():
    rls = RecursiveLeastSquares(1, 0.8, 100.0, initial=np.array([20.0]))
    for _ in range(30):
        rls.update(np.array([5.0]), 5.0 * 20.0)
    for _ in range(30):
        rls.update(np.array([5.0]), 5.0 * 10.0)
    assert rls.theta[0] == pytest.approx(10.0, rel=5e-3)  # 0.8³⁰ of the old value remains
    assert np.max(rls.P) <= 100.0


def test_adaptive_learns_capacity_and_closes_the_gap_by_gain():
    p = build_policy({"name": "adaptive", "target": 0.5, "gain": 0.5})
    h = MetricsHistory()
    n, t, counts, queue = 4, 0.0, [], 0.0
    for _ in range(12):
        queue = feed(h, t, t + DT, rate=100.0, service=0.05, ready=n, queue=queue)  # κ = 20 req/s per replica
        t += DT
        d = p.decide(observe(h, t, n))
        n = d.replicas
        counts.append(n)
    assert p.capacity == pytest.approx(20.0, rel=1e-6)
    assert counts[:3] == [7, 9, 10]  # goal 10: half the gap each step, rounded away from zero
    assert counts[-1] == 10 and "gain" in d.reason


def test_adaptive_tracks_a_slower_model_server():
    p = build_policy({"name": "adaptive", "target": 0.5, "gain": 1.0, "forgetting": 0.5})
    h = MetricsHistory()
    n, t = 10, 0.0
    for service in [0.05] * 5 + [0.1] * 10:  # capacity halves: 20 → 10 req/s per replica
        feed(h, t, t + DT, rate=100.0, service=service, ready=n)
        t += DT
        n = p.decide(observe(h, t, n)).replicas
    assert p.capacity == pytest.approx(10.0, rel=1e-3)
    assert n == 20


def test_adaptive_scale_from_zero_and_configured_capacity():
    p = build_policy({"name": "adaptive"})
    h = MetricsHistory()
    h.record(10, {"rps": 30.0, "concurrency": 30.0, "ready_replicas": 0.0})
    assert p.decide(observe(h, 10, 0)).replicas == 1
    q = build_policy({"name": "adaptive", "capacity": 20, "target": 0.5})
    assert q.decide(observe(h, 10, 0)).replicas == 3  # ceil(30 / (0.5 · 20))


@pytest.mark.parametrize("block, where", [
    ({"forgetting": 0}, "policy.forgetting"),
    ({"forgetting": 1.1}, "policy.forgetting"),
    ({"gain": 0}, "policy.gain"),
    ({"gain": -0.5}, "policy.gain"),
    ({"target": 1.5}, "policy.target"),
    ({"capacity": -3}, "policy.capacity"),
])
def test_adaptive_bad_parameters_name_the_field(block, where):
    with pytest.raises(TidalInputError) as info:
        build_policy({"name": "adaptive", **block})
    assert str(info.value).startswith(where + ":"), str(info.value)


def test_adaptive_state_dict_round_trip():
    block = {"name": "adaptive", "forgetting": 0.9}
    a, b = build_policy(block), build_policy(block)
    h = MetricsHistory()
    n, t = 6, 0.0
    for k, rate in enumerate([80, 120, 160, 140, 90, 60, 100]):
        feed(h, t, t + DT, rate=float(rate), service=0.05 + 0.01 * (k % 2), ready=n)
        t += DT
        d = a.decide(observe(h, t, n))
        if k == 2:
            state = json.loads(json.dumps(a.state_dict()))
            b.load_state_dict(state)
        elif k > 2:
            assert b.decide(observe(h, t, n)) == d
        n = d.replicas
    assert a.state_dict() == b.state_dict()
