"""Capacity sizing on M/M/c: the fewest servers that meet a waiting-time or latency target.

Both targets improve monotonically with ``c``, and the Erlang B recursion that Erlang C needs
already walks ``k = 1, 2, ..., c``. So rather than exponential-then-binary search (which would
rerun the O(c) recursion at every probe) the search runs the recursion once up to the first
stable ``c`` and then steps upward one server at a time, reusing B(c - 1). The answer lies
within O(√a) of the offered load ``a`` (square-root staffing), so the whole search costs
O(a + √a) arithmetic, the same as one Erlang C evaluation. Each candidate is judged with the
exact same float operations :func:`~tidal.queueing.models.mmc` uses, so ``mmc(…, c)`` agrees
with the returned ``c`` bit for bit: ``c`` passes and ``c - 1`` fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from . import _checks
from .erlang import erlang_b_step, erlang_c_from_b
from .models import MMcMetrics, _mmc_from


def min_servers_for_wait(lam: float, mu: float, t: float, alpha: float) -> int:
    """Smallest ``c`` with P(Wq <= t) >= alpha in M/M/c (e.g. t=0.5, alpha=0.95)."""
    lam = _checks.positive("lam", lam)
    mu = _checks.positive("mu", mu)
    t = _checks.non_negative("t", t)
    alpha = _checks.probability("alpha", alpha)
    return _first(lam, mu, lambda m: float(m.wait_cdf(t)) >= alpha)


def min_servers_for_mean_response(lam: float, mu: float, target: float) -> int:
    """Smallest ``c`` with mean response W <= target in M/M/c; target must exceed 1/μ."""
    lam = _checks.positive("lam", lam)
    mu = _checks.positive("mu", mu)
    target = _checks.positive("target", target)
    if target <= 1.0 / mu:
        # W > 1/μ for every c, so no number of servers can meet it.
        raise ValueError(f"target must exceed the mean service time 1/mu = {1.0 / mu:.6g}, got {target!r}")
    return _first(lam, mu, lambda m: m.mean_response <= target)


def _first(lam: float, mu: float, ok: Callable[[MMcMetrics], bool]) -> int:
    for metrics in _stable_mmc(lam, mu):
        if ok(metrics):
            return metrics.servers
    raise AssertionError("unreachable: _stable_mmc is infinite")


def _stable_mmc(lam: float, mu: float) -> Iterator[MMcMetrics]:
    """M/M/c metrics for every stable c in increasing order, one recursion step apart."""
    a = lam / mu
    b, k = 1.0, 0
    c = math.floor(a) + 1  # first c with a/c < 1 (checked below against rounding anyway)
    while True:
        while k < c:
            k += 1
            b = erlang_b_step(b, k, a)
        rho = a / c
        if rho < 1.0:
            yield _mmc_from(lam, mu, c, erlang_c_from_b(b, rho))
        c += 1
