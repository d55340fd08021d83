"""The ``keda`` policy on synthetic observations: activation, cooldown, HPA sizing, fallback,
scaling modifiers, idle/min replicas, annotations, validation and resumable state."""

from __future__ import annotations

import json

import pytest

import tidal.policy.keda  # noqa: F401  (registers "keda")
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.policy import build_policy
from tidal.policy.keda import KedaPolicy
from tidal.policy.registry import available_policies


def queue_trigger(target: float = 5, activation: float | None = None, **extra) -> dict:
    metadata = {"metric": "queue_length", "targetValue": target}
    if activation is not None:
        metadata["activationTargetValue"] = activation
    return {"type": "tidal-metric", "metadata": metadata, **extra}


def keda(**spec) -> KedaPolicy:
    spec.setdefault("triggers", [queue_trigger()])
    policy = build_policy({"name": "keda", **spec})
    assert isinstance(policy, KedaPolicy)
    return policy


class World:
    """Feeds a policy observations: metrics recorded at each decision time, replicas follow
    the decisions (instant actuation, all replicas ready)."""

    def __init__(self, policy, replicas: int = 0) -> None:
        self.policy = policy
        self.replicas = replicas
        self.history = MetricsHistory()
        self.decisions: list[tuple[float, int, str]] = []

    def step(self, t: float, **metrics: float | None) -> int:
        values = {k: v for k, v in metrics.items() if v is not None}
        if values:
            self.history.record(t, values)
        pods = tuple(PodSample(id=i, ready=True, started_at=0.0, ready_at=0.0, in_flight=0,
                               requests={"cpu": 1.0}, usage={"cpu": metrics.get("cpu_per_pod") or 0.0})
                     for i in range(self.replicas))
        obs = Observation(time=t, replicas=self.replicas, ready=self.replicas, starting=0, pods=pods,
                          metrics=self.history.view(t))
        decision = self.policy.decide(obs)
        self.decisions.append((t, decision.replicas, decision.reason))
        self.replicas = decision.replicas
        return decision.replicas


# --------------------------------------------------------------------------- registry and config


def test_registered_with_scaledobject_defaults():
    assert "keda" in available_policies()
    cfg = keda().config
    assert (cfg.pollingInterval, cfg.cooldownPeriod, cfg.initialCooldownPeriod) == (30.0, 300.0, 0.0)
    assert cfg.minReplicaCount is None and cfg.maxReplicaCount is None and cfg.idleReplicaCount is None
    assert (cfg.hpa_min, cfg.hpa_max) == (1, 100)
    assert keda(pollingInterval="1m", cooldownPeriod="10m").config.cooldownPeriod == 600.0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"pollingIntervall": 30}, "pollingIntervall"),
        ({"minReplicaCount": 5, "maxReplicaCount": 2}, "MinReplicaCount=5 must be less than MaxReplicaCount=2"),
        ({"minReplicaCount": 1, "idleReplicaCount": 1}, "IdleReplicaCount=1 must be less than MinReplicaCount=1"),
        ({"idleReplicaCount": 0}, "IdleReplicaCount=0 must be less than MinReplicaCount=0"),
        ({"triggers": []}, "triggers"),
        ({"triggers": [{"type": "kafka", "metadata": {}}]}, "triggers.0.type"),
        ({"triggers": [{"type": "tidal-metric", "metadata": {"metric": "rps"}}]}, "triggers.0.metadata.targetValue"),
        ({"triggers": [queue_trigger(target=0)]}, "triggers.0.metadata.targetValue"),
        ({"triggers": [queue_trigger(target="abc")]}, "triggers.0.metadata.targetValue"),
        ({"triggers": [queue_trigger(metricType="Utilization")]}, "Utilization"),
        ({"triggers": [{"type": "prometheus", "metadata": {"query": "rps"}}]}, "triggers.0.metadata.threshold"),
        ({"triggers": [{"type": "tidal-metric", "metadata": {"metric": "rps", "value": 1, "bogus": 2}}]}, "bogus"),
        ({"fallback": {"failureThreshold": -1, "replicas": 3}}, "FailureThreshold=-1"),
        ({"fallback": {"failureThreshold": 3, "replicas": 3, "behavior": "sometimes"}}, "fallback.behavior"),
        ({"triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}]},
         "only cpu/memory triggers"),
        ({"advanced": {"scalingModifiers": {"formula": "a + b", "target": "5"}},
          "triggers": [queue_trigger(name="a")]}, "formula"),
        ({"advanced": {"scalingModifiers": {"formula": "a", "target": "0"}}, "triggers": [queue_trigger(name="a")]},
         "scalingModifiers.target"),
        ({"advanced": {"scalingModifiers": {"formula": "a"}}, "triggers": [queue_trigger(name="a")]},
         "target is empty"),
        ({"advanced": {"scalingModifiers": {"target": "2"}}, "triggers": [queue_trigger(name="a")]},
         "Formula is mandatory"),
        ({"fallback": {"failureThreshold": 3, "replicas": 2, "behavior": "scalingModifiers"}},
         "scalingModifiers needs"),
    ],
)
def test_bad_parameters_name_the_field(spec, field):
    block = {"name": "keda", "triggers": [queue_trigger()], **spec}
    with pytest.raises(TidalInputError) as err:
        build_policy(block)
    assert field in str(err.value)


