"""Surviving sources and actuators: KEDA-style fallback and bounded retries with backoff.

A metrics source that fails is *held* (the replica count stays where it is, as an HPA does when
its metric is unavailable) until more than ``failure_threshold`` consecutive failures; then the
fallback applies (KEDA ``pkg/fallback``: ``failures > failureThreshold``, so a threshold of 3
falls back on the 4th failed poll). One success resets the count.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from tidal.core.errors import TidalInputError

log = logging.getLogger(__name__)

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


class SourceError(Exception):
    """A metrics source could not produce a scrape (down, timed out, refused, bad answer)."""


class ActuationError(Exception):
    """An actuator could not set the replica count."""


class AuthError(TidalInputError):
    """An API refused the controller's credentials (HTTP 401 or 403).

    Not a transient fault: the same token will be refused on every poll, so holding would hide
    a configuration mistake forever. It stops the controller instead; ``tidal run`` prints the
    message (naming the token setting) and exits with status 2. Never retried.
    """


@dataclass(frozen=True, slots=True)
class Backoff:
    """Bounded retries: ``attempts`` tries, waiting ``base * factor**k`` (capped) in between."""

    attempts: int = 3
    base: float = 0.5
    factor: float = 2.0
    cap: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.factor < 1 or self.cap < 0:
            raise ValueError(f"invalid backoff {self}")

    def delays(self) -> list[float]:
        """The waits between consecutive attempts (``attempts - 1`` of them)."""
        return [min(self.cap, self.base * self.factor**k) for k in range(self.attempts - 1)]


async def retry(fn: Callable[[], Awaitable[T]], backoff: Backoff, sleep: Sleep,
                on_error: Callable[[int, BaseException], None] | None = None,
                retry_on: tuple[type[BaseException], ...] = (Exception,)) -> T:
    """Call ``fn`` until it succeeds or ``backoff.attempts`` are spent; re-raise the last error.

    ``on_error(attempt, exc)`` is told of every failed attempt (for counters and logs); errors
    that are not ``retry_on`` are re-raised at once, and so are configuration errors
    (:class:`~tidal.core.errors.TidalInputError`, such as :class:`AuthError`), which no
    retry can fix.
    """
    delays = backoff.delays()
    for attempt in range(backoff.attempts):
        try:
            return await fn()
        except Exception as exc:  # noqa: BLE001 — any failure of an external system may be retried
            if on_error is not None:
                on_error(attempt + 1, exc)
            if attempt >= len(delays) or not isinstance(exc, retry_on) or isinstance(exc, TidalInputError):
                raise
            await sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


FallbackBehavior = Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"]


@dataclass(frozen=True, slots=True)
class FallbackRule:
    """``fallback`` of a controller file: ``replicas=None`` means hold."""

    failure_threshold: int = 3
    replicas: int | None = None
    behavior: FallbackBehavior = "static"


@dataclass(frozen=True, slots=True)
class Fallback:
    """What to do on a failed scrape: ``replicas`` (``None``: hold), ``mode`` and a reason."""

    replicas: int | None
    mode: Literal["hold", "fallback"]
    reason: str


def on_source_failure(rule: FallbackRule, failures: int, current: int | None, error: str) -> Fallback:
    """The action after ``failures`` consecutive failed scrapes (this one included)."""
    if rule.replicas is None or failures <= rule.failure_threshold:
        why = "fallback is hold" if rule.replicas is None else f"threshold {rule.failure_threshold}"
        return Fallback(current, "hold", f"metrics source failed ({failures} in a row, {why}): hold; {error}")
    if rule.behavior == "static":
        target: int | None = rule.replicas
    elif current is None:
        # KEDA returns the error when it cannot read the current count: the HPA holds.
        return Fallback(None, "hold", f"metrics source failed ({failures} in a row); current replicas unknown: hold")
    elif rule.behavior == "currentReplicas":
        target = current
    elif rule.behavior == "currentReplicasIfHigher":
        target = max(current, rule.replicas)
    else:
        target = min(current, rule.replicas)
    return Fallback(target, "fallback", f"metrics source failed {failures} times in a row "
                    f"(> failure_threshold {rule.failure_threshold}): fallback to {target} ({rule.behavior}); {error}")
