"""The threshold OPRF without a network: every t-subset of a DKG's members gives the one
pseudonym the whole key would, a wrong evaluation is caught by its proof, t-1 members
cannot evaluate, the requester's bad points are refused by position, and blinding hides
the identifier."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from bad_points import IDENTITY, NON_CANONICAL, ORDER_TWO, mixed_order, off_curve
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import (
    crypto_core_ed25519_sub,
)

from node.identifiers import dkg, oprf
from node.identifiers.group import (
    ORDER,
    InvalidPoint,
    add_points,
    base_mul,
    hash_to_scalar,
    is_valid_point,
    mul,
    random_scalar,
    scalar_add,
    scalar_from_int,
    scalar_invert,
    scalar_mul,
    scalar_sub,
    scalar_to_int,
)
from node.psi.crypto import domain, hash_to_group


def sub_points(a: bytes, b: bytes) -> bytes:
    return bytes(crypto_core_ed25519_sub(a, b))


CONTEXT = b"request-1|purpose|requester|S"


BAD_POINTS = [IDENTITY, ORDER_TWO, NON_CANONICAL, off_curve(), mixed_order(), b"\x05" * 31]
BAD_IDS = ["identity", "order2", "noncanon", "off", "mixed", "short"]


# ------------------------------------------------------------------ a DKG to test with


@dataclass(frozen=True)
class Consortium:
    threshold: int
    shares: tuple[bytes, ...]  # shares[j-1]: member j's final share
    publics: tuple[bytes, ...]  # publics[j-1]: K_j, from the commitments alone
    key: bytes  # the whole key, which only a test may compute

    def share(self, index: int) -> bytes:
        return self.shares[index - 1]

    def public(self, index: int) -> bytes:
        return self.publics[index - 1]


def interpolate_at_zero(points: Sequence[tuple[int, int]]) -> int:
    """Plain-integer Lagrange interpolation, independent of the module's own."""
    total = 0
    for j, y in points:
        num, den = 1, 1
        for m, _ in points:
            if m != j:
                num = num * m % ORDER
                den = den * (m - j) % ORDER
        total = (total + y * num * pow(den, -1, ORDER)) % ORDER
    return total


def run_dkg(members: int, threshold: int, dealers: Sequence[int]) -> Consortium:
    dealings = [dkg.deal(threshold, members) for _ in dealers]
    for dealing in dealings:
        dkg.check_commitments(dealing.commitments, threshold)
    commitments = [d.commitments for d in dealings]
    shares = tuple(
        dkg.combine_shares([d.shares[j - 1] for d in dealings]) for j in range(1, members + 1)
    )
    publics = tuple(dkg.public_share(commitments, j) for j in range(1, members + 1))
    # Each dealer's a_0 recovered from its shares: the whole key, for the reference.
    secrets = [
        interpolate_at_zero([(j, scalar_to_int(d.shares[j - 1])) for j in range(1, threshold + 1)])
        for d in dealings
    ]
    key = scalar_from_int(sum(secrets))
    assert base_mul(key) == dkg.group_public_key(commitments)
    return Consortium(threshold, shares, publics, key)


def pseudonyms_via(
    consortium: Consortium, indices: Sequence[int], entity_type: str, values: Sequence[str]
) -> list[bytes]:
    """The whole requester/evaluator exchange for one evaluating set, every proof checked."""
    inputs = [oprf.input_point(entity_type, v) for v in values]
    blinded, scalars = oprf.blind_many(inputs)
    parts = []
    for index in indices:
        evaluation = oprf.evaluate(consortium.share(index), index, indices, blinded, CONTEXT)
        assert oprf.verify(consortium.public(index), index, indices, blinded, evaluation, CONTEXT)
        parts.append(evaluation.points)
    unblinded = oprf.unblind_many(scalars, oprf.combine(parts))
    return [oprf.finalize(entity_type, v, u) for v, u in zip(values, unblinded, strict=True)]


@st.composite
def consortia(draw: st.DrawFn) -> Consortium:
    members = draw(st.integers(4, 7))
    threshold = draw(st.integers(2, members))
    dealers = draw(
        st.lists(st.integers(1, members), min_size=1, max_size=members, unique=True).map(sorted)
    )
    return run_dkg(members, threshold, dealers)


_FIXED = run_dkg(5, 3, [1, 2, 3, 4, 5])
VALUES = ["+15551230001", "+15551230002", "+15551230003", "+15551230004"]


# ------------------------------------------------------------------ correctness


@settings(max_examples=8, deadline=None)
@given(consortia(), st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=2))
def test_every_threshold_subset_gives_the_whole_key_pseudonym(
    consortium: Consortium, values: list[str]
) -> None:
    members = len(consortium.shares)
    expected = [oprf.pseudonym_with_key(consortium.key, "phone", v) for v in values]
    for indices in itertools.combinations(range(1, members + 1), consortium.threshold):
        assert pseudonyms_via(consortium, list(indices), "phone", values) == expected


