"""``tidal serve`` settings: one pydantic model for the YAML file and the command-line flags.

Every field has a flag of the same name (``buffer_limit`` ↔ ``--buffer-limit``); flags override
the file. Unknown keys are errors naming the key; durations accept ``30s``, ``250ms``, ``2m``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tidal.config.fields import Duration
from tidal.config.errors import describe_validation_error
from tidal.config.loader import load_yaml
from tidal.core.errors import TidalInputError
from tidal.loadbalance import DEFAULT_WEIGHT

Algorithm = Literal[
    "round_robin", "weighted_round_robin", "random", "least_connections", "power_of_two", "consistent_hash",
]

#: Largest weighted-round-robin weight of one worker (the smallest is 1).
WEIGHT_MAX = 100

#: Where the CLI keeps the admin token and the trained model unless told otherwise.
DEFAULT_STATE_DIR = Path(".tidal")


class ServeConfig(BaseModel):
    """The balancer, its local worker pool and the workers it spawns."""

    # ``model_dir`` is a field name, not pydantic API: lift the "model_" namespace guard.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    # --- the balancer's listener and admin API
    host: str = Field("127.0.0.1", description="address to bind (loopback by default)")
    port: int = Field(8080, ge=0, le=65535, description="balancer port; 0 picks a free one")
    admin_token_file: Path | None = Field(
        DEFAULT_STATE_DIR / "admin-token",
        description="file holding the admin API bearer token; created (mode 0600) with a random "
        "token if missing; null keeps a random token in memory only",
    )
    # --- routing
    algorithm: Algorithm = Field("power_of_two", description="load-balancing algorithm")
    hash_replicas: int = Field(100, ge=1, le=10_000, description="virtual nodes per worker (consistent_hash)")
    seed: int | None = Field(None, description="seed of the random and power_of_two balancers")
    weight: int = Field(
        DEFAULT_WEIGHT, ge=1, le=WEIGHT_MAX,
        description="weighted_round_robin weight of each new worker (10 = the simulator's full-speed weight); "
        "POST /admin/replicas {add, weight} starts workers with another",
    )
    retries: int = Field(2, ge=0, le=10,
                         description="extra attempts of an idempotent request after a connection failure")
    request_timeout: Duration = Field(60.0, gt=0, description="limit on one proxied request to a worker")
    buffer_limit: int = Field(1000, ge=0, description="requests held while no worker is ready")
    buffer_timeout: Duration = Field(30.0, gt=0, description="a buffered request older than this gets 503")
    # --- the pool
    replicas: int = Field(1, ge=0, description="workers to start with")
    min: int = Field(0, ge=0, description="lowest worker count the admin API accepts")
    max: int = Field(8, ge=1, le=256, description="highest worker count the admin API accepts")
    health_interval: Duration = Field(0.5, gt=0, description="period of the /readyz probes")
    health_timeout: Duration = Field(1.0, gt=0, description="limit on one probe")
    unhealthy_threshold: int = Field(2, ge=1, description="failed probes in a row that eject a ready worker")
    start_timeout: Duration = Field(120.0, gt=0, description="a worker not ready by then (plus load_delay) is replaced")
    drain_timeout: Duration = Field(60.0, gt=0,
                                   description="a draining worker still busy after this is sent SIGTERM anyway")
    stats_window: Duration = Field(10.0, gt=0, description="window of the /admin/state stats")
    # --- the workers
    concurrency: int = Field(4, ge=1, le=10_000, description="requests one worker serves at once; more queue")
    load_delay: Duration = Field(0.0, ge=0, description="extra seconds of model loading (emulates a large model)")
    service_time: Duration = Field(0.0, ge=0,
                                  description="extra seconds each request holds a slot (emulates a heavier model)")
    model_dir: Path = Field(DEFAULT_STATE_DIR / "model", description="where the trained model is cached")

    @model_validator(mode="after")
    def _bounds(self) -> ServeConfig:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if not self.min <= self.replicas <= self.max:
            raise ValueError(f"replicas ({self.replicas}) must lie in [min, max] = [{self.min}, {self.max}]")
        return self


def serve_config_from_dict(data: Mapping[str, Any], source: str = "serve config") -> ServeConfig:
    """Validate a mapping (parsed YAML plus flags); errors name the field."""
    try:
        return ServeConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise TidalInputError(*describe_validation_error(exc, source)) from None


def load_serve_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ServeConfig:
    """Read a serve YAML file (optional) and apply ``overrides`` (flags given on the command line).

    Relative ``model_dir`` and ``admin_token_file`` in a file resolve against the file's folder,
    so a config works from any working directory.
    """
    data: dict[str, Any] = {}
    source = "serve config"
    if path is not None:
        path = Path(path)
        loaded = load_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise TidalInputError(str(path), "expected a mapping of serve settings at the top level")
        data.update(loaded)
        source = str(path)
        for key in ("model_dir", "admin_token_file"):
            value = data.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                data[key] = str(path.parent / value)
    data.update(overrides or {})
    return serve_config_from_dict(data, source)


def load_or_create_token(path: str | Path) -> str:
    """The admin token in ``path``; a missing file is created with a new random token (mode 0600)."""
    import os
    import secrets

    path = Path(path)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: never overwrite a token another process just wrote; 0600: a secret.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_token(path)
        except OSError as exc:
            raise TidalInputError("admin_token_file", f"cannot create {path}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        return token
    except (OSError, UnicodeDecodeError) as exc:
        raise TidalInputError("admin_token_file", f"cannot read {path}: {exc}") from None
    if not token:
        raise TidalInputError("admin_token_file", f"{path} is empty; put a token in it or delete it")
    if any(c.isspace() for c in token):
        raise TidalInputError("admin_token_file", f"{path}: the token must be one word")
    return token
