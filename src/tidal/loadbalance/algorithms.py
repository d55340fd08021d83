"""Load-balancing algorithms as small pure-Python classes: ``pick(candidates, key) -> candidate``.

Each balancer chooses one of the *routable* candidates it is handed (the caller has already
removed replicas that are starting, draining or ejected). A candidate is any object with an
``id`` (str or int), an ``in_flight`` count (requests sent to it and not yet answered, as the
balancer counts them) and a ``weight`` (relative capacity, for weighted round robin).

These are the algorithms of the simulator's compiled data plane, one for one:

==========================  =============================================================
name                        simulator counterpart (``tidal.sim.dataplane``)
==========================  =============================================================
``round_robin``             ``RR``: ``candidates[counter % m]``, counter += 1
``weighted_round_robin``    ``WRR``: ``_build_wrr`` (nginx smooth WRR schedule), indexed by
                            the same counter; rebuilt when the set or a weight changes
``random``                  ``RANDOM``: uniform index from the simulator's xorshift64*
                            stream (:mod:`.rng`); the same seed draws the same indices
``least_connections``       ``LEAST``: fewest in flight, ties to the earliest candidate
``power_of_two``            ``P2C``: two distinct uniform picks from that stream, fewer in
                            flight wins, ties to the first
``consistent_hash``         ``HASH``: ``_build_ring`` / ``_ring_lookup``; with integer ids
                            and keys the owners are identical (see :mod:`.hashing`)
==========================  =============================================================

The simulator keeps its compiled versions because it routes millions of requests per second of
wall time over preallocated arrays; these classes serve the live balancer, where a pick happens
once per real HTTP request. ``tests/test_loadbalance.py`` feeds both the same candidate sets,
in-flight counts, weights, keys and seed, and checks that every pick agrees.

As in the simulator, a lone candidate is taken without touching the state: the round-robin
counter does not advance and no random number is drawn.

No I/O, no clock: the only state is a counter, a seeded random stream, and caches of the hash
ring or WRR schedule keyed by the candidate set.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, get_args

from tidal.config.scenario import LoadBalancerSpec
from tidal.loadbalance.hashing import point_hash, vnode_hash
from tidal.loadbalance.rng import XorShift64Star

#: Weight of a replica at full speed (the simulator's ``WRR_WEIGHT_SCALE``).
DEFAULT_WEIGHT = 10
#: Virtual nodes per replica on the hash ring (the scenario's ``load_balancer.hash_replicas``).
DEFAULT_VNODES = 100


class Candidate(Protocol):
    """What a balancer needs to know about a replica."""

    @property
    def id(self) -> int | str: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def weight(self) -> int: ...


C = TypeVar("C", bound=Candidate)


@dataclass(frozen=True)
class Backend:
    """A plain candidate value (tests, and callers without their own replica objects)."""

    id: int | str
    in_flight: int = 0
    weight: int = DEFAULT_WEIGHT


class Balancer:
    """Base class: choose one of a non-empty sequence of candidates."""

    name = "balancer"

    def pick(self, candidates: Sequence[C], key: int | str | bytes | None = None) -> C:
        """Return the candidate that should take the next request (``key`` only matters for hashing)."""
        if not candidates:
            raise ValueError("no routable replica to pick from")
        return candidates[self._index(candidates, key)]

    def _index(self, candidates: Sequence[Candidate], key: int | str | bytes | None) -> int:
        raise NotImplementedError


class RoundRobin(Balancer):
    """Each candidate in turn; a change of the set just continues the counter (as in the simulator,
    which also leaves the counter alone when there is only one candidate)."""

    name = "round_robin"

    def __init__(self) -> None:
        self.counter = 0

    def _index(self, candidates, key):
        if len(candidates) == 1:
            return 0
        i = self.counter % len(candidates)
        self.counter += 1
        return i


class RandomChoice(Balancer):
    """A uniformly random candidate, drawn from the simulator's routing stream."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = XorShift64Star(seed)

    def _index(self, candidates, key):
        m = len(candidates)
        return 0 if m == 1 else self.rng.below(m)


class LeastConnections(Balancer):
    """The candidate with the fewest requests in flight; ties go to the earliest in the sequence."""

    name = "least_connections"

    def _index(self, candidates, key):
        best = 0
        for i in range(1, len(candidates)):
            if candidates[i].in_flight < candidates[best].in_flight:
                best = i
        return best


class PowerOfTwo(Balancer):
    """Power of two choices: sample two distinct candidates, keep the one with fewer in flight.

    Nearly as good as least connections at spreading load, without reading every replica's
    count (Mitzenmacher, 2001); ties keep the first sample so equal loads do not bias an order.
    """

    name = "power_of_two"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = XorShift64Star(seed)

    def _index(self, candidates, key):
        m = len(candidates)
        if m == 1:
            return 0
        i = self.rng.below(m)
        j = self.rng.below(m - 1)
        if j >= i:
            j += 1  # a second, distinct candidate without rejection sampling
        return j if candidates[j].in_flight < candidates[i].in_flight else i


