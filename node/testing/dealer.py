"""A TRUSTED DEALER of pseudonym key shares, for tests and test fixtures only.

In a real consortium nobody ever holds the pseudonym key: the genesis members make it
together in the key ceremony (``node.setup.ceremony``), and each keeps one share. A
test often needs the opposite: a key it knows whole, so that it can compute the
pseudonyms a consortium would compute (``oprf.pseudonym_with_key``) without running
nodes, e.g. to write a synthetic ledger of a million reports straight into the stores
(``node.testing.chain_fixture``), to sign load before the nodes start, or to check an
answer against the expected pseudonym. This module picks (or is given) that key, splits
it into Shamir shares for n members with threshold t, and returns the genesis section
and the share files the ceremony would have produced, so the real nodes started on them
evaluate, through the threshold protocol, exactly the pseudonyms the test computed
offline.

No production path uses it, and none can: ``node.testing`` sits above every other layer
(``tests/layer_rules.py``), so the daemon, the API and the services cannot import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consensus.crypto import hash_bytes
from node.identifiers import oprf
from node.identifiers.group import (
    ORDER,
    base_mul,
    hash_to_scalar,
    random_scalar,
    scalar_from_int,
    scalar_to_int,
)
from node.identifiers.pseudonym import EntityRef
from node.ledger.authoring import normalize_items
from node.setup.config import load_config
from node.setup.genesis import (
    DEFAULT_QUERY_QUOTA,
    DEFAULT_REPORT_QUOTA,
    Genesis,
    GenesisDraft,
    GenesisPseudonyms,
    finished_genesis,
    load_genesis,
    save_genesis,
)
from node.setup.keys import load_key
from node.setup.provision import CONFIG_FILE
from node.setup.shares import PseudonymShare, save_share

_SEED_PERSON = b"ct-test-dealer"


def key_from_label(label: str) -> bytes:
    """A fixed whole key for a fixture that must be the same in every run (a benchmark
    ledger built once and reused, a cluster restarted from its directories)."""
    return _nonzero(hash_to_scalar(_SEED_PERSON, b"key", label.encode()))


def _nonzero(scalar: bytes) -> bytes:
    # A zero scalar has probability 1/L; it is refused rather than silently used.
    if scalar_to_int(scalar) % ORDER == 0:
        raise ValueError("a zero scalar; pick another label")
    return scalar


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for a in reversed(coefficients):  # Horner
        result = (result * x + a) % ORDER
    return result


@dataclass(frozen=True)
class TrustedDealing:
    """A whole key and its Shamir shares: ``secrets[j - 1]`` is member j's share, and
    ``public_shares[j - 1]`` its public key share (j = the member's 1-based position)."""

    key: bytes = field(repr=False)
    threshold: int
    secrets: tuple[bytes, ...] = field(repr=False)
    public_shares: tuple[bytes, ...]
    public_key: bytes

    @property
    def members(self) -> int:
        return len(self.secrets)

    def genesis_pseudonyms(
        self,
        dealers: Sequence[str],
        *,
        report_quota_per_day: int = DEFAULT_REPORT_QUOTA,
        query_quota_per_case_per_day: int = DEFAULT_QUERY_QUOTA,
    ) -> GenesisPseudonyms:
        """The genesis section a ceremony among ``dealers`` would have written; the
        transcript is a hash of the public shares (there were no deals to record)."""
        transcript = hash_bytes(
            "trusted-dealer-transcript", self.public_key + b"".join(self.public_shares)
        )
        return GenesisPseudonyms(
            threshold=self.threshold,
            public_key=self.public_key,
            public_shares=self.public_shares,
            dealers=tuple(dealers),
            transcript=transcript,
            report_quota_per_day=report_quota_per_day,
            query_quota_per_case_per_day=query_quota_per_case_per_day,
        )

    def shares(self, genesis: Genesis) -> list[PseudonymShare]:
        """Member j's share file content, tied to ``genesis``, at position j - 1."""
        genesis_hash = genesis.hash()
        return [
            PseudonymShare(index, secret, genesis_hash)
            for index, secret in enumerate(self.secrets, start=1)
        ]

    def source(self) -> KeyedPseudonyms:
        return KeyedPseudonyms(self.key)

    def ref(self, entity_type: str, raw: str) -> EntityRef:
        return self.source().refs([(entity_type, raw)])[0]


def deal(
    members: int, threshold: int, key: bytes | None = None, *, seed: str | None = None
) -> TrustedDealing:
    """Shares of ``key`` (random if not given) for ``members`` members, any
    ``threshold`` of whom evaluate it. With ``seed`` the polynomial is fixed too, so the
    same call gives the same genesis every time."""
    if not 2 <= threshold <= members:
        raise ValueError(f"the threshold must be 2 to {members}, got {threshold}")
    if seed is not None:
        whole = key if key is not None else key_from_label(seed)
        higher = [
            scalar_to_int(hash_to_scalar(_SEED_PERSON, b"coefficient", seed.encode(), bytes([m])))
            for m in range(1, threshold)
        ]
    else:
        whole = key if key is not None else random_scalar()
        higher = [scalar_to_int(random_scalar()) for _ in range(1, threshold)]
    _nonzero(whole)
    coefficients = [scalar_to_int(whole), *higher]
    secrets = tuple(
        _nonzero(scalar_from_int(_evaluate(coefficients, j))) for j in range(1, members + 1)
    )
    return TrustedDealing(
        key=whole,
        threshold=threshold,
        secrets=secrets,
        public_shares=tuple(base_mul(s) for s in secrets),
        public_key=base_mul(whole),
    )


def dealt_genesis(
    draft: GenesisDraft, key: bytes | None = None, *, seed: str | None = None
) -> tuple[Genesis, list[PseudonymShare], TrustedDealing]:
    """``draft`` finished as if its members had run the ceremony, on a key the caller
    knows: the genesis, each member's share (member i at position i) and the dealing."""
    params = draft.pseudonyms
    dealing = deal(len(draft.members), params.threshold, key, seed=seed)
    pseudonyms = dealing.genesis_pseudonyms(
        [m.name for m in draft.members],
        report_quota_per_day=params.report_quota_per_day,
        query_quota_per_case_per_day=params.query_quota_per_case_per_day,
    )
    genesis = finished_genesis(draft, pseudonyms)
    return genesis, dealing.shares(genesis), dealing


# For tests whose pseudonyms only need to be well formed and stable (no node evaluates
# them): a transaction's codec, a schema, load for a consortium that is never queried.
TEST_KEY = key_from_label("tests")


def keyed_ref(key: bytes, entity_type: str, raw: str) -> EntityRef:
    """The reference a consortium whose key is ``key`` gives (``raw`` as typed)."""
    return KeyedPseudonyms(key).refs([(entity_type, raw)])[0]


@dataclass(frozen=True)
class KeyedPseudonyms:
    """A ``PseudonymSource`` that computes with a whole key, offline: for load signed
    before the nodes start and for fixtures. It gives the pseudonyms the consortium's
    nodes give when their shares were dealt from ``key``."""

    key: bytes = field(repr=False)

    def refs(self, items: Sequence[tuple[str, str]]) -> list[EntityRef]:
        return [
            EntityRef(entity_type, oprf.pseudonym_with_key(self.key, entity_type, value))
            for entity_type, value in normalize_items(items)
        ]


def redeal_homes(homes: Sequence[Path], key: bytes) -> tuple[Genesis, TrustedDealing]:
    """Replace the genesis and the share files of freshly made member homes (e.g. by
    ``make_testnet``, before any node has run) with a dealing of ``key``, keeping every
    other parameter of their genesis: for fixtures that write a ledger offline with
    ``key``'s pseudonyms and then start real nodes on it."""
    first = load_config(homes[0] / CONFIG_FILE)
    old = load_genesis(first.node.genesis_file)
    genesis, shares, dealing = dealt_genesis(old.draft(), key)
    for home in homes:
        config = load_config(home / CONFIG_FILE)
        me = genesis.member_index(load_key(config.node.key_file, None).public_key)
        if me is None:
            raise ValueError(f"{home}: its key is not a member of the genesis")
        save_genesis(config.node.genesis_file, genesis)
        config.tracing.pseudonym_share_file.unlink(missing_ok=True)
        save_share(config.tracing.pseudonym_share_file, shares[me], None)
    return genesis, dealing
