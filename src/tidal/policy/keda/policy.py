"""The ``keda`` policy: a KEDA ScaledObject and the HPA it generates, as one tidal policy.

Each ``decide`` call is one HPA sync (the HPA runs on the tidal sync period; Kubernetes' is
15 s). Every ``pollingInterval`` of observation time KEDA's scale loop runs first:

1. ``getScaledObjectState``: query every trigger (with fallback processing), combine activity
   (or the scaling-modifier composite metric) into ``isActive`` / ``isError``;
2. ``RequestScale``: the 0 <-> 1 / idle <-> min state machine and the cooldown. If it writes a
   replica count, that is this call's decision.

Otherwise the HPA KEDA generates sizes the target between ``max(1, minReplicaCount)`` and
``maxReplicaCount`` from the External metrics (``ceil(sum / target)`` for AverageValue),
stabilised and rate-limited: it is run by the shared Kubernetes HPA (:mod:`tidal.policy.hpa`,
through :mod:`tidal.policy.keda.hpa`). At zero replicas the HPA is disabled and only KEDA's
activation can bring the target back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.hpa.controller import ReconcileResult
from tidal.policy.keda.config import (
    PAUSED_SCALE_IN_ANNOTATION,
    PAUSED_SCALE_OUT_ANNOTATION,
    KedaConfig,
)
from tidal.policy.keda.executor import (
    SCALING_DISABLED,
    Condition,
    HPAStatus,
    ScaledObjectView,
    annotation_true,
    needs_pause,
    paused_replicas,
    request_scale,
)
from tidal.policy.keda.expr import compile_formula
from tidal.policy.keda.fallback import FallbackResult, FallbackSpec, Health, ModifiersView, get_metrics_with_fallback
from tidal.policy.keda.hpa import ExternalMetric, ExternalValue, GeneratedHPA, KedaMetricsSource, generated_behavior
from tidal.policy.keda.modifiers import COMPOSITE_METRIC_NAME, ModifierError, calculate_formula
from tidal.policy.keda.scalers import ScalerReading, ScalerSpec, read_scaler
from tidal.policy.registry import Cadence, register

_EPS = 1e-9


@dataclass(slots=True)
class _Query:
    """The external metrics of one query round, after fallback processing."""

    values: list[tuple[str, float]] = field(default_factory=list)  # (metric name, value)
    fallback_values: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    active_triggers: list[str] = field(default_factory=list)
    per_metric: dict[str, FallbackResult] = field(default_factory=dict)

    @property
    def fallback_active(self) -> bool:
        return bool(self.fallback_values)


class KedaPolicy(Policy):
    """KEDA ScaledObject semantics on top of an HPA with AverageValue/Value targets."""

    def __init__(self, config: KedaConfig) -> None:
        self.config = config
        self.scalers: list[ScalerSpec] = config.scalers()
        self.external = [s for s in self.scalers if not s.is_resource]
        self.resource = [s for s in self.scalers if s.is_resource]
        sm = config.advanced.scalingModifiers
        self.modifiers = ModifiersView(sm.in_use, sm.target, sm.effective_metric_type)
        self.activation_target = float(sm.activationTarget) if sm.activationTarget else 0.0
        self.formula = compile_formula(sm.formula, {s.trigger_name for s in self.external if s.trigger_name}) \
            if sm.formula else None
        # Metric -> trigger pairs for the formula (GetPairTriggerAndMetric).
        self.pairs = {s.metric_name: s.trigger_name for s in self.external} if sm.formula else {}
        fb = config.fallback
        self.fallback = FallbackSpec(fb.failureThreshold, fb.replicas, fb.behavior) if fb else None
        self.view = ScaledObjectView(
            min_replica_count=config.minReplicaCount,
            idle_replica_count=config.idleReplicaCount,
            max_replica_count=config.maxReplicaCount,
            cooldown_period=config.cooldownPeriod,
            initial_cooldown_period=config.initialCooldownPeriod,
            fallback_replicas=fb.replicas if fb else None,
            annotations=dict(config.annotations),
        )
        hpa_config = config.advanced.horizontalPodAutoscalerConfig
        behavior = generated_behavior(
            hpa_config.behavior if hpa_config else None,
            annotation_true(config.annotations, PAUSED_SCALE_IN_ANNOTATION),
            annotation_true(config.annotations, PAUSED_SCALE_OUT_ANNOTATION),
        )
        # With scaling modifiers, one composite metric replaces every External metric.
        if sm.in_use:
            self.hpa_external = [ExternalMetric(COMPOSITE_METRIC_NAME, self.modifiers.metric_type,
                                                float(self.modifiers.target))]
        else:
            self.hpa_external = [ExternalMetric(s.metric_name, s.metric_type, s.target) for s in self.external]
        self._hpa_spec = (config, self.resource, self.hpa_external, behavior)
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self._created: float | None = None
        self._last_poll: float | None = None
        self._last_active: float | None = None
        self._health: dict[str, Health] = {}
        self._cache: dict[str, ScalerReading] = {}
        self._conditions: dict[str, Condition] = {}
        self._fallback_condition: bool | None = None
        self._hpa = GeneratedHPA(*self._hpa_spec)
        self._hpa_status: HPAStatus | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "created": self._created,
            "last_poll": self._last_poll,
            "last_active": self._last_active,
            "health": {k: [h.failures, h.status] for k, h in self._health.items()},
            "cache": {k: [r.value, r.active, r.error] for k, r in self._cache.items()},
            "conditions": {k: [c.status, c.reason, c.message] for k, c in self._conditions.items()},
            "fallback_condition": self._fallback_condition,
            "hpa": self._hpa.state_dict(),
            "hpa_scaling_active": None if self._hpa_status is None or self._hpa_status.scaling_active is None
            else list(_condition_tuple(self._hpa_status.scaling_active)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset()
        if not state:
            return
        self._created = state.get("created")
        self._last_poll = state.get("last_poll")
        self._last_active = state.get("last_active")
        self._health = {k: Health(int(f), str(s)) for k, (f, s) in state.get("health", {}).items()}
        self._cache = {k: ScalerReading(v, bool(a), e) for k, (v, a, e) in state.get("cache", {}).items()}
        self._conditions = {k: Condition(*c) for k, c in state.get("conditions", {}).items()}
        self._fallback_condition = state.get("fallback_condition")
        self._hpa.load_state_dict(state.get("hpa", {}))
        scaling_active = state.get("hpa_scaling_active")
        self._hpa_status = None if scaling_active is None else HPAStatus(scaling_active=Condition(*scaling_active))

    @property
    def conditions(self) -> dict[str, Condition]:
        """The ScaledObject's conditions as KEDA would report them (read-only copy)."""
        return dict(self._conditions)

    @property
    def health(self) -> dict[str, Health]:
        """``status.health`` per external metric (read-only copy)."""
        return {k: Health(h.failures, h.status) for k, h in self._health.items()}

    def describe(self) -> str:
        triggers = ",".join(f"{s.source}/{s.target:g}" for s in self.scalers)
        return f"keda({triggers})"

    # ------------------------------------------------------------------ decide

    def decide(self, obs: Observation) -> Decision:
        now = obs.time
        if self._created is None:
            self._created = now  # the ScaledObject is created when the policy starts
        current = obs.replicas
        if needs_pause(self.view.annotations):
            # The controller pins the target to paused-replicas (or leaves it) and removes the HPA.
            self._conditions["Paused"] = Condition("True", "ScaledObjectPaused", "ScaledObject is paused")
            pinned = paused_replicas(self.view.annotations)
            return Decision(current if pinned is None else pinned, reason="keda: paused")
        if self._last_poll is None or now - self._last_poll >= self.config.pollingInterval - _EPS:
            self._last_poll = now
            decision = self._scale_loop(obs)
            if decision is not None:
                return decision
        return self._hpa_sync(obs)

    # ------------------------------------------------------------------ KEDA's scale loop

    def _scale_loop(self, obs: Observation) -> Decision | None:
        query = self._query(obs, polling=True)
        is_error = bool(query.errors)
        is_active = bool(query.active_triggers)
        active_triggers = list(query.active_triggers)
        if self.modifiers.in_use:
            # The composite decides activity; any trigger error resets it to inactive.
            is_active, active_triggers = False, []
            if not is_error:
                try:
                    composite = self._composite(query)
                except ModifierError:
                    composite = None
                if composite is not None and composite > self.activation_target:
                    is_active, active_triggers = True, ["ModifiersTrigger"]
        if not self.external and not is_error:
            is_active = True  # only cpu/memory triggers: never scale to zero
        result = request_scale(
            self.view, now=obs.time, current_replicas=obs.replicas, is_active=is_active, is_error=is_error,
            last_active_time=self._last_active, creation_time=self._created, active_triggers=active_triggers,
            hpa=self._hpa_status,
        )
        self._last_active = result.last_active_time
        self._conditions.update(result.conditions)
        if result.scale_to is None or result.scale_to == obs.replicas:
            return None
        if result.conditions["Active"].status == "True":
            why = f"keda: activated by {';'.join(active_triggers) or 'force-activation'}"
        elif result.scale_to > obs.replicas:
            why = "keda: inactive, raise to minReplicaCount"
        else:
            why = "keda: inactive for cooldownPeriod"
        return Decision(result.scale_to, reason=f"{why} ({obs.replicas} -> {result.scale_to})")

    def _query(self, obs: Observation, polling: bool) -> _Query:
        """Query the external triggers and run each metric through fallback processing.

        The polling loop always queries; an HPA request reuses the last polling tick's record
        for triggers with ``useCachedMetrics``.
        """
        out = _Query()
        for spec in self.external:
            reading = self._cache.get(spec.metric_name) if (not polling and spec.use_cached_metrics) else None
            if reading is None:
                reading = read_scaler(spec, obs.metrics)
                if polling and spec.use_cached_metrics:
                    self._cache[spec.metric_name] = reading
            result = get_metrics_with_fallback(
                metric_name=spec.metric_name,
                values=None if reading.value is None else [reading.value],
                error=reading.error,
                fallback=self.fallback,
                modifiers=self.modifiers,
                target_type=spec.metric_type,
                target_value=spec.target,
                health=self._health,
                current_replicas=obs.replicas,
                ready_replicas=obs.ready,
            )
            if result.condition is not None:
                self._fallback_condition = result.condition
            out.per_metric[spec.metric_name] = result
            if result.error is not None:
                out.errors.append(f"{spec.metric_name}: {result.error}")
                continue
            value = result.values[0] if result.values else 0.0
            out.values.append((spec.metric_name, value))
            if result.fallback_active:
                out.fallback_values.append(value)
            if reading.active or result.fallback_active:
                out.active_triggers.append(spec.trigger_name or spec.trigger_type)
        return out

    def _composite(self, query: _Query) -> float:
        if query.fallback_active:
            # A fallback (non-modifier behaviour) replaces the formula with its own value.
            return query.fallback_values[0]
        return calculate_formula(self.formula, query.values, self.pairs, self.fallback, self._health,
                                 self.modifiers.target)

    # ------------------------------------------------------------------ the HPA

    def _hpa_sync(self, obs: Observation) -> Decision:
        current = obs.replicas
        result, source = self._hpa.sync(obs, lambda: self._external_values(obs))
        if current == 0:
            # The generated HPA's minimum is at least 1, so zero replicas disable it.
            self._hpa_status = HPAStatus(scaling_active=Condition(
                "False", SCALING_DISABLED, "scaling is disabled since the replica count of the target is zero"))
            return Decision(0, reason="keda: at zero replicas, waiting for activation")
        if result.normalized is None and result.rescale:
            hpa = self._hpa.spec
            self._hpa_status = HPAStatus(scaling_active=Condition("True", "ValidMetricFound", ""))
            return Decision(result.desired_replicas,
                            reason=f"hpa: replica count outside [{hpa.min_replicas}, {hpa.max_replicas}]")
        notes = self._notes(result, source)
        if result.normalized is None:
            message = "; ".join(n for n in notes if "unavailable" in n) or "no metric available"
            self._hpa_status = HPAStatus(scaling_active=Condition(
                "False", "FailedGetExternalMetric", f"the HPA was unable to compute the replica count: {message}"))
            return Decision(current, reason=f"hpa: hold, {message}")
        self._hpa_status = HPAStatus(scaling_active=Condition("True", "ValidMetricFound", ""))
        desired = result.desired_replicas
        return Decision(desired, reason=f"hpa: {', '.join(notes)} -> {desired}")

    def _external_values(self, obs: Observation) -> dict[str, ExternalValue]:
        """KEDA's metrics server answering the HPA: one value (or error) per External metric."""
        query = self._query(obs, polling=False)
        if self.modifiers.in_use:
            return {COMPOSITE_METRIC_NAME: self._composite_value(query)}
        values: dict[str, ExternalValue] = {}
        for spec in self.external:
            result = query.per_metric[spec.metric_name]
            if result.error is not None:
                values[spec.metric_name] = ExternalValue(None, result.error)
            else:
                values[spec.metric_name] = ExternalValue(result.values[0] if result.values else 0.0)
        return values

    def _composite_value(self, query: _Query) -> ExternalValue:
        """The ``composite-metric``: a trigger error without fallback fails the request."""
        if query.errors and not query.fallback_active:
            return ExternalValue(None, "; ".join(query.errors))
        try:
            return ExternalValue(self._composite(query))
        except ModifierError as exc:
            return ExternalValue(None, str(exc))

    def _notes(self, result: ReconcileResult, source: KedaMetricsSource) -> list[str]:
        """Each metric's observation and proposal, for the decision's reason."""
        notes = []
        values = source.external_values
        for m in result.metrics:
            name = m.spec.name
            if m.proposal is None:
                notes.append(f"{name} unavailable ({m.error})")
            elif name in self._hpa.external:
                value = values[name].value
                notes.append(f"{name}={value:g}/{self._hpa.external[name].target:g}->{m.proposal.replicas}")
            elif m.proposal.utilization is not None:
                notes.append(f"{name}={m.proposal.utilization}%->{m.proposal.replicas}")
            else:
                notes.append(f"{name}={m.proposal.usage}m->{m.proposal.replicas}")
        return notes


def _condition_tuple(cond: Condition) -> tuple[str, str, str]:
    return cond.status, cond.reason, cond.message


register("keda", KedaConfig, "KEDA ScaledObject: activation 0<->1, cooldown, fallback, modifiers, HPA 1<->N",
         cadence=Cadence(15.0, 15.0, "its HPA syncs every 15 s; pollingInterval (30 s) is kept by the policy"))(
    KedaPolicy)
