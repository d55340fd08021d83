"""The routing random stream of the simulator's compiled data plane, in pure Python.

``tidal.sim.dataplane`` draws the random and power-of-two-choices picks from an xorshift64*
generator seeded by ``seed_state(seed)`` and mapped to ``[0, m)`` with Lemire's multiply-shift
(``_next_uniform``). :class:`XorShift64Star` is that generator bit for bit, so a live balancer
given the same seed draws the same indices as the simulator given the same candidate sets
(``tests/test_loadbalance.py`` feeds both the same sequences and compares every pick).
"""

from __future__ import annotations

import secrets

MASK64 = (1 << 64) - 1
#: Constants of ``tidal.sim.dataplane.seed_state`` and ``_next_uniform``.
_SEED_MUL = 0x9E3779B97F4A7C15
_SEED_ADD = 0x632BE59BD9B4E019
_STAR = 0x2545F4914F6CDD1D


def seed_state(seed: int) -> int:
    """The generator's initial state for ``seed`` (unsigned; the simulator stores the same bits in an int64)."""
    return ((seed * _SEED_MUL + _SEED_ADD) & MASK64) or 1


class XorShift64Star:
    """xorshift64* with Lemire's bounded draw: the simulator's routing stream.

    ``seed=None`` seeds from the operating system (a live balancer without a configured seed).
    """

    __slots__ = ("state",)

    def __init__(self, seed: int | None = None) -> None:
        self.state = seed_state(secrets.randbits(64) if seed is None else seed)

    def below(self, m: int) -> int:
        """A uniform integer in ``[0, m)`` (``1 <= m < 2**32``), advancing the stream by one step."""
        if not 1 <= m < 1 << 32:
            raise ValueError(f"bound must be in [1, 2**32), got {m}")
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & MASK64
        x ^= x >> 27
        self.state = x
        # The top 32 bits of the scrambled product, scaled to [0, m) without a division.
        bits = ((x * _STAR) & MASK64) >> 32
        return (bits * m) >> 32
