"""What ``tidal load`` sends: one validated :class:`LoadSpec` for the CLI flags and Python callers.

A load is either **open loop** — requests leave at a workload's arrival times whatever the
server does (the simulator's workload block, or a constant Poisson ``rate``) — or **closed
loop** — ``clients`` connections each send their next request as soon as the previous answer
arrives (a max-throughput probe, like ``wrk``).

Targets must be loopback addresses unless ``allow_remote`` is set: a load generator aimed at the
wrong host is a denial-of-service tool.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tidal.config.fields import Duration
from tidal.config.errors import describe_validation_error
from tidal.config.scenario import WorkloadSpec
from tidal.core.errors import TidalInputError

#: The request body unless told otherwise: one random digit for the worker's MLP.
DEFAULT_BODY: dict[str, Any] = {"digits": 1}
KEY_HEADER = "X-Tidal-Key"
#: The workload kinds (pydantic puts the tag in error locations; they are dropped from paths).
_WORKLOAD_KINDS = frozenset(get_args(model.model_fields["kind"].annotation)[0]
                            for model in get_args(get_args(WorkloadSpec)[0]))


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a literal loopback address (no DNS lookup: names other than localhost fail)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoadSpec(BaseModel):
    """One load run. Exactly one of ``workload`` (open loop) and ``clients`` (closed loop)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="target URL; a bare host:port gets `path` appended")
    path: str = Field("/predict", description="request path used when `url` has none")
    method: Literal["GET", "POST", "PUT", "DELETE"] = "POST"
    body: Any = Field(default_factory=lambda: dict(DEFAULT_BODY), description="JSON body (null: none)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    keys: bool = Field(True, description="send each arrival's routing key in the X-Tidal-Key header")
    workload: WorkloadSpec | None = Field(None, description="open loop: the simulator's workload block")
    clients: int | None = Field(None, ge=1, le=100_000, description="closed loop: concurrent clients")
    duration: Duration | None = Field(None, gt=0, description="workload seconds to replay (default: the trace length)")
    seed: int = Field(0, ge=0, description="seed of the arrival process (the scenario's seed)")
    chunk: Duration = Field(60.0, gt=0, description="arrivals are generated this many workload seconds at a time")
    time_scale: float = Field(1.0, gt=0, description="wall seconds per workload second (0.5 = twice as fast)")
    max_requests: int | None = Field(None, ge=1, description="stop after sending this many")
    timeout: Duration = Field(10.0, gt=0, description="limit on one request, connecting included")
    connections: int = Field(256, ge=1, le=100_000, description="most requests in flight at once (a safety cap)")
    allow_remote: bool = Field(False, description="allow a target that is not a loopback address")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value

    @field_validator("body")
    @classmethod
    def _json_body(cls, value: Any) -> Any:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be JSON-serialisable: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> LoadSpec:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: expected http://HOST[:PORT][/PATH], got {self.url!r}")
        try:
            parts.port  # noqa: B018 — raises on a malformed port
        except ValueError:
            raise ValueError(f"url: bad port in {self.url!r}") from None
        if not self.allow_remote and not is_loopback_host(parts.hostname):
            raise ValueError(f"url: {parts.hostname} is not a loopback address; pass allow_remote "
                             "(--allow-remote) to load another host")
        if (self.workload is None) == (self.clients is None):
            raise ValueError("give exactly one of workload (open loop) and clients (closed loop)")
        if self.clients is not None and self.duration is None and self.max_requests is None:
            raise ValueError("duration: required for a closed loop without max_requests")
        return self

    @property
    def target(self) -> str:
        """The full request URL."""
        parts = urlsplit(self.url)
        if parts.path in ("", "/"):
            return f"{parts.scheme}://{parts.netloc}{self.path}" + (f"?{parts.query}" if parts.query else "")
        return self.url

    @property
    def open_loop(self) -> bool:
        return self.workload is not None

    def body_bytes(self) -> bytes | None:
        return None if self.body is None else json.dumps(self.body, separators=(",", ":")).encode()


def load_spec_from_dict(data: Mapping[str, Any], source: str = "load") -> LoadSpec:
    """Validate a mapping (flags or a Python caller's fields); errors name the field."""
    try:
        return LoadSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise TidalInputError(*describe_validation_error(exc, source, union_tags={"workload": _WORKLOAD_KINDS})) from None
