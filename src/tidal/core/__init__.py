"""Core value types shared by every layer: units, observations, decisions, errors."""

from tidal.core.errors import TidalInputError
from tidal.core.types import Decision, MetricsWindow, Observation, PodSample

__all__ = ["Decision", "MetricsWindow", "Observation", "PodSample", "TidalInputError"]
