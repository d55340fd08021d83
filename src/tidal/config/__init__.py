"""Validated specifications (pydantic): scenario files and their parts."""

from tidal.config.fields import Duration, Rate
from tidal.config.loader import load_scenario, scenario_from_dict
from tidal.config.scenario import Scenario

__all__ = ["Duration", "Rate", "Scenario", "load_scenario", "scenario_from_dict"]
