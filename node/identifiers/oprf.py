"""Threshold pseudonyms: 2HashDH over Ed25519 with a Shamir-shared key and verifiable
evaluations. Pure arithmetic over bytes: no I/O, no clock, no key held whole.

**What is hashed where.**

* ``input_point``: the identifier's group element P = H1(type, value), through
  ``hash_to_group`` under the prefix ``b"crosstrace-oprf/v1" || len(type) || type``
  (distinct from every PSI prefix, which starts with a 2-byte chain-id length, so the
  same identifier never gives the same point in the PSI and here; the one-byte length
  keeps every type apart).
* ``finalize``: the pseudonym = BLAKE2b-256(person = ``"ct2/" + type``, data =
  4-byte big-endian length of the UTF-8 value || value || k*P). Hashing the value again
  with k*P is 2HashDH's second hash (H2(x, k*H1(x))): the output is a PRF of the
  identifier, and a point someone learnt for another input is of no use.
* ``hash_to_scalar`` (BLAKE2b-512, length-prefixed parts, reduced mod L) for the proof:
  ``ct-oprf-seed`` over (context, X, n, B_1..B_n, E_1..E_n), ``ct-oprf-d`` over (seed,
  i) for the batch weights, ``ct-oprf-c`` over (seed, M, Z, A1, A2) for the challenge.

**The threshold.** Member j (``index`` = its 1-based position in the genesis, its
Shamir x-coordinate) holds k_j = f(j) for the group key k = f(0), and publishes
K_j = k_j*G. For a set S of t members, k = sum over j in S of lambda_{j,S} k_j
(Lagrange at zero), so each evaluator multiplies by x_j = lambda_{j,S} k_j
(``evaluator_key``) and the requester only adds the answers (``combine``). The weight
is applied by the evaluator, so the requester never sees k_j*B, only x_j*B for the S it
asked: fewer than t such answers are points of unrelated scalars and give nothing.

**Why the evaluators learn nothing.** The requester sends B = r*P for a fresh uniform
r (``blind``). For any P, r*P is a uniform element of the group, so B is independent of
the identifier: an evaluator (or all of them together, holding k) sees a random point,
and the same identifier blinded twice gives unrelated points. The requester removes r
with r^-1 (``unblind``): r^-1 * sum_j x_j r P = k*P.

**Why a wrong evaluator is named.** Each evaluation carries a batched Chaum-Pedersen
proof (RFC 9497 section 2.2 style) that log_G X = log_{B_i} E_i for every i, with
X = lambda_{j,S} K_j (``evaluator_public``), computed from public data alone. The
batch weights d_i come from a hash of everything (the context, X, all the B and E), so
an evaluator cannot make wrong points cancel out in M = sum d_i B_i and Z = sum d_i E_i;
a proof that fails is the evaluator's own doing (its share is bound through X), and
the requester can name it and ask another. ``context`` binds the request (its id, the
purpose, the requester, the set S) so a proof cannot be replayed for another request.

**Cost per element** (scalar multiplications; ~69 us each, a base one ~14 us):
requester 2 (blind r*P, unblind r^-1*sum) plus, per evaluator, 2 to verify (d_i*B_i
and d_i*E_i) and t-1 point additions to combine; hash to the group ~2 from_uniform.
Evaluator: 2 (x*B_i and d_i*B_i for M). Constant per batch: 2 for the prover (w*M,
x*M) plus a base one, 4 for the verifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from node.identifiers.group import (
    ORDER,
    InvalidPoint,
    add_points,
    base_mul,
    hash_to_group,
    hash_to_scalar,
    mul,
    random_scalar,
    scalar_from_int,
    scalar_invert,
    scalar_mul,
    scalar_sub,
    sum_points,
)

SCHEME = "2hashdh-ed25519/v1"
PSEUDONYM_SIZE = 32
_INPUT_PREFIX = b"crosstrace-oprf/v1"
_FINAL_PERSON_PREFIX = b"ct2/"
_SEED_PERSON = b"ct-oprf-seed"
_WEIGHT_PERSON = b"ct-oprf-d"
_CHALLENGE_PERSON = b"ct-oprf-c"


# ---------------------------------------------------------------- the requester


def input_point(entity_type: str, normalized: str) -> bytes:
    """P = H1(type, value), the point the key is applied to."""
    kind = entity_type.encode()
    if len(kind) > 0xFF:
        raise ValueError("entity type too long")
    return hash_to_group(_INPUT_PREFIX + len(kind).to_bytes(1, "big") + kind, normalized)


def blind(point: bytes) -> tuple[bytes, bytes]:
    """(r*P, r) for a fresh secret r: the blinded point is uniform, whatever P is."""
    r = random_scalar()
    return mul(r, point), r


def unblind(scalar_r: bytes, point: bytes) -> bytes:
    """r^-1 * point: k*r*P becomes k*P."""
    return mul(scalar_invert(scalar_r), point)


def blind_many(points: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
    """``blind`` over a chunk: (blinded points, their scalars), in order."""
    blinded: list[bytes] = []
    scalars: list[bytes] = []
    for point in points:
        b, r = blind(point)
        blinded.append(b)
        scalars.append(r)
    return blinded, scalars


def unblind_many(scalars: Sequence[bytes], points: Sequence[bytes]) -> list[bytes]:
    if len(scalars) != len(points):
        raise ValueError("as many scalars as points")
    return [unblind(r, p) for r, p in zip(scalars, points, strict=True)]


def combine(parts: Sequence[Sequence[bytes]]) -> list[bytes]:
    """The pointwise sum of the evaluators' points (their Lagrange weights are already
    applied): r*k*P for each element."""
    if not parts:
        raise ValueError("nothing to combine")
    size = len(parts[0])
    if any(len(part) != size for part in parts):
        raise ValueError("every evaluation must have as many points")
    return [sum_points([part[i] for part in parts]) for i in range(size)]


def finalize(entity_type: str, normalized: str, unblinded: bytes) -> bytes:
    """The pseudonym: BLAKE2b-256 of the value and k*P, personalised by the type."""
    person = _FINAL_PERSON_PREFIX + entity_type.encode()
    assert len(person) <= hashlib.blake2b.PERSON_SIZE, "entity type too long"
    value = normalized.encode()
    data = len(value).to_bytes(4, "big") + value + unblinded
    return hashlib.blake2b(data, digest_size=PSEUDONYM_SIZE, person=person).digest()


def pseudonym_with_key(key: bytes, entity_type: str, normalized: str) -> bytes:
    """The reference pseudonym computed with a WHOLE key scalar.

    Only tests and test fixtures use this: no production code path ever holds the whole
    key (it exists nowhere but as shares), so production pseudonyms always go through
    blind, evaluate, verify, combine, unblind and finalize."""
    return finalize(entity_type, normalized, mul(key, input_point(entity_type, normalized)))


# ---------------------------------------------------------------- the threshold


def lagrange_at_zero(index: int, indices: Sequence[int]) -> bytes:
    """lambda_{index,S} = prod over m in S, m != index, of m / (m - index), mod L."""
    if any(i < 1 for i in indices):
        raise ValueError("member indices start at 1")
    if len(set(indices)) != len(indices):
        raise ValueError("duplicate member index")
    if index not in indices:
        raise ValueError(f"index {index} is not in the evaluating set")
    numerator = 1
    denominator = 1
    for m in indices:
        if m != index:
            numerator = numerator * m % ORDER
            denominator = denominator * (m - index) % ORDER
    return scalar_from_int(numerator * pow(denominator, -1, ORDER))


def evaluator_key(share: bytes, index: int, indices: Sequence[int]) -> bytes:
    """x = lambda_{index,S} * k_index: what evaluator ``index`` multiplies by for S."""
    return scalar_mul(lagrange_at_zero(index, indices), share)


def evaluator_public(public_share: bytes, index: int, indices: Sequence[int]) -> bytes:
    """X = lambda_{index,S} * K_index = x*G: what its proof is checked against."""
    return mul(lagrange_at_zero(index, indices), public_share)


# ---------------------------------------------------------------- the evaluator


@dataclass(frozen=True)
class Proof:
    challenge: bytes  # 32-byte scalar c
    response: bytes  # 32-byte scalar s


@dataclass(frozen=True)
class Evaluation:
    points: tuple[bytes, ...]
    proof: Proof


def _apply(key: bytes, blinded: Sequence[bytes]) -> tuple[bytes, ...]:
    points = []
    for position, point in enumerate(blinded):
        try:
            points.append(mul(key, point))
        except (InvalidPoint, TypeError) as exc:  # TypeError: not 32 bytes
            raise InvalidPoint(position=position) from exc
    return tuple(points)


def evaluate_unproven(
    share: bytes, index: int, indices: Sequence[int], blinded: Sequence[bytes]
) -> tuple[bytes, ...]:
    """The evaluation without a proof: a member evaluating its own share for itself."""
    return _apply(evaluator_key(share, index, indices), blinded)


def _seed(
    context: bytes, public: bytes, blinded: Sequence[bytes], points: Sequence[bytes]
) -> bytes:
    count = len(blinded).to_bytes(4, "big")
    return hash_to_scalar(_SEED_PERSON, context, public, count, *blinded, *points)


def _weights(seed: bytes, count: int) -> list[bytes]:
    return [hash_to_scalar(_WEIGHT_PERSON, seed, i.to_bytes(4, "big")) for i in range(count)]


def _challenge(seed: bytes, m: bytes, z: bytes, a1: bytes, a2: bytes) -> bytes:
    return hash_to_scalar(_CHALLENGE_PERSON, seed, m, z, a1, a2)


def evaluate(
    share: bytes,
    index: int,
    indices: Sequence[int],
    blinded: Sequence[bytes],
    context: bytes,
) -> Evaluation:
    """x*B_i for every blinded point, with a batched DLEQ proof bound to ``context``.

    Raises InvalidPoint naming the first point libsodium refuses: the requester's points
    are never trusted."""
    if not blinded:
        raise ValueError("nothing to evaluate")
    key = evaluator_key(share, index, indices)
    points = _apply(key, blinded)
    return Evaluation(points, _prove(key, blinded, points, context))


def _prove(key: bytes, blinded: Sequence[bytes], points: Sequence[bytes], context: bytes) -> Proof:
    """The batched DLEQ proof that points[i] = key * blinded[i]. Apart from ``evaluate``
    so that tests can play a cheating evaluator, one who knows its key and proves wrong
    points the honest way: its Z = x*M then differs from the verifier's sum d_i*E_i."""
    public = base_mul(key)
    seed = _seed(context, public, blinded, points)
    weights = _weights(seed, len(blinded))
    # Each B_i was accepted by _apply, so these multiplications cannot refuse it.
    m = sum_points([mul(d, b) for d, b in zip(weights, blinded, strict=True)])
    z = mul(key, m)
    while True:
        w = random_scalar()
        c = _challenge(seed, m, z, base_mul(w), mul(w, m))
        s = scalar_sub(w, scalar_mul(c, key))
        if s != bytes(32) and c != bytes(32):  # zero: the verifier could not multiply
            return Proof(challenge=c, response=s)


def verify(
    public_share: bytes,
    index: int,
    indices: Sequence[int],
    blinded: Sequence[bytes],
    evaluation: Evaluation,
    context: bytes,
) -> bool:
    """True only if ``evaluation`` is x*B_i for every B_i, x the evaluator's weighted
    share for this S. False, never an exception, for anything malformed."""
    try:
        points = evaluation.points
        if not blinded or len(points) != len(blinded):
            return False
        c = evaluation.proof.challenge
        s = evaluation.proof.response
        if len(c) != 32 or len(s) != 32 or int.from_bytes(s, "little") >= ORDER:
            return False
        public = evaluator_public(public_share, index, indices)
        seed = _seed(context, public, blinded, points)
        weights = _weights(seed, len(blinded))
        m = sum_points([mul(d, b) for d, b in zip(weights, blinded, strict=True)])
        z = sum_points([mul(d, e) for d, e in zip(weights, points, strict=True)])
        a1 = add_points(base_mul(s), mul(c, public))
        a2 = add_points(mul(s, m), mul(c, z))
        return _challenge(seed, m, z, a1, a2) == c
    except (ValueError, TypeError, AttributeError, RuntimeError):
        # InvalidPoint is a ValueError; TypeError for bytes of the wrong length.
        return False
