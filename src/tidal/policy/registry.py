"""One registry builds every policy from a plain config block (dict or YAML).

The same block works in a scenario file and in a live controller config::

    policy:
      name: target_utilization
      target: 0.6
      stabilization: {down_window: 5m}

``name`` picks the policy; the remaining keys are validated by the policy's pydantic model
(unknown keys are errors). ``stabilization`` is a behaviour any policy accepts.

A policy that reimplements a system may register that system's :class:`Cadence` (Knative
decides every 2 s on 1 s scrapes, the HPA syncs every 15 s). A scenario or controller that does
not set ``sync_period``/``scrape_interval`` runs the policy at that cadence
(:func:`effective_control`), so "select kpa" means "run it the way Knative does".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tidal.config.errors import describe_validation_error
from tidal.config.fields import Duration
from tidal.config.scenario import ControlSpec, periods_nest
from tidal.core.errors import TidalInputError
from tidal.policy.base import Policy
from tidal.policy.behaviors import Bounded, Stabilized


class PolicyConfig(BaseModel):
    """Base of every policy's parameter model: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StabilizationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    up_window: Duration = Field(0.0, ge=0)
    down_window: Duration = Field(300.0, ge=0)


ConfigT = TypeVar("ConfigT", bound=PolicyConfig)


#: Decision period of a policy that names no cadence of its own (the HPA's, Kubernetes' default).
DEFAULT_SYNC_PERIOD = 15.0


@dataclass(frozen=True)
class Cadence:
    """How often the system a policy reimplements decides, and how often its metrics are scraped.

    ``scrape_interval`` None means once per decision.
    """

    sync_period: float
    scrape_interval: float | None = None
    source: str = ""  # where upstream sets it, for docs and reports

    def __post_init__(self) -> None:
        if self.sync_period <= 0 or (self.scrape_interval is not None and self.scrape_interval <= 0):
            raise ValueError(f"cadence periods must be > 0, got {self}")


@dataclass(frozen=True)
class PolicyEntry:
    name: str
    config_model: type[PolicyConfig]
    factory: Callable[[Any], Policy]
    summary: str
    cadence: Cadence | None = None


_REGISTRY: dict[str, PolicyEntry] = {}


def register(name: str, config_model: type[ConfigT], summary: str = "", cadence: Cadence | None = None) -> Callable:
    """Class/function decorator: make ``factory(config) -> Policy`` buildable as ``name``.

    ``cadence`` is the upstream system's decision/scrape timing, used when a scenario leaves it unset.
    """

    def decorate(factory: Callable[[ConfigT], Policy]) -> Callable[[ConfigT], Policy]:
        if name in _REGISTRY:
            raise ValueError(f"policy {name!r} registered twice")
        summary_line = summary or (factory.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = PolicyEntry(name, config_model, factory, summary_line, cadence)
        if isinstance(factory, type) and issubclass(factory, Policy) and not factory.__dict__.get("name"):
            # A policy class built directly (not through build_policy) still knows its registry
            # name, which the simulator and the controller use to find its cadence.
            factory.name = name
        return factory

    return decorate


def policy_cadence(block: Mapping[str, Any] | str) -> Cadence | None:
    """The registered upstream cadence of a policy (by name or block); None if it has none."""
    name = block if isinstance(block, str) else block.get("name")
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    return None if entry is None else entry.cadence


def effective_control(control: ControlSpec, policy: Mapping[str, Any] | str) -> ControlSpec:
    """``control`` with an unset sync period / scrape interval filled from the policy's cadence.

    Set values always win (a user may run every policy at one cadence on purpose); the cadence's
    scrape interval applies only with its own sync period. Without a registered cadence the sync
    period is :data:`DEFAULT_SYNC_PERIOD` and the scrape interval the sync period. With only a
    scrape interval set, a sync period it neither divides nor is a multiple of becomes the
    scrape interval (so every policy of a comparison runs on that scrape).
    """
    if control.sync_period is not None and control.scrape_interval is not None:
        return control
    cadence = policy_cadence(policy)
    sync = control.sync_period
    scrape = control.scrape_interval
    if sync is None:
        sync = cadence.sync_period if cadence is not None else DEFAULT_SYNC_PERIOD
        if scrape is None and cadence is not None:
            scrape = cadence.scrape_interval
        elif scrape is not None and not periods_nest(sync, scrape):
            sync = scrape
    return control.model_copy(update={"sync_period": sync, "scrape_interval": sync if scrape is None else scrape})


def available_policies() -> dict[str, PolicyEntry]:
    """Registered policies by name (importing :mod:`tidal.policy` registers the built-ins)."""
    return dict(sorted(_REGISTRY.items()))


def validate_policy_block(block: Mapping[str, Any], where: str = "policy") -> tuple[str, PolicyConfig, StabilizationConfig | None]:
    """Validate a policy block; raise :class:`TidalInputError` naming the field on bad input."""
    if not isinstance(block, Mapping):
        raise TidalInputError(where, f"expected a mapping with a 'name' key, got {type(block).__name__}")
    params = dict(block)
    name = params.pop("name", None)
    if name is None:
        raise TidalInputError(f"{where}.name", f"missing; choose one of {', '.join(available_policies())}")
    entry = _REGISTRY.get(name)
    if entry is None:
        raise TidalInputError(f"{where}.name", f"unknown policy {name!r}; choose one of {', '.join(available_policies())}")
    stabilization_block = params.pop("stabilization", None)
    try:
        config = entry.config_model.model_validate(params)
    except ValidationError as exc:
        raise TidalInputError(*_first_error(exc, where)) from None
    try:
        stabilization = None if stabilization_block is None else StabilizationConfig.model_validate(stabilization_block)
    except ValidationError as exc:
        raise TidalInputError(*_first_error(exc, f"{where}.stabilization")) from None
    return name, config, stabilization


def build_policy(block: Mapping[str, Any], min_replicas: int | None = None, max_replicas: int | None = None, where: str = "policy") -> Policy:
    """Build a policy (wrapped in its behaviours and, given bounds, in :class:`Bounded`)."""
    name, config, stabilization = validate_policy_block(block, where)
    policy = _REGISTRY[name].factory(config)
    policy.name = name
    if stabilization is not None:
        policy = Stabilized(policy, stabilization.up_window, stabilization.down_window)
    if min_replicas is not None and max_replicas is not None:
        policy = Bounded(policy, min_replicas, max_replicas)
    return policy


def _first_error(exc: ValidationError, where: str) -> tuple[str, str]:
    path, message = describe_validation_error(exc, "")
    return (where if path == "(top level)" else f"{where}.{path}"), message
