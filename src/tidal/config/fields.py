"""Annotated pydantic field types for units: durations (``90s``) and rates (``120/s``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from tidal.core.units import parse_duration, parse_rate

#: Seconds; accepts numbers and strings such as ``90s``, ``5m``, ``2h``, ``250ms``.
Duration = Annotated[float, BeforeValidator(parse_duration)]
#: Per second; accepts numbers and strings such as ``120/s`` or ``600/min``.
Rate = Annotated[float, BeforeValidator(parse_rate)]
