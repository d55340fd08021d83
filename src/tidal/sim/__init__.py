"""The trace-driven, request-level simulator: compiled data plane, Python control plane."""

from tidal.sim.results import SimulationResult, Summary
from tidal.sim.simulator import Simulation, simulate

__all__ = ["Simulation", "SimulationResult", "Summary", "simulate"]