def smooth_wrr_schedule(weights: Sequence[int]) -> list[int]:
    """nginx's smooth weighted round robin as one full period of candidate indices.

    Every step adds each weight to its candidate's running score, picks the highest score
    (ties to the earliest) and subtracts the total from it. A period has ``sum(weights)`` picks,
    candidate ``i`` appearing ``weights[i]`` times, interleaved rather than in runs — the
    same order as the simulator's ``_build_wrr``.
    """
    if any(w < 1 for w in weights):
        raise ValueError(f"weights must be positive integers, got {list(weights)}")
    total = sum(weights)
    current = [0] * len(weights)
    order: list[int] = []
    for _ in range(total):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        order.append(best)
    return order


class WeightedRoundRobin(Balancer):
    """Smooth weighted round robin over the candidates' ``weight``.

    The schedule is rebuilt when the set of ids or their weights change and indexed by a
    counter that carries on across rebuilds (and stays put for a lone candidate), exactly like
    the simulator.
    """

    name = "weighted_round_robin"

    def __init__(self) -> None:
        self.counter = 0
        self._signature: tuple[tuple[Hashable, int], ...] | None = None
        self._schedule: list[int] = []

    def _index(self, candidates, key):
        if len(candidates) == 1:
            return 0
        signature = tuple((c.id, int(c.weight)) for c in candidates)
        if signature != self._signature:
            weights = [w for _, w in signature]
            # Weights with a common factor k give the same order k times over (every score is k
            # times larger, every comparison the same), so the reduced period indexed by the same
            # counter picks exactly what the simulator's full one does, in 1/k of the memory.
            k = math.gcd(*weights) if all(w >= 1 for w in weights) else 1
            self._schedule = smooth_wrr_schedule([w // k for w in weights])
            self._signature = signature
        i = self._schedule[self.counter % len(self._schedule)]
        self.counter += 1
        return i


class HashRing:
    """A consistent-hash ring with ``vnodes`` virtual nodes per replica id.

    Removing a replica moves only the keys it owned; adding one takes about ``1/n`` of the keys.
    Lookup is a binary search: O(log(n * vnodes)).
    """

    def __init__(self, ids: Sequence[int | str], vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        if len(set(ids)) != len(ids):
            raise ValueError("replica ids on a hash ring must be distinct")
        self.ids = tuple(ids)
        self.vnodes = vnodes
        points = sorted(
            (vnode_hash(rid, v), pos) for pos, rid in enumerate(self.ids) for v in range(vnodes)
        )
        self._points = [p for p, _ in points]
        self._owners = [pos for _, pos in points]

    def __len__(self) -> int:
        return len(self._points)

    def owner_index(self, key: int | str | bytes) -> int:
        """Position in ``ids`` of the replica owning ``key``: first ring point at or after its hash."""
        if not self._points:
            raise ValueError("empty hash ring")
        i = bisect.bisect_left(self._points, point_hash(key))
        return self._owners[i if i < len(self._points) else 0]

    def owner(self, key: int | str | bytes) -> int | str:
        """Id of the replica owning ``key``."""
        return self.ids[self.owner_index(key)]


class ConsistentHash(Balancer):
    """Requests with the same key go to the same replica while it stays routable.

    Requests without a key fall back to round robin (the simulator always has a key; a live
    client may not send one).
    """

    name = "consistent_hash"

    def __init__(self, vnodes: int = DEFAULT_VNODES) -> None:
        self.vnodes = vnodes
        self._ring: HashRing | None = None
        self._fallback = RoundRobin()

    def ring(self, candidates: Sequence[Candidate]) -> HashRing:
        """The ring for this candidate set (cached until the set changes)."""
        ids = tuple(c.id for c in candidates)
        if self._ring is None or self._ring.ids != ids:
            self._ring = HashRing(ids, self.vnodes)
        return self._ring

    def _index(self, candidates, key):
        if key is None:
            return self._fallback._index(candidates, None)
        return self.ring(candidates).owner_index(key)


#: Names accepted by :func:`make_balancer`: the scenario schema's balancers, less the simulator's
#: central queue (which has no live counterpart).
ALGORITHMS = tuple(name for name in get_args(LoadBalancerSpec.model_fields["algorithm"].annotation)
                   if name != "central_queue")


def make_balancer(name: str, *, seed: int | None = None, vnodes: int = DEFAULT_VNODES) -> Balancer:
    """Build a balancer by its scenario name; ``seed`` fixes the random ones."""
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted_round_robin":
        return WeightedRoundRobin()
    if name == "random":
        return RandomChoice(seed)
    if name == "least_connections":
        return LeastConnections()
    if name == "power_of_two":
        return PowerOfTwo(seed)
    if name == "consistent_hash":
        return ConsistentHash(vnodes)
    raise ValueError(f"unknown balancing algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}")
