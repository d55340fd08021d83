"""Run the balancer in the foreground until SIGINT or SIGTERM (what ``tidal serve`` calls)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from tidal.serve.balancer import start_balancer
from tidal.serve.config import ServeConfig

log = logging.getLogger("tidal.serve")


async def run_server(config: ServeConfig, token: str, *, log_format: str = "text",
                     on_listening: Callable[[str], None] | None = None,
                     stop: asyncio.Event | None = None) -> None:
    """Serve until a signal (or ``stop``) arrives, then shut down gracefully.

    Shutdown order: stop listening, refuse buffered requests, let requests at workers finish,
    SIGTERM the workers (they drain), SIGKILL any that linger.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        _, runner, port = await start_balancer(config, token, log_format=log_format)
        try:
            if on_listening is not None:
                on_listening(f"http://{config.host}:{port}")
            await stop.wait()
            log.info("shutting down", extra={"event": "serve_shutdown"})
        finally:
            await runner.cleanup()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
