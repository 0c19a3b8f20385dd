"""Joint Feldman DKG arithmetic: shares match their commitments, a wrong share or bad
commitments are caught, and the public shares are the final shares times G."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.identifiers import dkg
from node.identifiers.group import (
    ORDER,
    add_points,
    base_mul,
    random_scalar,
    scalar_add,
    scalar_from_int,
    scalar_to_int,
)

IDENTITY = bytes([1]) + bytes(31)
ORDER_TWO = bytes([0xEC]) + bytes([0xFF]) * 30 + bytes([0x7F])
NON_CANONICAL = bytes([0xED]) + bytes([0xFF]) * 30 + bytes([0x7F])


@settings(max_examples=15, deadline=None)
@given(st.integers(4, 7).flatmap(lambda n: st.tuples(st.just(n), st.integers(2, n))))
def test_every_share_matches_the_commitments(sizes: tuple[int, int]) -> None:
    members, threshold = sizes
    dealing = dkg.deal(threshold, members)
    assert len(dealing.commitments) == threshold and len(dealing.shares) == members
    dkg.check_commitments(dealing.commitments, threshold)
    for j in range(1, members + 1):
        assert dkg.share_is_valid(dealing.commitments, j, dealing.shares[j - 1])
        # The share of another member is not this member's.
        other = dealing.shares[j % members]
        assert not dkg.share_is_valid(dealing.commitments, j, other)


@settings(max_examples=8, deadline=None)
@given(
    st.integers(4, 7).flatmap(lambda n: st.tuples(st.just(n), st.integers(2, n), st.integers(1, n)))
)
def test_public_shares_are_the_combined_shares_times_g(sizes: tuple[int, int, int]) -> None:
    members, threshold, dealers = sizes
    dealings = [dkg.deal(threshold, members) for _ in range(dealers)]
    commitments = [d.commitments for d in dealings]
    for j in range(1, members + 1):
        share = dkg.combine_shares([d.shares[j - 1] for d in dealings])
        assert dkg.public_share(commitments, j) == base_mul(share)
    expected_key = dealings[0].commitments[0]
    for d in dealings[1:]:
        expected_key = add_points(expected_key, d.commitments[0])
    assert dkg.group_public_key(commitments) == expected_key


def test_a_wrong_share_is_caught() -> None:
    dealing = dkg.deal(3, 5)
    share = dealing.shares[1]
    one = scalar_from_int(1)
    assert dkg.share_is_valid(dealing.commitments, 2, share)
    assert not dkg.share_is_valid(dealing.commitments, 2, scalar_add(share, one))
    assert not dkg.share_is_valid(dealing.commitments, 3, share)
    assert not dkg.share_is_valid(dealing.commitments, 2, random_scalar())
    # Against another dealer's commitments.
    assert not dkg.share_is_valid(dkg.deal(3, 5).commitments, 2, share)
    # A commitment dropped or changed.
    assert not dkg.share_is_valid(dealing.commitments[:2], 2, share)
    changed = (dealing.commitments[0], dealing.commitments[2], dealing.commitments[1])
    assert not dkg.share_is_valid(changed, 2, share)


@pytest.mark.parametrize(
    "share",
    [bytes(32), b"\x01" * 31, (ORDER + scalar_to_int(b"\x01")).to_bytes(32, "little"), "x" * 32],
    ids=["zero", "short", "unreduced", "str"],
)
def test_a_malformed_share_is_false_not_an_error(share: bytes) -> None:
    dealing = dkg.deal(2, 4)
    assert not dkg.share_is_valid(dealing.commitments, 1, share)


def test_malformed_commitments_are_false_or_refused_with_a_reason() -> None:
    dealing = dkg.deal(3, 4)
    share = dealing.shares[0]
    for bad in (IDENTITY, ORDER_TWO, NON_CANONICAL, b"\x02" * 5):
        commitments = (dealing.commitments[0], bad, dealing.commitments[2])
        assert not dkg.share_is_valid(commitments, 1, share)
        with pytest.raises(ValueError, match="commitment 1"):
            dkg.check_commitments(commitments, 3)
    assert not dkg.share_is_valid((), 1, share)
    assert not dkg.share_is_valid(dealing.commitments, 0, share)
    with pytest.raises(ValueError, match="3 commitments for a threshold of 2"):
        dkg.check_commitments(dealing.commitments, 2)


@pytest.mark.parametrize(("threshold", "members"), [(1, 4), (5, 4), (0, 0)])
def test_deal_refuses_a_bad_threshold(threshold: int, members: int) -> None:
    with pytest.raises(ValueError):
        dkg.deal(threshold, members)


def test_the_dealing_repr_hides_the_shares() -> None:
    dealing = dkg.deal(2, 4)
    assert dealing.shares[0].hex() not in repr(dealing)
    assert str(dealing.shares[0]) not in repr(dealing)