# --------------------------------------------------------------------------- activation and cooldown


def test_activation_from_zero_waits_for_the_poll_and_is_strict():
    world = World(keda(pollingInterval=30), replicas=0)
    assert world.step(0, queue_length=0) == 0          # 0 is not > activation 0
    assert world.step(15, queue_length=7) == 0         # not a polling tick: the HPA is disabled at 0
    assert world.step(30, queue_length=7) == 1         # poll: active -> minReplicaCount or 1
    assert "activated" in world.decisions[-1][2]
    assert world.step(45, queue_length=7) == 2         # now the HPA sizes it: ceil(7 / 5)


def test_activation_threshold():
    world = World(keda(triggers=[queue_trigger(activation=10)]), replicas=0)
    assert world.step(0, queue_length=10) == 0
    assert world.step(30, queue_length=10.5) == 1


def test_cooldown_before_scale_to_zero():
    world = World(keda(pollingInterval=30, cooldownPeriod=300), replicas=0)
    world.step(0, queue_length=20)                      # active at t=0 -> 1
    for t in range(30, 300 + 1, 30):
        assert world.step(t, queue_length=0) >= 1, t    # lastActive(0) + 300 < now is false up to 300
    assert world.step(330, queue_length=0) == 0         # first poll strictly after the cooldown
    assert "cooldown" in world.decisions[-1][2]
    assert world.policy.conditions["Active"].reason == "ScalerNotActive"


def test_activity_refreshes_last_active_time():
    world = World(keda(pollingInterval=30, cooldownPeriod=60), replicas=0)
    world.step(0, queue_length=20)
    world.step(30, queue_length=1)                      # still active at 30: lastActive = 30
    world.step(60, queue_length=0)
    assert world.step(90, queue_length=0) >= 1          # 30 + 60 < 90 is false
    assert world.policy.conditions["Active"].reason == "ScalerCooldown"
    assert world.step(120, queue_length=0) == 0


def test_never_active_scales_in_after_initial_cooldown():
    world = World(keda(initialCooldownPeriod=60), replicas=3)
    assert world.step(0, queue_length=0) == 3           # a new HPA remembers its initial size
    assert world.step(30, queue_length=0) == 3          # created at 0: 0 + 60 < 30 is false
    assert world.step(60, queue_length=0) == 3          # 60 < 60 is false
    assert world.step(90, queue_length=0) == 0


def test_min_replica_count_disables_scale_to_zero_and_is_raised_to():
    world = World(keda(minReplicaCount=2, cooldownPeriod=0), replicas=0)
    assert world.step(0, queue_length=0) == 2           # inactive and below min: raise to min
    for t in range(30, 300, 30):
        assert world.step(t, queue_length=0) == 2


def test_idle_replica_count():
    world = World(keda(idleReplicaCount=0, minReplicaCount=3, cooldownPeriod=60), replicas=0)
    assert world.step(0, queue_length=0) == 0           # idle, inactive: stays idle
    assert world.step(30, queue_length=1) == 3          # active: jump to minReplicaCount
    world.step(60, queue_length=0)
    world.step(90, queue_length=0)
    assert world.step(120, queue_length=0) == 0         # 30 + 60 < 120: back to idle


