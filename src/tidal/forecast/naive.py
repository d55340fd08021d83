"""Seasonal naive: tomorrow at 14:00 looks like today at 14:00."""

from __future__ import annotations

from collections import deque
from typing import Any

from tidal.forecast.base import Forecaster


class SeasonalNaive(Forecaster):
    """Forecast ``ŷ_{t+h} = y_{t+h−m·k}`` with ``k`` the smallest whole number of seasons that
    reaches back into the data (the value one season before the target).

    Until a whole season of ``season_length`` buckets is in, it forecasts the last value.
    """

    kind = "seasonal_naive"

    def __init__(self, season_length: int, step_s: float = 1.0) -> None:
        super().__init__(step_s)
        if int(season_length) != season_length or season_length < 1:
            raise ValueError(f"season_length must be an integer >= 1, got {season_length!r}")
        self.m = int(season_length)
        self._values: deque[float] = deque(maxlen=self.m)

    @property
    def ready(self) -> bool:
        return len(self._values) == self.m

    def _structure(self) -> dict[str, Any]:
        return {"step_s": self.step_s, "season_length": self.m}

    def _observe(self, y: float) -> None:
        self._values.append(y)

    def _predict(self, h: int) -> float:
        # _values[0] is y_{t+1-m}, the value one season before step h=1.
        return self._values[(h - 1) % self.m]

    def _model_state(self) -> dict[str, Any]:
        return {"values": list(self._values)}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        self._values = deque((float(v) for v in state["values"]), maxlen=self.m)
