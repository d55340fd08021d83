"""Argument checks shared by the queueing formulas.

Every public function validates its inputs up front so that a bad figure fails loudly with the
parameter's name instead of surfacing later as a NaN, a negative wait or a silent infinite loop.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike, NDArray


def positive(name: str, value: float) -> float:
    """``value`` as a float, or ValueError unless it is a finite number > 0."""
    x = _real(name, value)
    if not (x > 0.0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return x


def non_negative(name: str, value: float) -> float:
    """``value`` as a float, or ValueError unless it is a finite number >= 0."""
    x = _real(name, value)
    if not (x >= 0.0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return x


def servers(name: str, value: int) -> int:
    """``value`` as an int, or ValueError unless it is a whole number >= 1."""
    if isinstance(value, bool):  # bool is an Integral; True servers is a bug, not 1 server
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(value, Integral):
        c = int(value)
    elif isinstance(value, Real) and float(value).is_integer():
        c = int(value)  # accept 4.0 from configs/arithmetic, but never round 4.5 silently
    else:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if c < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return c


def probability(name: str, value: float) -> float:
    """``value`` as a float, or ValueError unless it lies strictly inside (0, 1)."""
    x = _real(name, value)
    if not 0.0 < x < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return x


def times(name: str, value: ArrayLike) -> NDArray[np.float64]:
    """``value`` as a float array, or ValueError unless every element is >= 0 (inf allowed)."""
    t = np.asarray(value, dtype=np.float64)
    if np.any(np.isnan(t)) or np.any(t < 0.0):
        raise ValueError(f"{name} must be >= 0 (and not NaN), got {value!r}")
    return t


def stable(rho: float, what: str) -> None:
    """ValueError('unstable: ...') when the utilization ``rho`` is >= 1 (no steady state)."""
    if rho >= 1.0:
        raise ValueError(f"unstable: {what} = {rho:.6g} >= 1, the queue grows without bound")


def _real(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)
