"""The local serving backend (DESIGN §4): model workers, a balancer with the simulator's
algorithms, health checks, draining, buffering while scaling from zero, and an admin API that
``tidal run`` drives. See ``docs/serving.md``.

Names are imported lazily: a worker process (``python -m tidal.serve.worker``) then loads only
what it needs, which keeps its cold start short.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tidal.serve.balancer import Balancer
    from tidal.serve.config import ServeConfig, load_serve_config, serve_config_from_dict
    from tidal.serve.stack import ServeStack

_EXPORTS = {
    "Balancer": "tidal.serve.balancer",
    "ServeConfig": "tidal.serve.config",
    "ServeStack": "tidal.serve.stack",
    "load_serve_config": "tidal.serve.config",
    "serve_config_from_dict": "tidal.serve.config",
}

__all__ = ["Balancer", "ServeConfig", "ServeStack", "load_serve_config", "serve_config_from_dict"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tidal.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
