"""tidal: elastic scaling for AI services.

One library of scaling policies that runs in a fast trace-driven simulator and in a live
controller. See ``docs/concepts.md`` for the map.
"""

__version__ = "0.1.0"
