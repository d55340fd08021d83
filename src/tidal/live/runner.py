"""Run a controller from its config: dashboard and metrics server up, loop until stopped, connections closed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tidal.core.errors import TidalInputError
from tidal.live.config import ControllerConfig
from tidal.live.controller import Controller
from tidal.live.dashboard import DashboardServer

log = logging.getLogger(__name__)


async def run_controller(config: ControllerConfig, *, dry_run: bool | None = None, steps: int | None = None,
                         stop: asyncio.Event | None = None, dashboard_port: int | None = None,
                         on_start: Callable[[Controller, DashboardServer | None], None] | None = None,
                         servers: list[DashboardServer] | None = None) -> Controller:
    """Build the controller, serve its dashboard and metrics (if configured) and step until ``stop`` or ``steps``.

    ``dashboard_port`` overrides the config's port (0 picks a free one). The dashboard serves
    ``/metrics`` too; ``metrics_server`` serves ``/metrics`` (and ``/healthz``) on a port of its
    own, with or without the dashboard. ``on_start`` is called once everything listens (the CLI
    prints the dashboard address there); ``servers``, if given, receives every server started
    (tests read their ports).
    """
    controller = Controller.from_config(config, dry_run=dry_run)
    started: list[DashboardServer] = [] if servers is None else servers
    dashboard: DashboardServer | None = None
    try:
        if config.dashboard is not None or dashboard_port is not None:
            spec = config.dashboard
            host = spec.host if spec is not None else "127.0.0.1"
            port = dashboard_port if dashboard_port is not None else spec.port  # type: ignore[union-attr]
            dashboard = await _serve(DashboardServer(controller, host, port), "dashboard.port", started)
        if config.metrics_server is not None:
            ms = config.metrics_server
            await _serve(DashboardServer(controller, ms.host, ms.port, page=False), "metrics_server.port", started)
        if on_start is not None:
            on_start(controller, dashboard)
        await controller.run(steps=steps, stop=stop)
    finally:
        for server in started:
            await server.stop()
        await controller.aclose()
    return controller


async def _serve(server: DashboardServer, field: str, started: list[DashboardServer]) -> DashboardServer:
    """Start ``server``; a port that cannot be bound is an input error naming ``field``."""
    try:
        await server.start()
    except OSError as exc:  # typically: the port is taken
        await server.stop()
        raise TidalInputError(field, f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}") from None
    started.append(server)
    return server
