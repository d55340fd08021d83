"""Stable 64-bit hashing shared by the consistent-hash ring (and bit-compatible with the simulator).

The simulator's compiled ring (``tidal.sim.dataplane._build_ring`` / ``_ring_lookup``) hashes
integer replica uids and integer request keys with splitmix64; these functions do the same in
pure Python, so a ring of integer ids built here maps integer keys to the same owners. Strings
(live worker ids, ``X-Tidal-Key`` values) are first folded to 64 bits with BLAKE2b, which is
stable across processes and Python versions (unlike ``hash()``).
"""

from __future__ import annotations

import hashlib

MASK64 = (1 << 64) - 1
#: Multiplier that spreads a replica uid before its virtual-node index is added (FNV-1a prime).
VNODE_SPREAD = 0x100000001B3


def splitmix64(x: int) -> int:
    """The splitmix64 finaliser: a bijective, well-mixed map of 64-bit integers."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def key64(key: int | str | bytes) -> int:
    """Fold a request key or replica id to an unsigned 64-bit integer.

    Integers are taken modulo 2**64 (the simulator's int64 keys and uids); strings and bytes are
    hashed with BLAKE2b-64.
    """
    if isinstance(key, bool):
        raise TypeError("a hash key must be an int, str or bytes, not bool")
    if isinstance(key, int):
        return key & MASK64
    if isinstance(key, str):
        key = key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return int.from_bytes(hashlib.blake2b(bytes(key), digest_size=8).digest(), "little")
    raise TypeError(f"a hash key must be an int, str or bytes, not {type(key).__name__}")


def point_hash(key: int | str | bytes) -> int:
    """Where a request key lands on the ring."""
    return splitmix64(key64(key))


def vnode_hash(replica_id: int | str | bytes, vnode: int) -> int:
    """Ring position of virtual node ``vnode`` of a replica."""
    base = (key64(replica_id) * VNODE_SPREAD) & MASK64
    return splitmix64((base + vnode) & MASK64)
