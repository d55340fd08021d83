"""Kubernetes resource quantities (``500m``, ``2``, ``1.5Gi``, ``1e3``) as exact fractions.

The HPA works on ``Quantity.MilliValue()`` integers (rounded up) for targets and samples, and on
``AsApproximateFloat64()`` for tolerances. Parsing is exact (``Fraction``); only the final milli
rounding and the float conversion lose precision, as in Go.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exp>[+-]?\d+))?$"
)


@dataclass(frozen=True, slots=True)
class Quantity:
    """A parsed quantity: its exact value and the text it came from."""

    value: Fraction
    text: str

    @property
    def milli(self) -> int:
        """``MilliValue()``: the value in milli-units, rounded up."""
        return math.ceil(self.value * 1000)

    def as_float(self) -> float:
        """``AsApproximateFloat64()``."""
        return float(self.value)

    def sign(self) -> int:
        return (self.value > 0) - (self.value < 0)

    def __str__(self) -> str:
        return self.text


def parse_quantity(value: object) -> Quantity:
    """Parse a number or a Kubernetes quantity string; raise ``ValueError`` naming the forms."""
    if isinstance(value, Quantity):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a quantity such as 500m, 2, 1.5 or 512Mi, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite quantity, got {value!r}")
        # repr() is the shortest decimal that round-trips, so 0.1 means one tenth, as written.
        return Quantity(Fraction(repr(value)), repr(value))
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"expected a quantity such as 500m, 2, 1.5 or 512Mi, got {value!r}")
    number = Fraction(match.group("num"))
    if match.group("exp") is not None:
        number *= Fraction(10) ** int(match.group("exp"))
    else:
        number *= _SUFFIXES[match.group("suffix") or ""]
    return Quantity(number, text)
