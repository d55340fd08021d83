"""A small aiohttp JSON client shared by the sources and actuators (one session per client).

The session is created lazily inside the running event loop and closed by :meth:`aclose`.
Every failure — refused connection, timeout, non-2xx status, body that is not JSON — becomes
``error_type`` with a one-line message, so the controller can count and survive it; except
401 and 403, which become :class:`~tidal.live.faults.AuthError` naming the token setting
(``auth_field``): a wrong or missing token is a configuration error, not an outage.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tidal.live.faults import AuthError


class JsonClient:
    """JSON over HTTP to one base URL, with an optional bearer token."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 5.0,
                 error_type: type[Exception] = RuntimeError, auth_field: str = "token_file",
                 auth_hint: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.error_type = error_type
        #: The config setting that holds the token, named in an :class:`AuthError`.
        self.auth_field = auth_field
        self.auth_hint = auth_hint
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        """``method path`` and the decoded JSON answer; raises ``error_type`` on any failure."""
        if self._session is None or self._session.closed:
            # trust_env=False: a controller talks to the address it was given, never via a proxy.
            self._session = aiohttp.ClientSession(timeout=self.timeout, trust_env=False)
        url = f"{self.base_url}{path}"
        try:
            async with self._session.request(method, url, json=json, params=params, headers=self._headers()) as resp:
                text = await resp.text()
                if resp.status in (401, 403):
                    given = "no token was sent" if not self.token else "the token was refused"
                    raise AuthError(self.auth_field, f"{method} {url} answered HTTP {resp.status} ({given}); "
                                    f"{self.auth_hint or 'set it to a file holding a token that server accepts'}")
                if resp.status >= 400:
                    raise self.error_type(f"{method} {url}: HTTP {resp.status} {text[:200].strip()}")
                try:
                    return await resp.json(content_type=None)
                except ValueError:
                    raise self.error_type(f"{method} {url}: answer is not JSON: {text[:200]!r}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self.error_type(f"{method} {url}: {type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