def test_any_set_of_at_least_threshold_members_in_any_order_works() -> None:
    # Any set of at least t members with its own Lagrange weights gives the same result.
    expected = [oprf.pseudonym_with_key(_FIXED.key, "account", v) for v in VALUES]
    assert pseudonyms_via(_FIXED, [1, 2, 3, 4, 5], "account", VALUES) == expected
    assert pseudonyms_via(_FIXED, [5, 2, 4], "account", VALUES) == expected


def test_pseudonyms_separate_types_values_and_keys() -> None:
    key = random_scalar()
    a = oprf.pseudonym_with_key(key, "phone", "123")
    assert len(a) == oprf.PSEUDONYM_SIZE
    assert a != oprf.pseudonym_with_key(key, "account", "123")
    assert a != oprf.pseudonym_with_key(key, "phone", "124")
    assert a != oprf.pseudonym_with_key(random_scalar(), "phone", "123")
    assert a == oprf.pseudonym_with_key(key, "phone", "123")
    # The input point is not PSI's point for the same identifier.
    assert oprf.input_point("phone", "123") != hash_to_group(domain("c", "phone"), "123")
    # The entity type's length is part of the prefix: "ab" + "c..." != "a" + "bc...".
    assert oprf.input_point("ab", "cd") != oprf.input_point("a", "bcd")


def test_finalize_is_the_documented_hash() -> None:
    point = oprf.input_point("phone", "42")
    data = (2).to_bytes(4, "big") + b"42" + point
    expected = hashlib.blake2b(data, digest_size=32, person=b"ct2/phone").digest()
    assert oprf.finalize("phone", "42", point) == expected


def test_blind_and_unblind_are_inverse() -> None:
    point = oprf.input_point("phone", "+15551230001")
    blinded, r = oprf.blind(point)
    assert oprf.unblind(r, blinded) == point


def test_blinding_hides_the_identifier() -> None:
    point = oprf.input_point("phone", "+15551230001")
    blinded = {oprf.blind(point)[0] for _ in range(20)}
    assert len(blinded) == 20 and point not in blinded
    assert all(is_valid_point(b) for b in blinded)


def test_evaluate_unproven_matches_evaluate() -> None:
    blinded, _ = oprf.blind_many([oprf.input_point("phone", v) for v in VALUES])
    indices = [1, 2, 3]
    proven = oprf.evaluate(_FIXED.share(2), 2, indices, blinded, CONTEXT)
    assert oprf.evaluate_unproven(_FIXED.share(2), 2, indices, blinded) == proven.points


# ------------------------------------------------------------------ Lagrange


def test_lagrange_weights_reconstruct_a_polynomial_at_zero() -> None:
    coefficients = [random.randrange(ORDER) for _ in range(3)]

    def f(x: int) -> int:
        return sum(a * pow(x, m, ORDER) for m, a in enumerate(coefficients)) % ORDER

    for indices in ([1, 2, 3], [2, 5, 7], [7, 1, 4, 3]):
        total = (
            sum(scalar_to_int(oprf.lagrange_at_zero(j, indices)) * f(j) for j in indices) % ORDER
        )
        assert total == coefficients[0]


@pytest.mark.parametrize(
    ("index", "indices"), [(4, [1, 2, 3]), (1, [1, 1, 2]), (0, [0, 1, 2]), (1, [1, -2, 3])]
)
def test_lagrange_refuses_a_bad_set(index: int, indices: list[int]) -> None:
    with pytest.raises(ValueError):
        oprf.lagrange_at_zero(index, indices)


def test_evaluator_public_matches_evaluator_key() -> None:
    indices = [1, 3, 4]
    for j in indices:
        key = oprf.evaluator_key(_FIXED.share(j), j, indices)
        assert base_mul(key) == oprf.evaluator_public(_FIXED.public(j), j, indices)


# ------------------------------------------------------------------ wrong evaluations


def _honest(
    index: int = 2, indices: Sequence[int] = (1, 2, 3)
) -> tuple[list[bytes], oprf.Evaluation]:
    blinded, _ = oprf.blind_many([oprf.input_point("phone", v) for v in VALUES])
    evaluation = oprf.evaluate(_FIXED.share(index), index, list(indices), blinded, CONTEXT)
    return blinded, evaluation


def _check(blinded: Sequence[bytes], evaluation: oprf.Evaluation, **changes: object) -> bool:
    args: dict[str, object] = {
        "public_share": _FIXED.public(2),
        "index": 2,
        "indices": [1, 2, 3],
        "blinded": blinded,
        "evaluation": evaluation,
        "context": CONTEXT,
    }
    args.update(changes)
    return oprf.verify(**args)  # type: ignore[arg-type]


