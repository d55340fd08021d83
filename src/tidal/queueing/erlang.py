"""Erlang B and Erlang C, computed by the numerically stable recursion.

The textbook formulas divide ``a**c / c!`` by a sum of such terms; both overflow long before
``c`` reaches the thousands. The recursion ``B(k) = a B(k-1) / (k + a B(k-1))`` only ever
handles numbers in [0, 1], so it is exact to rounding for any ``c`` and any load, and Erlang C
follows from Erlang B without cancellation even as the utilization approaches 1.
"""

from __future__ import annotations

from . import _checks


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of an M/M/c/c loss system (Erlang B).

    ``c`` servers, offered load ``a = λ/μ`` in Erlangs. O(c) time, stable for any ``c``.
    """
    c = _checks.servers("c", c)
    a = _checks.non_negative("a", a)
    return _erlang_b(c, a)


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (Erlang C).

    ``c`` servers, offered load ``a = λ/μ``. Raises ``ValueError("unstable: ...")`` when the
    utilization ``ρ = a/c`` is >= 1. Derived from Erlang B as ``C = B / (1 - ρ(1 - B))``,
    which stays accurate for ``c`` in the tens of thousands and ``ρ`` arbitrarily close to 1.
    """
    c = _checks.servers("c", c)
    a = _checks.non_negative("a", a)
    rho = a / c
    _checks.stable(rho, "utilization a/c")
    return erlang_c_from_b(_erlang_b(c, a), rho)


def _erlang_b(c: int, a: float) -> float:
    b = 1.0  # B(0): with no servers every arrival is lost
    for k in range(1, c + 1):
        b = erlang_b_step(b, k, a)
    return b


def erlang_b_step(b_prev: float, k: int, a: float) -> float:
    """One step of the recursion: B(k) from B(k-1). Sizing searches reuse it to walk up in c."""
    ab = a * b_prev
    return ab / (k + ab)


def erlang_c_from_b(b: float, rho: float) -> float:
    """Erlang C from Erlang B for the same ``c`` and ``a``, with ``ρ = a/c < 1``."""
    return b / (1.0 - rho * (1.0 - b))
