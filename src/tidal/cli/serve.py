"""``tidal serve``: the local serving stack — a balancer and its pool of model workers."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from tidal.core.errors import TidalInputError

#: Flags that map one to one onto :class:`tidal.serve.config.ServeConfig` fields.
_FIELD_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("host", str, "address to bind (default 127.0.0.1)"),
    ("port", int, "balancer port (default 8080; 0 picks a free one)"),
    ("admin_token_file", Path, "admin token file, created if missing (default .tidal/admin-token)"),
    ("algorithm", str, "round_robin, weighted_round_robin, random, least_connections, power_of_two "
                       "(default) or consistent_hash"),
    ("replicas", int, "workers to start with (default 1)"),
    ("min", int, "lowest worker count the admin API accepts (default 0)"),
    ("max", int, "highest worker count the admin API accepts (default 8)"),
    ("concurrency", int, "requests one worker serves at once (default 4)"),
    ("buffer_limit", int, "requests held while no worker is ready (default 1000)"),
    ("buffer_timeout", str, "longest wait in that buffer, e.g. 30s (default)"),
    ("load_delay", str, "extra model-loading time per worker start, e.g. 5s (default 0)"),
    ("service_time", str, "extra time each request holds a worker slot, e.g. 50ms (default 0)"),
    ("model_dir", Path, "where the trained model is cached (default .tidal/model)"),
    ("retries", int, "extra attempts of idempotent requests on connection failure (default 2)"),
    ("seed", int, "seed of the random and power_of_two balancers"),
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the local serving stack: load balancer, model workers and admin API",
        description="Serve a digits model from local worker processes behind tidal's load balancer. "
                    "Flags override the config file. Scale with the admin API (tidal run drives it).",
    )
    p.add_argument("config", type=Path, nargs="?", help="serve config YAML (optional)")
    for name, typ, help_text in _FIELD_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_text)
    p.add_argument("--log-format", choices=["text", "json"], default="text", help="log lines as text or JSON")
    p.set_defaults(handler=run_serve)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as flags (``None`` means not given)."""
    out: dict[str, Any] = {}
    for name, _, _ in _FIELD_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            out[name] = str(value) if isinstance(value, Path) else value
    return out


def run_serve(args: argparse.Namespace) -> int:
    from tidal.cli.main import console
    from tidal.serve.config import load_or_create_token, load_serve_config
    from tidal.serve.logs import configure_logging
    from tidal.serve.server import run_server

    config = load_serve_config(args.config, overrides_from_args(args))
    if config.admin_token_file is not None:
        token = load_or_create_token(config.admin_token_file)
        where = f"admin token in {config.admin_token_file}"
    else:
        import secrets

        token = secrets.token_urlsafe(32)
        console.print(f"admin token (this run only): {token}", highlight=False)
        where = "admin token printed above"
    configure_logging(args.log_format, logging.DEBUG if getattr(args, "verbose", 0) >= 2 else logging.INFO)

    def listening(url: str) -> None:
        console.print(f"[green]serving[/] {url}/predict  ({config.replicas} worker(s), {config.algorithm}; "
                      f"{where}; metrics at {url}/metrics)", highlight=False, soft_wrap=True)

    try:
        asyncio.run(run_server(config, token, log_format=args.log_format, on_listening=listening))
    except OSError as exc:
        # Almost always "address already in use" or a host that is not local.
        problem = f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        raise TidalInputError("--port", problem) from None
    return 0