# --------------------------------------------------------------------------- the HPA between 1 and N


def test_hpa_average_value_with_tolerance_and_scale_up_limit():
    world = World(keda(), replicas=1)
    world.step(0, queue_length=3)
    assert world.step(15, queue_length=100) == 4         # ceil(100/5)=20, limited to max(2*1, 4)
    assert world.step(30, queue_length=100) == 8
    assert world.step(45, queue_length=100) == 16
    assert world.step(60, queue_length=100) == 20
    assert world.step(75, queue_length=104) == 20        # 104 / (5*20) = 1.04: within tolerance


def test_hpa_downscale_stabilization_and_bounds():
    world = World(keda(maxReplicaCount=6), replicas=1)
    assert world.step(0, queue_length=50) == 4          # ceil(50/5)=10, limited to max(2*1, 4)
    assert world.step(15, queue_length=50) == 6         # maxReplicaCount
    for t in range(30, 315 + 1, 15):                    # the last high proposal (t=15) is held
        assert world.step(t, queue_length=5) == 6, t     # for 5 minutes (max over the window)
    assert world.step(330, queue_length=5) == 1


def test_value_metric_type_multiplies_by_ready_pods():
    world = World(keda(triggers=[queue_trigger(target=10, metricType="Value")]), replicas=4)
    world.step(0, queue_length=10)
    assert world.replicas == 4                           # ratio 1: within tolerance
    assert world.step(15, queue_length=15) == 6          # ceil(1.5 * 4)


def test_several_triggers_take_the_max():
    triggers = [queue_trigger(target=5),
                {"type": "prometheus", "metadata": {"query": "rps", "threshold": "10"}}]
    world = World(keda(triggers=triggers), replicas=2)
    assert world.step(0, queue_length=5, rps=35) == 4    # max(ceil(5/5)=1, ceil(35/10)=4)
    assert world.step(15, queue_length=30, rps=35) == 6  # max(6, 4)


def test_behavior_policies_limit_scale_up():
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}
    world = World(keda(advanced={"horizontalPodAutoscalerConfig": {"behavior": behavior}}), replicas=1)
    world.step(0, queue_length=100)
    assert world.replicas == 2
    assert world.step(15, queue_length=100) == 2          # 1 pod per 60 s
    assert world.step(60, queue_length=100) == 3


def test_paused_annotations():
    world = World(keda(annotations={"autoscaling.keda.sh/paused-scale-in": "true"}, cooldownPeriod=0), replicas=2)
    world.step(0, queue_length=20)
    for t in range(30, 400, 30):
        assert world.step(t, queue_length=0) >= 1        # never to zero while scale-in is paused
    pinned = World(keda(annotations={"autoscaling.keda.sh/paused-replicas": "4"}), replicas=1)
    assert pinned.step(0, queue_length=100) == 4
    assert pinned.step(30, queue_length=0) == 4


def test_force_activation_annotation():
    world = World(keda(annotations={"autoscaling.keda.sh/force-activation": "true"}), replicas=0)
    assert world.step(0, queue_length=0) == 1


def test_cpu_trigger_alongside_an_external_one():
    triggers = [queue_trigger(), {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}]
    world = World(keda(triggers=triggers, minReplicaCount=1), replicas=2)
    assert world.step(0, queue_length=0, cpu_per_pod=0.9) == 4   # 90 % / 50 % on 2 ready pods


# --------------------------------------------------------------------------- fallback


def test_missing_metric_without_fallback_holds_and_reports():
    world = World(keda(), replicas=3)
    assert world.step(0) == 3
    assert "unavailable" in world.decisions[-1][2]
    assert world.policy.conditions["Ready"].reason == "TriggerError"


def test_fallback_after_failure_threshold_counts_every_query():
    world = World(keda(fallback={"failureThreshold": 3, "replicas": 6}), replicas=3)
    # t=0: the poll and the HPA both query -> 2 failures; t=15: HPA only -> 3; still below.
    assert world.step(0) == 3
    assert world.step(15) == 3
    assert world.policy.health["s0-queue_length"].failures == 3
    assert world.step(30) == 6                            # 4th failure: fallback, HPA lands on 6
    assert world.policy.health["s0-queue_length"].status == "Failing"
    assert world.step(45, queue_length=5) == 6            # recovered; stabilisation holds 6
    assert world.policy.health["s0-queue_length"].failures == 0


