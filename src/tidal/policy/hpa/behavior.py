"""The ``behavior`` API values (autoscaling/v2 ``HPAScalingRules``) and their defaults (spec §6.1-6.2)."""

from __future__ import annotations

from dataclasses import dataclass, replace

PODS = "Pods"
PERCENT = "Percent"
MAX = "Max"
MIN = "Min"
DISABLED = "Disabled"

#: API validation bounds (``pkg/apis/autoscaling/validation``).
MAX_STABILIZATION_WINDOW_SECONDS = 3600
MAX_PERIOD_SECONDS = 1800


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """Allow at most ``value`` pods (``Pods``) or percent (``Percent``) per ``period_seconds``."""

    type: str
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """One direction of ``spec.behavior``. ``None`` fields are unset (nil pointers in Go)."""

    stabilization_window_seconds: int | None = None
    select_policy: str | None = None
    policies: tuple[ScalingPolicy, ...] | None = None
    #: Per-direction tolerance (v1.33+, ``HPAConfigurableTolerance``), as a float.
    tolerance: float | None = None

    def longest_period(self) -> int:
        """``getLongestPolicyPeriod``: 0 without policies."""
        return max((p.period_seconds for p in self.policies or ()), default=0)


@dataclass(frozen=True, slots=True)
class Behavior:
    """``spec.behavior``: rules for scaling up and down."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


_SCALE_UP_DEFAULT = ScalingRules(0, MAX, (ScalingPolicy(PODS, 4, 15), ScalingPolicy(PERCENT, 100, 15)))
# The scale-down window stays unset: the controller substitutes its own flag (spec §6.3).
_SCALE_DOWN_DEFAULT = ScalingRules(None, MAX, (ScalingPolicy(PERCENT, 100, 15),))


def generate_scale_up_rules(rules: ScalingRules | None) -> ScalingRules:
    """``GenerateHPAScaleUpRules``: the user's fields over the defaults, field by field."""
    return _copy_rules(rules, _SCALE_UP_DEFAULT)


def generate_scale_down_rules(rules: ScalingRules | None) -> ScalingRules:
    """``GenerateHPAScaleDownRules``: the user's fields over the defaults, field by field."""
    return _copy_rules(rules, _SCALE_DOWN_DEFAULT)


def default_behavior(behavior: Behavior | None) -> Behavior | None:
    """``SetDefaults_HorizontalPodAutoscalerBehavior``: only an HPA that has a behavior gets one."""
    if behavior is None:
        return None
    return Behavior(generate_scale_up_rules(behavior.scale_up), generate_scale_down_rules(behavior.scale_down))


def _copy_rules(source: ScalingRules | None, defaults: ScalingRules) -> ScalingRules:
    """``copyHPAScalingRules``: a set field replaces the default; a set policy list replaces it whole."""
    if source is None:
        return defaults
    window = source.stabilization_window_seconds
    return replace(
        defaults,
        stabilization_window_seconds=defaults.stabilization_window_seconds if window is None else window,
        select_policy=defaults.select_policy if source.select_policy is None else source.select_policy,
        policies=defaults.policies if source.policies is None else tuple(source.policies),
        tolerance=defaults.tolerance if source.tolerance is None else source.tolerance,
    )
