"""The controller file (``tidal run CONFIG.yaml``): YAML validated by pydantic, errors naming the field.

::

    policy: {name: target_utilization, target: 0.6}
    replicas: {min: 0, max: 8}
    sync_period: 2s
    metrics: {source: balancer, url: http://127.0.0.1:8080, token_file: admin.token}
    actuator: {kind: local, url: http://127.0.0.1:8080, token_file: admin.token}
    state_file: .tidal/controller.state.json
    fallback: {failure_threshold: 3, replicas: hold}
    dashboard: {port: 8090}          # the page, /api/history and /metrics
    metrics_server: {port: 9464}     # or just /metrics (and /healthz), without the page

Input files (``token_file``, ``kubeconfig``) resolve against the config file's folder; the
``state_file`` is an output and resolves against the working directory, like ``--out``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tidal.config.errors import describe_validation_error
from tidal.config.fields import Duration
from tidal.config.loader import load_yaml
from tidal.config.scenario import ControlSpec
from tidal.core.errors import TidalInputError
from tidal.core.types import METRIC_NAMES
from tidal.policy.registry import effective_control


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def http_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL with a host; else a ValueError saying what is wrong.

    Without this, ``localhost:9090`` (no scheme) would pass ``--check`` and then fail every scrape
    at run time — a controller holding its count forever instead of a one-line error at start.
    """
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}"
                         + (f" (did you mean 'http://{value}'?)" if "://" not in value else ""))
    try:
        parts.port  # noqa: B018 — raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    return value.strip()


#: A URL field of the controller file: checked by :func:`http_url`, kept as the string given.
HttpUrl = Annotated[str, AfterValidator(http_url)]


class ReplicaBounds(_Spec):
    """``replicas``: the controller never asks for fewer than ``min`` or more than ``max``."""

    min: int = Field(0, ge=0)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class BalancerSourceSpec(_Spec):
    """Metrics and pods from tidal's balancer admin API (``GET /admin/state``)."""

    source: Literal["balancer"]
    url: HttpUrl = "http://127.0.0.1:8080"
    token_file: Path | None = None
    timeout: Duration = Field(2.0, gt=0)


class PrometheusSourceSpec(_Spec):
    """Metrics from Prometheus' HTTP API: one PromQL instant query per tidal metric name."""

    source: Literal["prometheus"]
    url: HttpUrl
    queries: dict[str, str] = Field(min_length=1)
    token_file: Path | None = None
    timeout: Duration = Field(5.0, gt=0)

    @field_validator("queries")
    @classmethod
    def _known_names(cls, queries: dict[str, str]) -> dict[str, str]:
        for name, query in queries.items():
            if name not in METRIC_NAMES:
                raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRIC_NAMES)}")
            if not query.strip():
                raise ValueError(f"empty query for {name!r}")
        return queries


class LocalActuatorSpec(_Spec):
    """Scale tidal's local worker pool through the balancer admin API (``PUT /admin/replicas``)."""

    kind: Literal["local"]
    url: HttpUrl = "http://127.0.0.1:8080"
    token_file: Path | None = None
    timeout: Duration = Field(5.0, gt=0)


class KubernetesActuatorSpec(_Spec):
    """Scale a Deployment through its ``scale`` subresource (optimistic concurrency, 409 retried).

    Without ``kubeconfig`` the in-cluster service account is tried, then ``~/.kube/config``.
    """

    kind: Literal["kubernetes"]
    namespace: str = "default"
    deployment: str = Field(min_length=1)
    kubeconfig: Path | None = None
    context: str | None = None
    timeout: Duration = Field(5.0, gt=0)
    conflict_retries: int = Field(5, ge=0, description="re-reads after a 409 Conflict before giving up")
    pods: bool = Field(True, description="list the Deployment's pods for the observation")


class FallbackSpec(_Spec):
    """KEDA's fallback: after more than ``failure_threshold`` consecutive source failures, go to
    ``replicas`` (or ``hold`` the current count). Until then, and with ``hold``, the count is held."""

    failure_threshold: int = Field(3, ge=0)
    replicas: int | Literal["hold"] = "hold"
    behavior: Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"] = "static"

    @field_validator("replicas", mode="before")
    @classmethod
    def _count_or_hold(cls, value: Any) -> int | str:
        if value == "hold" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError(f"expected a replica count >= 0 or 'hold', got {value!r}")


class RetrySpec(_Spec):
    """Actuation retries: ``attempts`` tries, waiting ``backoff * 2**k`` (at most ``max_backoff``)."""

    attempts: int = Field(3, ge=1)
    backoff: Duration = Field(0.5, ge=0)
    max_backoff: Duration = Field(5.0, ge=0)


class DashboardSpec(_Spec):
    """The controller's page (``/``), its JSON (``/api/history``) and ``/metrics``."""

    port: int = Field(8090, ge=0, le=65535)
    host: str = "127.0.0.1"
    history: int = Field(3600, ge=10, description="decisions kept for the page")