def test_an_honest_evaluation_verifies() -> None:
    blinded, evaluation = _honest()
    assert _check(blinded, evaluation)


@pytest.mark.parametrize("position", range(len(VALUES)))
def test_one_changed_point_is_caught_at_any_position(position: int) -> None:
    blinded, evaluation = _honest()
    points = list(evaluation.points)
    points[position] = mul(scalar_from_int(2), points[position])
    assert not _check(blinded, replace(evaluation, points=tuple(points)))
    points[position] = base_mul(random_scalar())
    assert not _check(blinded, replace(evaluation, points=tuple(points)))


def test_swapped_points_are_caught() -> None:
    blinded, evaluation = _honest()
    points = list(evaluation.points)
    points[0], points[3] = points[3], points[0]
    assert not _check(blinded, replace(evaluation, points=tuple(points)))


def test_a_point_from_another_share_is_caught() -> None:
    blinded, evaluation = _honest()
    other = oprf.evaluate_unproven(_FIXED.share(3), 3, [1, 2, 3], blinded)
    points = list(evaluation.points)
    points[1] = other[1]
    assert not _check(blinded, replace(evaluation, points=tuple(points)))
    # A whole honest evaluation by member 3 does not pass as member 2's.
    by_three = oprf.evaluate(_FIXED.share(3), 3, [1, 2, 3], blinded, CONTEXT)
    assert not _check(blinded, by_three)


def test_a_proof_for_another_context_is_caught() -> None:
    blinded, evaluation = _honest()
    assert not _check(blinded, evaluation, context=CONTEXT + b"x")
    assert not _check(blinded, evaluation, context=b"")


def test_a_proof_checked_against_another_evaluator_index_is_caught() -> None:
    blinded, evaluation = _honest()
    assert not _check(blinded, evaluation, index=3, public_share=_FIXED.public(3))
    assert not _check(blinded, evaluation, index=3)
    # The same member in another evaluating set has another Lagrange weight.
    assert not _check(blinded, evaluation, indices=[1, 2, 4])


def test_truncated_or_padded_lists_are_caught() -> None:
    blinded, evaluation = _honest()
    assert not _check(blinded, replace(evaluation, points=evaluation.points[:-1]))
    assert not _check(blinded[:-1], evaluation)
    assert not _check(
        blinded, replace(evaluation, points=evaluation.points + evaluation.points[:1])
    )
    assert not _check([], replace(evaluation, points=()))


def _cheat(blinded: Sequence[bytes], points: Sequence[bytes]) -> oprf.Evaluation:
    """Member 2, which knows its key, proving wrong points as an honest prover would."""
    key = oprf.evaluator_key(_FIXED.share(2), 2, [1, 2, 3])
    return oprf.Evaluation(tuple(points), oprf._prove(key, blinded, points, CONTEXT))


def test_an_evaluator_cannot_prove_wrong_points_even_knowing_its_key() -> None:
    blinded, evaluation = _honest()
    honest = list(evaluation.points)
    assert _check(blinded, _cheat(blinded, honest))  # the control: the cheat path works
    swapped = [honest[3], honest[1], honest[2], honest[0]]
    assert not _check(blinded, _cheat(blinded, swapped))
    # Offsets that cancel in an unweighted sum: only the hashed weights d_i catch them.
    offset = base_mul(random_scalar())
    cancelling = [add_points(honest[0], offset), sub_points(honest[1], offset), *honest[2:]]
    assert not _check(blinded, _cheat(blinded, cancelling))
    other = oprf.evaluate_unproven(_FIXED.share(3), 3, [1, 2, 3], blinded)
    assert not _check(blinded, _cheat(blinded, [honest[0], other[1], *honest[2:]]))


def test_the_weights_depend_on_the_evaluated_points() -> None:
    # A cheat that cancels under the weights computed for the honest points: it works
    # only if the weights do not change with the points the evaluator sends.
    blinded, evaluation = _honest()
    honest = list(evaluation.points)
    public = oprf.evaluator_public(_FIXED.public(2), 2, [1, 2, 3])
    d = oprf._weights(oprf._seed(CONTEXT, public, blinded, honest), len(blinded))
    offset = base_mul(random_scalar())
    cancelling = [
        add_points(honest[0], mul(d[1], offset)),
        sub_points(honest[1], mul(d[0], offset)),
        *honest[2:],
    ]
    assert not _check(blinded, _cheat(blinded, cancelling))


