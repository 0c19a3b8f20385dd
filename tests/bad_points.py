"""Points libsodium must refuse, of every kind, for the tests of everything that takes a
group element from another member (PSI, pseudonym evaluations): the identity, a point
of order 2, a non-canonical encoding (y = p), bytes that decode to no point, and a point
of mixed order (a valid point plus one of order 2)."""

from __future__ import annotations

import random

from nacl.bindings import crypto_core_ed25519_add, crypto_core_ed25519_from_uniform

IDENTITY = bytes([1]) + bytes(31)
ORDER_TWO = bytes([0xEC]) + bytes([0xFF]) * 30 + bytes([0x7F])
NON_CANONICAL = bytes([0xED]) + bytes([0xFF]) * 30 + bytes([0x7F])


def off_curve() -> bytes:
    rng = random.Random(7)
    while True:
        candidate = rng.randbytes(32)
        try:
            crypto_core_ed25519_add(candidate, candidate)
        except Exception:
            return candidate


def mixed_order() -> bytes:
    valid = crypto_core_ed25519_from_uniform(bytes(32))
    return bytes(crypto_core_ed25519_add(valid, ORDER_TWO))