class MetricsServerSpec(_Spec):
    """The controller's own Prometheus ``/metrics`` (and ``/healthz``), without the dashboard page."""

    port: int = Field(9464, ge=0, le=65535)
    host: str = "127.0.0.1"


MetricsSpec = Annotated[BalancerSourceSpec | PrometheusSourceSpec, Field(discriminator="source")]
ActuatorSpec = Annotated[LocalActuatorSpec | KubernetesActuatorSpec, Field(discriminator="kind")]


class ControllerConfig(_Spec):
    """A whole controller file. ``policy`` is the registry block shared with scenario files."""

    name: str = "controller"
    policy: dict[str, Any]
    replicas: ReplicaBounds
    sync_period: Duration | None = Field(
        None, gt=0, description="default: the policy's upstream cadence (kpa 2 s, ray_serve 1 s), else 15 s")
    metrics: MetricsSpec
    actuator: ActuatorSpec | None = None
    state_file: Path | None = None
    fallback: FallbackSpec = FallbackSpec()
    retry: RetrySpec = RetrySpec()
    dashboard: DashboardSpec | None = None
    metrics_server: MetricsServerSpec | None = None
    dry_run: bool = False

    @property
    def effective_sync_period(self) -> float:
        """The set ``sync_period``, else the policy's upstream cadence (as in the simulator)."""
        if self.sync_period is not None:
            return self.sync_period
        return effective_control(ControlSpec(), self.policy).sync

    @model_validator(mode="before")
    @classmethod
    def _default_actuator(cls, data: Any) -> Any:
        # The common local setup: the balancer both reports and scales, so one address is enough.
        if isinstance(data, Mapping) and data.get("actuator") is None:
            metrics = data.get("metrics")
            if isinstance(metrics, Mapping) and metrics.get("source") == "balancer":
                data = dict(data)
                data["actuator"] = {"kind": "local", **{k: metrics[k] for k in ("url", "token_file") if k in metrics}}
        return data

    @model_validator(mode="after")
    def _check(self) -> ControllerConfig:
        if self.actuator is None:
            raise ValueError("actuator: required unless metrics.source is balancer")
        fb = self.fallback.replicas
        if isinstance(fb, int) and not self.replicas.min <= fb <= self.replicas.max:
            raise ValueError(f"fallback.replicas: {fb} is outside replicas.min..max "
                             f"({self.replicas.min}..{self.replicas.max})")
        d, m = self.dashboard, self.metrics_server
        if d is not None and m is not None and d.port == m.port != 0 and d.host == m.host:
            raise ValueError(f"metrics_server.port: the dashboard already serves /metrics on port {d.port}; "
                             "drop metrics_server or give it another port")
        return self


def _describe(exc: ValidationError, source: str) -> TidalInputError:
    """First pydantic error as a :class:`TidalInputError` naming the field path."""
    return TidalInputError(*describe_validation_error(
        exc, source, union_tags={"metrics": {"balancer", "prometheus"}, "actuator": {"local", "kubernetes"}},
        tag_hints={"metrics": "balancer or prometheus", "actuator": "local or kubernetes"}))


def controller_config_from_dict(data: Mapping[str, Any], base_dir: str | Path | None = None,
                                source: str = "controller") -> ControllerConfig:
    """Validate a controller config mapping; relative input paths resolve against ``base_dir``."""
    if not isinstance(data, Mapping):
        raise TidalInputError(source, "expected a mapping of controller fields at the top level")
    try:
        config = ControllerConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise _describe(exc, source) from None
    # The policy block is checked by the registry, which names the field the same way.
    from tidal.policy import validate_policy_block

    try:
        validate_policy_block(config.policy)
    except TidalInputError as exc:
        raise TidalInputError(f"{source}: {exc.where}", exc.problem) from None
    if base_dir is not None:
        config = _resolve_inputs(config, Path(base_dir))
    return config


def load_controller_config(path: str | Path) -> ControllerConfig:
    """Load and validate ``tidal run``'s YAML file."""
    path = Path(path)
    return controller_config_from_dict(load_yaml(path), base_dir=path.parent, source=str(path))


def _resolve_inputs(config: ControllerConfig, base: Path) -> ControllerConfig:
    def resolve(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p).absolute()

    metrics = config.metrics.model_copy(update={"token_file": resolve(config.metrics.token_file)})
    actuator = config.actuator
    if isinstance(actuator, LocalActuatorSpec):
        actuator = actuator.model_copy(update={"token_file": resolve(actuator.token_file)})
    elif isinstance(actuator, KubernetesActuatorSpec):
        actuator = actuator.model_copy(update={"kubeconfig": resolve(actuator.kubeconfig)})
    return config.model_copy(update={"metrics": metrics, "actuator": actuator})


def read_token(path: Path | None, where: str) -> str | None:
    """The bearer token in ``path`` (whitespace stripped), or ``None`` without a file."""
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise TidalInputError(where, f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TidalInputError(where, f"cannot read {path}: {exc}") from None
    if not token:
        raise TidalInputError(where, f"{path} is empty")
    return token
