"""The forecaster interface shared by every online model, and the time bucketing they all use.

A forecaster sees a metric as irregular samples ``update(t, value)`` (a sample at ``t`` is the
metric's mean over the scrape window ending at ``t``, as tidal's metric sources report it). It
averages them into fixed buckets of ``step_s`` seconds aligned to multiples of ``step_s``
(bucket ``k`` covers ``((k-1)·step, k·step]``) and runs its recursion once per *complete* bucket.
Aligning buckets to absolute time keeps a season's phase tied to the clock.

Two faces of the same model:

- step-indexed: :meth:`Forecaster.observe` appends the next complete bucket's value and
  :meth:`Forecaster.predict` forecasts ``h`` buckets ahead — the textbook recursion, which tests
  compare with statsmodels;
- time-indexed: :meth:`Forecaster.update` and :meth:`Forecaster.forecast` (seconds ahead of the
  end of the last complete bucket, :attr:`Forecaster.time`).

Every forecaster is deterministic and exposes a JSON-safe ``state_dict()``.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import numpy as np

#: Slack for float round-off when a sample time is compared with a bucket boundary.
_TIME_EPS = 1e-9


def check_unit_interval(name: str, value: float, *, allow_zero: bool = True) -> float:
    """Validate a smoothing parameter in ``[0, 1]`` (or ``(0, 1]``); return it as a float."""
    value = float(value)
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (low_ok and value <= 1.0 and math.isfinite(value)):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {bound}, got {value!r}")
    return value


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


class Forecaster(abc.ABC):
    """An online, incremental univariate forecaster over fixed-width time buckets.

    Subclasses implement the recursion on complete buckets: :meth:`_observe`, :meth:`_predict`,
    :meth:`_model_state` / :meth:`_load_model_state`, and :attr:`ready`.
    """

    #: Name used in configs and state dicts (``ewma``, ``holt``, ...).
    kind: ClassVar[str] = ""

    def __init__(self, step_s: float = 1.0) -> None:
        step_s = float(step_s)
        if not (step_s > 0 and math.isfinite(step_s)):
            raise ValueError(f"step_s must be > 0, got {step_s!r}")
        self.step_s = step_s
        self._end: float | None = None  # end of the last complete bucket
        self._open_end: float | None = None  # end of the bucket being filled
        self._open_sum = 0.0
        self._open_count = 0
        self._last_t: float | None = None
        self._last_value: float | None = None  # value of the last complete bucket
        self.n_observed = 0

    # ------------------------------------------------------------------ model (subclasses)
    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """True once the model is initialised (before that, :meth:`predict` is naive)."""

    @abc.abstractmethod
    def _observe(self, y: float) -> None:
        """Run the recursion on one complete bucket."""

    @abc.abstractmethod
    def _predict(self, h: int) -> float:
        """The model's ``h``-step-ahead forecast (``h >= 1``); only called when :attr:`ready`."""

    @abc.abstractmethod
    def _model_state(self) -> dict[str, Any]:
        """JSON-safe model state."""

    @abc.abstractmethod
    def _load_model_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_model_state`."""

    def _anchor(self, end: float) -> None:
        """Called with the end time of the very first bucket :meth:`update` completes (before it
        is observed): lets a seasonal model with given initial states align its phase to the clock."""
        return None  # most models have no phase

    def _structure(self) -> dict[str, Any]:
        """Parameters that fix the state's shape; a state from a different structure is refused."""
        return {"step_s": self.step_s}

    # ------------------------------------------------------------------ step-indexed face
    def observe(self, value: float) -> None:
        """Append the next complete bucket's value (advances :attr:`time` by one step if set)."""
        self._push(value)
        if self._end is not None:
            self._end += self.step_s

    def _push(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"forecaster values must be finite, got {value!r}")
        self._observe(value)
        self._last_value = value
        self.n_observed += 1

    def predict(self, h: int = 1) -> float:
        """Forecast ``h >= 1`` buckets ahead; ``nan`` before any data.

        Before the model is initialised (e.g. Holt–Winters' first two seasons) the forecast is
        the last bucket's value (naive), so callers always get a usable number.
        """
        if h < 1:
            raise ValueError(f"forecast steps must be >= 1, got {h}")
        if self.ready:
            return float(self._predict(int(h)))
        return math.nan if self._last_value is None else self._last_value

    def path(self, h: int) -> np.ndarray:
        """Forecasts for steps ``1..h`` (``h >= 1``)."""
        return np.array([self.predict(k) for k in range(1, int(h) + 1)], dtype=float)

    # ------------------------------------------------------------------ time-indexed face
    @property
    def time(self) -> float | None:
        """End of the last complete bucket: the origin of :meth:`forecast`; ``None`` before one."""
        return self._end

    def steps_to(self, t: float) -> int:
        """Buckets from :attr:`time` to the bucket that contains time ``t`` (at least 1)."""
        if self._end is None:
            return 1
        return max(1, math.ceil((t - self._end) / self.step_s - _TIME_EPS))

    def forecast(self, horizon_s: float) -> float:
        """Forecast of the bucket ``horizon_s`` seconds after :attr:`time` (at least one step)."""
        if horizon_s < 0:
            raise ValueError(f"horizon_s must be >= 0, got {horizon_s!r}")
        return self.predict(max(1, math.ceil(horizon_s / self.step_s - _TIME_EPS)))

    def forecast_at(self, t: float) -> float:
        """Forecast of the bucket that contains absolute time ``t``."""
        return self.predict(self.steps_to(t))

    def update(self, t: float, value: float) -> list[tuple[float, float]]:
        """Add one sample taken at ``t``; return the buckets it completed as ``(end, mean)``.

        Samples must come in increasing time order. A bucket completes when a sample at or past
        its end arrives. Buckets that received no sample at all (a metrics gap) are filled with
        the previous bucket's value so that seasonal phase is kept; they are not returned.
        """
        t = float(t)
        value = float(value)
        if not (math.isfinite(t) and math.isfinite(value)):
            raise ValueError(f"samples must be finite, got t={t!r}, value={value!r}")
        if self._last_t is not None and t <= self._last_t:
            raise ValueError(f"samples must come in increasing time order: t={t:g} after t={self._last_t:g}")
        self._last_t = t
        end = math.ceil(t / self.step_s - _TIME_EPS) * self.step_s
        closed: list[tuple[float, float]] = []
        if self._open_end is not None and end > self._open_end + _TIME_EPS * self.step_s:
            closed.append(self._close())
        if self._open_end is None:
            if self._end is not None and self._last_value is not None:
                gaps = round((end - self._end) / self.step_s) - 1
                for _ in range(max(0, gaps)):
                    self.observe(self._last_value)
            self._open_end = end
        self._open_sum += value
        self._open_count += 1
        if t >= end - _TIME_EPS * self.step_s:
            closed.append(self._close())
        return closed

    def _close(self) -> tuple[float, float]:
        assert self._open_end is not None
        end = self._open_end
        mean = self._open_sum / self._open_count
        if self.n_observed == 0:
            self._anchor(end)
        self._push(mean)
        self._end = end
        self._open_end = None
        self._open_sum = 0.0
        self._open_count = 0
        return end, mean

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe snapshot: structure, bucketing and model state."""
        return {
            "kind": self.kind,
            "structure": self._structure(),
            "buckets": {
                "end": self._end,
                "open_end": self._open_end,
                "open_sum": self._open_sum,
                "open_count": self._open_count,
                "last_t": self._last_t,
                "last_value": self._last_value,
                "n_observed": self.n_observed,
            },
            "model": self._model_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuse a state of another kind or structure."""
        if state.get("kind") != self.kind:
            raise ValueError(f"state is for forecaster {state.get('kind')!r}, not {self.kind!r}")
        structure = self._structure()
        if state.get("structure") != structure:
            raise ValueError(f"state structure {state.get('structure')} does not match {structure}")
        b = state["buckets"]
        self._end = _opt_float(b["end"])
        self._open_end = _opt_float(b["open_end"])
        self._open_sum = float(b["open_sum"])
        self._open_count = int(b["open_count"])
        self._last_t = _opt_float(b["last_t"])
        self._last_value = _opt_float(b["last_value"])
        self.n_observed = int(b["n_observed"])
        self._load_model_state(state["model"])

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._structure().items())
        return f"{type(self).__name__}({params})"
