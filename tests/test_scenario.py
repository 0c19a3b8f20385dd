"""The demo's fraud-ring story: valid transactions from the right partners, and a clear
refusal on a consortium that lacks one of them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from node.identifiers.pseudonym import EntityRef
from node.ledger.attributes import CATEGORY_KEYS
from node.ledger.authoring import Author, load_author
from node.ledger.kinds import Link, Report
from node.ledger.transactions import TxContext, member_table, validate_tx
from node.ops.scenario import STORY, fraud_ring, fraud_ring_entities, fraud_ring_with_refs
from node.setup.genesis import Genesis
from node.setup.provision import make_testnet
from node.testing.dealer import TEST_KEY, KeyedPseudonyms


class CountingSource:
    """Offline pseudonyms (the test-only dealer's key), counting the requests."""

    def __init__(self) -> None:
        self.inner = KeyedPseudonyms(TEST_KEY)
        self.requests: list[int] = []

    def refs(self, items: Sequence[tuple[str, str]]) -> list[EntityRef]:
        self.requests.append(len(items))
        return self.inner.refs(items)


def authors(tmp_path: Path, nodes: int) -> dict[str, Author]:
    _, homes = make_testnet(tmp_path / "c", nodes, p2p_base_port=21000, api_base_port=21100)
    out = {}
    for home in homes:
        author = load_author(home.path, pseudonyms=CountingSource())
        out[author.member] = author
    return out


def context(genesis: Genesis, now: int) -> TxContext:
    """What validating the story's transactions needs: no nonce seen before."""
    return TxContext(
        chain_id=genesis.chain_id,
        members=member_table(genesis.members),
        now_ms=now,
        max_skew_ms=60_000,
        nonce_seen=lambda member, nonce: False,
    )


def test_every_record_is_a_valid_transaction_of_the_partner_that_saw_it(tmp_path: Path) -> None:
    team = authors(tmp_path, 6)
    now = int(time.time() * 1000)
    signed = fraud_ring(team, now)
    genesis = next(iter(team.values())).genesis
    ctx = context(genesis, now)
    institutions = {m.name: m.institution for m in genesis.members}
    assert len(signed) == len(STORY)
    for (member, tx), record in zip(signed, sorted(STORY, key=lambda r: -r.days_ago), strict=True):
        validated = validate_tx(tx, ctx)
        assert validated.tx.member == member
        assert institutions[member] == record.reporter.partition(":")[0]
        assert validated.body.kind == record.kind
        assert now - 31 * 86_400_000 < validated.body.observed_ms <= now  # type: ignore[union-attr]
        if isinstance(validated.body, Report):
            # What the partner counted, typed: every report says something, and its
            # first and last sightings (when given) are real dates in order.
            attributes = dict((a.key, a.value) for a in validated.body.attributes)
            assert attributes and set(attributes) <= set(CATEGORY_KEYS[validated.body.category])
            if "first_seen" in attributes:
                assert attributes["first_seen"] <= attributes["last_seen"]
    assert {member for member, _ in signed} == set(team)  # all six partners report


def test_a_consortium_without_the_six_partners_is_told_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs 2 telecom member"):
        fraud_ring(authors(tmp_path, 4), int(time.time() * 1000))


def test_each_partner_asks_for_its_pseudonyms_once_and_they_are_the_ones_signed(
    tmp_path: Path,
) -> None:
    team = authors(tmp_path, 6)
    now = int(time.time() * 1000)
    signed = fraud_ring_with_refs(team, now)
    named = fraud_ring_entities()
    for author in team.values():
        source = author.pseudonyms
        assert isinstance(source, CountingSource)
        # One request per partner, each identifier in it once.
        mine = {e for (member, _, _), ends in zip(signed, named, strict=True) for e in ends
                if member == author.member}  # fmt: skip
        assert source.requests == [len(mine)]
    genesis = next(iter(team.values())).genesis
    ctx = context(genesis, now)
    expected = KeyedPseudonyms(TEST_KEY)
    for (_, tx, refs), ends in zip(signed, named, strict=True):
        assert list(refs) == expected.refs(list(ends))
        body = validate_tx(tx, ctx).body
        if isinstance(body, Report):
            assert (body.subject,) == refs
        else:
            assert isinstance(body, Link) and (body.a, body.b) == refs
