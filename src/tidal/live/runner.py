"""Run a controller from its config: dashboard up, loop until stopped, connections closed."""

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
                         on_start: Callable[[Controller, DashboardServer | None], None] | None = None) -> Controller:
    """Build the controller, serve its dashboard (if configured) and step until ``stop`` or ``steps``.

    ``dashboard_port`` overrides the config's port (0 picks a free one). ``on_start`` is called
    once everything listens (the CLI prints the dashboard address there).
    """
    controller = Controller.from_config(config, dry_run=dry_run)
    server: DashboardServer | None = None
    try:
        if config.dashboard is not None or dashboard_port is not None:
            spec = config.dashboard
            host = spec.host if spec is not None else "127.0.0.1"
            port = dashboard_port if dashboard_port is not None else spec.port  # type: ignore[union-attr]
            server = DashboardServer(controller, host, port)
            try:
                await server.start()
            except OSError as exc:  # typically: the port is taken
                server = None
                raise TidalInputError("dashboard.port", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        if on_start is not None:
            on_start(controller, server)
        await controller.run(steps=steps, stop=stop)
    finally:
        if server is not None:
            await server.stop()
        await controller.aclose()
    return controller
