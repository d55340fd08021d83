"""The policy contract (DESIGN §2): ``decide(Observation) -> Decision`` plus resumable state.

A policy is pure decision logic: no I/O, no wall clock, deterministic given its inputs. It may
keep state (stabilisation history, forecaster state) inside the object, and exposes it as a
JSON-safe ``state_dict()`` so a restarted controller resumes instead of forgetting.
"""

from __future__ import annotations

import abc
from typing import Any

from tidal.core.types import Decision, Observation


class Policy(abc.ABC):
    """Base class of every scaling policy and behaviour wrapper."""

    #: Registry name, set by :func:`tidal.policy.registry.register`.
    name: str = ""

    @abc.abstractmethod
    def decide(self, obs: Observation) -> Decision:
        """Return the desired replica count for this observation."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe snapshot of the policy's internal state (empty for stateless policies)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot produced by :meth:`state_dict`."""
        if state:
            raise ValueError(f"policy {self.name!r} is stateless but got state keys {sorted(state)}")

    def describe(self) -> str:
        """One-line description for reports."""
        return self.name or type(self).__name__


class PolicyWrapper(Policy):
    """A behaviour that post-processes another policy's decision (Bounded, Stabilized, ...)."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), **self._own_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state.get("inner", {}))
        self._load_own_state(state)

    def _own_state(self) -> dict[str, Any]:
        return {}

    def _load_own_state(self, state: dict[str, Any]) -> None:
        return None

    def describe(self) -> str:
        return self.inner.describe()