def test_fallback_keeps_a_zero_min_object_alive():
    world = World(keda(fallback={"failureThreshold": 0, "replicas": 3}, cooldownPeriod=0), replicas=0)
    assert world.step(0) == 1                              # fallback active counts as active
    assert world.step(15) == 3


@pytest.mark.parametrize(("behavior", "expected"), [
    ("static", 5), ("currentReplicas", 3), ("currentReplicasIfHigher", 5), ("currentReplicasIfLower", 3)])
def test_fallback_behaviors(behavior, expected):
    world = World(keda(fallback={"failureThreshold": 0, "replicas": 5, "behavior": behavior}), replicas=3)
    assert world.step(0) == expected


# --------------------------------------------------------------------------- scaling modifiers


def modifiers_policy(formula: str, **sm) -> KedaPolicy:
    triggers = [queue_trigger(name="queue"),
                {"type": "tidal-metric", "name": "rate", "metadata": {"metric": "rps", "targetValue": 1}}]
    return keda(triggers=triggers, advanced={"scalingModifiers": {"formula": formula, "target": "10", **sm}})


def test_scaling_modifier_composite_metric():
    world = World(modifiers_policy("queue + rate / 2"), replicas=1)
    assert world.step(0, queue_length=20, rps=40) == 4     # composite 40 / target 10, limited from 1 to 4
    assert world.step(15, queue_length=20, rps=40) == 4    # 40 / (10 * 4) = 1: within tolerance


def test_scaling_modifier_activation_target():
    world = World(modifiers_policy("queue > 5 ? queue : 0", activationTarget="5"), replicas=0)
    assert world.step(0, queue_length=5, rps=100) == 0     # composite 0: not > 5
    assert world.step(30, queue_length=6, rps=0) == 1


def test_scaling_modifier_nil_coalescing_fallback():
    def policy() -> KedaPolicy:
        triggers = [queue_trigger(name="primary"),
                    {"type": "tidal-metric", "name": "backup", "metadata": {"metric": "concurrency", "targetValue": 1}}]
        return keda(triggers=triggers, fallback={"failureThreshold": 0, "replicas": 2, "behavior": "scalingModifiers"},
                    advanced={"scalingModifiers": {"formula": "primary ?? backup", "target": "5"}})

    # queue_length is missing: past the threshold its variable is nil and the formula uses backup.
    world = World(policy(), replicas=1)
    assert world.step(0, concurrency=15) == 3              # ceil(15 / 5)
    assert "composite-metric=15" in world.decisions[-1][2]
    # Both missing: the formula is nil, so the composite is fallback.replicas x target = 10 -> 2.
    world = World(policy(), replicas=1)
    assert world.step(0) == 2
    assert "composite-metric=10" in world.decisions[-1][2]


# --------------------------------------------------------------------------- state


def _script(world: World, start: int, stop: int) -> list[int]:
    pattern = [0, 0, 12, 40, 40, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    return [world.step(15 * k, queue_length=pattern[k % len(pattern)]) for k in range(start, stop)]


def test_state_dict_round_trip_resumes_identically():
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    spec = {"fallback": {"failureThreshold": 2, "replicas": 4},
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}}}
    a = World(keda(**spec))
    first = _script(a, 0, 20)
    state = json.loads(json.dumps(a.policy.state_dict()))   # JSON-safe
    b = World(keda(**spec), replicas=a.replicas)
    b.history = a.history
    b.policy.load_state_dict(state)
    assert _script(b, 20, 60) == _script(a, 20, 60)
    assert b.policy.state_dict() == a.policy.state_dict()
    assert first  # the script did something
    fresh = keda()
    fresh.load_state_dict({})
    assert fresh.state_dict()["last_poll"] is None


def test_deterministic():
    runs = []
    for _ in range(2):
        world = World(keda())
        runs.append(_script(world, 0, 60))
    assert runs[0] == runs[1]
    assert max(runs[0]) > 1 and 0 in runs[0][10:]   # scaled up, then back to zero after the cooldown
