"""The group arithmetic shared by the PSI and the threshold OPRF: pure functions over bytes.

The group is the prime-order subgroup of Ed25519 (order ``ORDER`` = L = 2^252 + ...),
through PyNaCl's bindings of libsodium (PyNaCl has no ristretto255). Points and scalars
are 32 bytes; scalars are little-endian and always reduced mod L here, which matters:
libsodium's ``noclamp`` multiplications ignore the top bit of a scalar, harmless only
for reduced ones.

* **Hash to the group.** ``hash_to_group`` derives 64 bytes from the element with
  BLAKE2b-512 (personalised, prefixed by the caller's domain), maps each half with
  ``crypto_core_ed25519_from_uniform`` (Elligator 2, then the cofactor is cleared) and
  adds the two points. One map alone is not a random oracle: its image is about half
  the group and distinguishable; the sum of two independent maps is (the construction
  of RFC 9380's ``hash_to_curve``). Nobody knows the discrete logarithm of the result,
  which is what keeps a blinded element from being tested against guesses.
* **Random scalars.** libsodium's ``crypto_core_ed25519_scalar_random`` is not bound by
  PyNaCl 1.6, so ``random_scalar`` reduces 64 random bytes mod L (libsodium documents
  64 bytes as enough for a uniform result) and rejects zero.
* **Validation.** A point received from someone else is only ever used as the input of
  ``crypto_scalarmult_ed25519_noclamp``, which refuses exactly what
  ``crypto_core_ed25519_is_valid_point`` refuses: a non-canonical encoding, a point not
  on the curve, a point of small order (the identity among them) and a point outside
  the prime-order subgroup; it also refuses a result that is the identity. Calling
  ``is_valid_point`` first would repeat the subgroup check, about half of the
  multiplication's cost, for every point.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from nacl import exceptions as nacl_exceptions
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_from_uniform,
    crypto_core_ed25519_is_valid_point,
    crypto_core_ed25519_scalar_add,
    crypto_core_ed25519_scalar_invert,
    crypto_core_ed25519_scalar_mul,
    crypto_core_ed25519_scalar_reduce,
    crypto_core_ed25519_scalar_sub,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
)

POINT_SIZE = 32
SCALAR_SIZE = 32
ORDER = 2**252 + 27742317777372353535851937790883648493
_H2G_PERSON = b"crosstrace-psi-h"  # BLAKE2b personalisations: at most 16 bytes
_ZERO = bytes(SCALAR_SIZE)


class InvalidPoint(ValueError):
    """A point libsodium refuses; ``position`` names it within a batch when known."""

    def __init__(self, message: str = "invalid group element", position: int | None = None):
        super().__init__(message if position is None else f"{message} at position {position}")
        self.position = position


# ---------------------------------------------------------------- hashing


def hash_to_group(prefix: bytes, value: str) -> bytes:
    """The group element of ``value`` (already normalised) under ``prefix``."""
    wide = hashlib.blake2b(prefix + value.encode(), digest_size=64, person=_H2G_PERSON).digest()
    point = crypto_core_ed25519_add(
        crypto_core_ed25519_from_uniform(wide[:32]), crypto_core_ed25519_from_uniform(wide[32:])
    )
    return bytes(point)


def hash_to_scalar(person: bytes, *parts: bytes) -> bytes:
    """BLAKE2b-512 of the parts, each prefixed with its 8-byte big-endian length (so no
    sequence of parts reads as another), reduced mod L."""
    if len(person) > hashlib.blake2b.PERSON_SIZE:
        raise ValueError("a BLAKE2b personalisation is at most 16 bytes")
    state = hashlib.blake2b(digest_size=64, person=person)
    for part in parts:
        state.update(len(part).to_bytes(8, "big"))
        state.update(part)
    return bytes(crypto_core_ed25519_scalar_reduce(state.digest()))


# ---------------------------------------------------------------- scalars


def random_scalar() -> bytes:
    """A secret scalar, uniform in [1, L)."""
    while True:
        scalar = bytes(crypto_core_ed25519_scalar_reduce(os.urandom(64)))
        if scalar != _ZERO:
            return scalar


def scalar_from_int(value: int) -> bytes:
    """``value`` mod L (negative values included) as a 32-byte scalar."""
    return (value % ORDER).to_bytes(SCALAR_SIZE, "little")


def scalar_to_int(scalar: bytes) -> int:
    return int.from_bytes(scalar, "little")


def scalar_add(a: bytes, b: bytes) -> bytes:
    return bytes(crypto_core_ed25519_scalar_add(a, b))


def scalar_sub(a: bytes, b: bytes) -> bytes:
    return bytes(crypto_core_ed25519_scalar_sub(a, b))


def scalar_mul(a: bytes, b: bytes) -> bytes:
    return bytes(crypto_core_ed25519_scalar_mul(a, b))


def scalar_invert(a: bytes) -> bytes:
    """The inverse mod L; ValueError for zero, which has none (libsodium would return
    zero without complaint)."""
    if scalar_to_int(a) % ORDER == 0:
        raise ValueError("zero has no inverse")
    return bytes(crypto_core_ed25519_scalar_invert(a))


# ---------------------------------------------------------------- points


def is_valid_point(point: bytes) -> bool:
    """libsodium's own check (canonical, on the curve, prime order, not the identity)."""
    return (
        isinstance(point, bytes)
        and len(point) == POINT_SIZE
        and bool(crypto_core_ed25519_is_valid_point(point))
    )


def raise_point(scalar: bytes, point: bytes) -> bytes | None:
    """``point`` to the power ``scalar``; None if libsodium refuses the point."""
    if len(point) != POINT_SIZE:
        return None
    try:
        return bytes(crypto_scalarmult_ed25519_noclamp(scalar, point))
    except nacl_exceptions.RuntimeError:
        return None


def mul(scalar: bytes, point: bytes) -> bytes:
    """``scalar * point``; InvalidPoint if libsodium refuses the point (or the result is
    the identity, which for a valid point means a zero scalar)."""
    result = raise_point(scalar, point)
    if result is None:
        raise InvalidPoint()
    return result


def base_mul(scalar: bytes) -> bytes:
    """``scalar * G``; ValueError for a zero scalar (libsodium refuses the identity)."""
    try:
        return bytes(crypto_scalarmult_ed25519_base_noclamp(scalar))
    except nacl_exceptions.RuntimeError as exc:
        raise ValueError("the scalar is zero mod L") from exc


def add_points(a: bytes, b: bytes) -> bytes:
    try:
        return bytes(crypto_core_ed25519_add(a, b))
    except nacl_exceptions.RuntimeError as exc:
        raise InvalidPoint() from exc


def sum_points(points: Sequence[bytes]) -> bytes:
    if not points:
        raise ValueError("the sum of no points is not defined here")
    total = points[0]
    for point in points[1:]:
        total = add_points(total, point)
    return total