def test_a_tampered_proof_is_caught() -> None:
    blinded, evaluation = _honest()
    proof = evaluation.proof
    one = scalar_from_int(1)
    for bad in (
        replace(proof, challenge=scalar_add(proof.challenge, one)),
        replace(proof, response=scalar_add(proof.response, one)),
        replace(proof, response=bytes(32)),
        replace(proof, response=b"\xff" * 32),  # not reduced
        replace(proof, challenge=b"\x01"),  # wrong length
    ):
        assert not _check(blinded, replace(evaluation, proof=bad))


@pytest.mark.parametrize("bad", BAD_POINTS, ids=BAD_IDS)
def test_verify_says_false_for_bad_points_never_raises(bad: bytes) -> None:
    blinded, evaluation = _honest()
    points = list(evaluation.points)
    points[2] = bad
    assert not _check(blinded, replace(evaluation, points=tuple(points)))
    assert not _check([*blinded[:2], bad, blinded[3]], evaluation)
    assert not _check(blinded, evaluation, public_share=bad)


# ------------------------------------------------------------------ fewer than t


def test_fewer_than_threshold_members_cannot_evaluate() -> None:
    consortium = run_dkg(6, 4, [1, 2, 3, 4, 5, 6])
    values = VALUES[:2]
    expected = [oprf.pseudonym_with_key(consortium.key, "phone", v) for v in values]
    inputs = [oprf.input_point("phone", v) for v in values]
    blinded, scalars = oprf.blind_many(inputs)

    def attempt(indices: Sequence[int], weights_for: Sequence[int]) -> list[bytes]:
        parts = [
            oprf.evaluate_unproven(consortium.share(j), j, weights_for, blinded) for j in indices
        ]
        unblinded = oprf.unblind_many(scalars, oprf.combine(parts))
        return [oprf.finalize("phone", v, u) for v, u in zip(values, unblinded, strict=True)]

    for small in itertools.combinations(range(1, 7), 3):
        # Weights for the t-1 set itself.
        assert not set(attempt(small, small)) & set(expected)
        # Weights for a t-set, one member missing.
        missing = next(j for j in range(1, 7) if j not in small)
        assert not set(attempt(small, (*small, missing))) & set(expected)
    # The control: the full t-set succeeds with the same code.
    assert attempt([1, 2, 3, 4], [1, 2, 3, 4]) == expected


# ------------------------------------------------------------------ refused points


@pytest.mark.parametrize("bad", BAD_POINTS, ids=BAD_IDS)
@pytest.mark.parametrize("position", [0, 2])
def test_evaluate_refuses_a_bad_point_naming_its_position(bad: bytes, position: int) -> None:
    blinded, _ = oprf.blind_many([oprf.input_point("phone", v) for v in VALUES[:3]])
    blinded[position] = bad
    with pytest.raises(InvalidPoint) as info:
        oprf.evaluate(_FIXED.share(1), 1, [1, 2, 3], blinded, CONTEXT)
    assert info.value.position == position
    with pytest.raises(InvalidPoint) as info:
        oprf.evaluate_unproven(_FIXED.share(1), 1, [1, 2, 3], blinded)
    assert info.value.position == position


@pytest.mark.parametrize("bad", BAD_POINTS[:5], ids=BAD_IDS[:5])
def test_the_refused_points_are_the_invalid_ones(bad: bytes) -> None:
    assert not is_valid_point(bad)
    with pytest.raises(InvalidPoint):
        mul(random_scalar(), bad)


# ------------------------------------------------------------------ the group helpers


@settings(max_examples=50)
@given(st.integers(-(2**300), 2**300), st.integers(-(2**300), 2**300))
def test_scalar_arithmetic_matches_integers(a: int, b: int) -> None:
    sa, sb = scalar_from_int(a), scalar_from_int(b)
    assert scalar_to_int(sa) == a % ORDER
    assert scalar_to_int(scalar_add(sa, sb)) == (a + b) % ORDER
    assert scalar_to_int(scalar_sub(sa, sb)) == (a - b) % ORDER
    assert scalar_to_int(scalar_mul(sa, sb)) == (a * b) % ORDER
    if a % ORDER:
        assert scalar_to_int(scalar_mul(sa, scalar_invert(sa))) == 1


def test_zero_has_no_inverse() -> None:
    with pytest.raises(ValueError):
        scalar_invert(scalar_from_int(ORDER))


def test_hash_to_scalar_is_length_prefixed_and_personalised() -> None:
    assert hash_to_scalar(b"p", b"ab", b"c") != hash_to_scalar(b"p", b"a", b"bc")
    assert hash_to_scalar(b"p", b"ab") != hash_to_scalar(b"q", b"ab")
    assert scalar_to_int(hash_to_scalar(b"p", b"x")) < ORDER
    with pytest.raises(ValueError):
        hash_to_scalar(b"x" * 17, b"")
