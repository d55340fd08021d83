"""Pure load-balancing algorithms shared by the live balancer (``tidal.serve``) and the docs/tests
that tie it to the simulator's compiled data plane. No I/O, no clock."""

from tidal.loadbalance.algorithms import (
    ALGORITHMS,
    DEFAULT_VNODES,
    DEFAULT_WEIGHT,
    Backend,
    Balancer,
    Candidate,
    ConsistentHash,
    HashRing,
    LeastConnections,
    PowerOfTwo,
    RandomChoice,
    RoundRobin,
    WeightedRoundRobin,
    make_balancer,
    smooth_wrr_schedule,
)
from tidal.loadbalance.hashing import key64, point_hash, splitmix64, vnode_hash
from tidal.loadbalance.rng import XorShift64Star, seed_state

__all__ = [
    "ALGORITHMS",
    "DEFAULT_VNODES",
    "DEFAULT_WEIGHT",
    "Backend",
    "Balancer",
    "Candidate",
    "ConsistentHash",
    "HashRing",
    "LeastConnections",
    "PowerOfTwo",
    "RandomChoice",
    "RoundRobin",
    "WeightedRoundRobin",
    "XorShift64Star",
    "key64",
    "make_balancer",
    "point_hash",
    "seed_state",
    "smooth_wrr_schedule",
    "splitmix64",
    "vnode_hash",
]
