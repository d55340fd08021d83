"""Run the whole serving stack from Python: :class:`ServeStack` (tests, notebooks, examples).

The balancer and its pool run on their own event loop in a background thread, so the caller may
be synchronous or run its own asyncio loop::

    with ServeStack(replicas=2, model_dir="/tmp/model") as stack:
        stack.wait_ready(2)
        requests.post(f"{stack.url}/predict", json={"digits": 4})
        stack.set_replicas(0)

or ``async with ServeStack(...) as stack:`` — the same object; start and stop happen in a worker
thread so the caller's loop is never blocked.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import web

from tidal.serve.balancer import Balancer, start_balancer
from tidal.serve.config import ServeConfig, serve_config_from_dict

T = TypeVar("T")


class ServeStack:
    """The balancer and its local workers in a background thread.

    ``config`` is a :class:`ServeConfig`; or pass its fields as keyword arguments (the defaults
    here differ from the CLI's in two ways that suit tests: ``port=0``, a free port, and no token
    file — the token is random, in memory, on :attr:`token`).
    """

    def __init__(self, config: ServeConfig | None = None, *, token: str | None = None,
                 python: str | None = None, **fields: Any) -> None:
        if config is None:
            config = serve_config_from_dict({"port": 0, "admin_token_file": None, **fields}, "ServeStack")
        elif fields:
            config = config.model_copy(update=fields)
        self.config = config
        self.token = token or secrets.token_urlsafe(24)
        self._python = python
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.balancer: Balancer | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the stack is not running")
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"{self.url}/admin"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30.0) -> ServeStack:
        """Bind the port and spawn the initial workers (does not wait for them to be ready)."""
        if self._thread is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        started: Future = Future()

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                try:
                    kwargs = {"python": self._python} if self._python else {}
                    self.balancer, self._runner, self.port = await start_balancer(self.config, self.token, **kwargs)
                except BaseException as exc:  # report to start(); the loop then ends
                    started.set_exception(exc)
                    return
                started.set_result(None)

            loop.run_until_complete(boot())
            if started.exception() is None:
                loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="tidal-serve", daemon=True)
        self._thread.start()
        try:
            started.result(timeout)
        except BaseException:
            self._thread.join(5.0)
            self._thread = None
            raise
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Finish requests in flight, stop every worker, then the balancer."""
        if timeout is None:
            timeout = self.config.request_timeout + 30.0
        if self._thread is None or self._loop is None:
            return
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            try:
                fut.result(timeout)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
        else:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None
        self._runner = None
        self.port = None

    def __enter__(self) -> ServeStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ServeStack:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # ------------------------------------------------------------------ helpers
    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the stack's loop (its objects are not thread-safe) and return its result."""
        if self._loop is None:
            raise RuntimeError("the stack is not running")

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    def state(self) -> dict[str, Any]:
        """The ``/admin/state`` document (read in-process)."""
        assert self.balancer is not None
        return self.call(self.balancer.state)

    def set_replicas(self, count: int) -> dict[str, Any]:
        """``PUT /admin/replicas`` over HTTP, as a controller would."""
        return self._admin("PUT", "/replicas", {"count": count})

    def _admin(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                     headers={**self.auth_headers, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
            return json.loads(resp.read())

    def wait_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0,
                   interval: float = 0.05) -> dict[str, Any]:
        """Poll the state until ``predicate(state)`` holds; raise ``TimeoutError`` with the last state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s; last state: {json.dumps(state)}")
            time.sleep(interval)

    def wait_ready(self, n: int, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until exactly ``n`` workers are ready and none is starting or draining."""
        return self.wait_until(
            lambda s: sum(r["state"] == "ready" for r in s["replicas"]) == n
            and all(r["state"] == "ready" for r in s["replicas"]), timeout)
