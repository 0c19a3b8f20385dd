"""Joint Feldman verifiable secret sharing ("Pedersen DKG"): the arithmetic that makes
the OPRF key without anyone ever holding it. Pure functions over bytes.

**The protocol** among n members with threshold t (2 <= t <= n):

1. Each member i deals (``deal``): a random polynomial f_i of degree t-1 with
   coefficients a_{i,0..t-1}; it publishes the commitments C_{i,m} = a_{i,m}*G and sends
   the share f_i(j) to member j, encrypted to j alone.
2. Everyone checks the public commitments (``check_commitments``: t valid points).
   Each recipient j checks its share against them (``share_is_valid``:
   f_i(j)*G = sum_m j^m C_{i,m}).
3. Complaints: a recipient whose share fails complains against the dealer, publicly.
   The dealer answers by revealing that share publicly; everyone checks it with
   ``share_is_valid``. A dealer who leaves a complaint unanswered, or answers with a
   share that fails, is disqualified; one with bad commitments is disqualified outright.
4. The qualified set Q is the dealers left. Member j's final share is
   k_j = sum over i in Q of f_i(j) (``combine_shares``); the group key is
   k = sum over Q of a_{i,0}, which nobody knows, with public key
   sum over Q of C_{i,0} (``group_public_key``); anyone can compute every member's
   public share K_j = k_j*G from the commitments alone (``public_share``), which is what
   the OPRF's proofs are checked against.

As long as one qualified dealer is honest, k is unknown to any t-1 members, and any t
members reconstruct k*P (never k) with Lagrange weights at zero.

**Known limit.** A rushing adversary (one who waits for the honest dealings, then
decides which of its own complaints to leave unanswered and so which dealers qualify)
can bias the distribution of the public key (Gennaro, Jarecki, Krawczyk, Rabin 1999,
"Secure distributed key generation for discrete-log based cryptosystems"). This biases
which key comes out; it does not let fewer than t members evaluate, nor reveal k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from node.identifiers.group import (
    ORDER,
    SCALAR_SIZE,
    add_points,
    base_mul,
    is_valid_point,
    mul,
    random_scalar,
    scalar_add,
    scalar_from_int,
    scalar_to_int,
    sum_points,
)


@dataclass(frozen=True)
class Dealing:
    """One dealer's contribution: public commitments, and the shares it sends out."""

    commitments: tuple[bytes, ...]  # t points: C_m = a_m * G, m = 0..t-1
    shares: tuple[bytes, ...] = field(repr=False)  # n scalars, shares[j-1] = f(j)


def deal(threshold: int, members: int) -> Dealing:
    """A random polynomial of degree threshold-1, committed and evaluated at 1..members."""
    if not 2 <= threshold <= members:
        raise ValueError("the threshold must be at least 2 and at most the members")
    coefficients = [scalar_to_int(random_scalar()) for _ in range(threshold)]
    commitments = tuple(base_mul(scalar_from_int(a)) for a in coefficients)
    shares = tuple(scalar_from_int(_evaluate(coefficients, j)) for j in range(1, members + 1))
    return Dealing(commitments, shares)


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for a in reversed(coefficients):  # Horner
        result = (result * x + a) % ORDER
    return result


def check_commitments(commitments: Sequence[bytes], threshold: int) -> None:
    """ValueError saying what is wrong with a dealer's commitments, if anything."""
    if len(commitments) != threshold:
        raise ValueError(f"{len(commitments)} commitments for a threshold of {threshold}")
    for position, commitment in enumerate(commitments):
        if not is_valid_point(commitment):
            raise ValueError(f"commitment {position} is not a valid group element")


def _committed_value(commitments: Sequence[bytes], index: int) -> bytes:
    """sum_m index^m C_m = f(index)*G."""
    if index < 1:
        raise ValueError("member indices start at 1")
    if not commitments:
        raise ValueError("no commitments")
    terms = [mul(scalar_from_int(pow(index, m, ORDER)), c) for m, c in enumerate(commitments)]
    return sum_points(terms)


def share_is_valid(commitments: Sequence[bytes], index: int, share: bytes) -> bool:
    """share*G == sum_m C_m index^m; False (never an exception) for malformed input."""
    try:
        if not isinstance(share, bytes) or len(share) != SCALAR_SIZE:
            return False
        if scalar_to_int(share) >= ORDER or not all(is_valid_point(c) for c in commitments):
            return False
        return base_mul(share) == _committed_value(commitments, index)
    except (ValueError, TypeError, RuntimeError):
        # A zero share (base_mul refuses the identity) or a malformed commitment.
        return False


def public_share(commitments_by_dealer: Sequence[Sequence[bytes]], index: int) -> bytes:
    """K_index = sum over dealers of sum_m C_m index^m: member index's k_index*G."""
    if not commitments_by_dealer:
        raise ValueError("no dealers")
    size = len(commitments_by_dealer[0])
    if any(len(c) != size for c in commitments_by_dealer):
        raise ValueError("every dealer must commit to as many coefficients")
    # sum_i sum_m j^m C_{i,m} = sum_m j^m (sum_i C_{i,m}): t multiplications, not n*t.
    joint = [sum_points([c[m] for c in commitments_by_dealer]) for m in range(size)]
    return _committed_value(joint, index)


def group_public_key(commitments_by_dealer: Sequence[Sequence[bytes]]) -> bytes:
    """sum of the dealers' C_0 = k*G."""
    if not commitments_by_dealer:
        raise ValueError("no dealers")
    total = commitments_by_dealer[0][0]
    for commitments in commitments_by_dealer[1:]:
        total = add_points(total, commitments[0])
    return total


def combine_shares(shares: Sequence[bytes]) -> bytes:
    """The scalar sum of the shares a member received from the qualified dealers."""
    if not shares:
        raise ValueError("no shares")
    total = shares[0]
    for share in shares[1:]:
        total = scalar_add(total, share)
    return total
