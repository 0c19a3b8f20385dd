"""The pseudonym key ceremony: a distributed key generation (joint Feldman VSS with
complaints, ``node.identifiers.dkg``) run by the genesis members before the first
block, so that no party, the assembler included, ever holds the whole key.

The steps, each a pure function over the files' contents (``node.setup.ceremony_files``):

1. ``make_deal``: each member deals a random polynomial; its share for member j is
   sealed to j with ``crypto_box`` (X25519 keys derived from the members' Ed25519 node
   keys), so the deal holds commitments and ciphertexts only.
2. ``collect``: the assembler checks every deal and bundles them; it sees no share.
3. ``complain``: each member opens its shares and names the dealers whose share failed.
4. ``answer``: a dealer complained against reveals those shares in the clear.
5. ``finish``: complaints resolved by a valid revealed share; unanswered or badly
   answered ones disqualify the dealer; with at least t qualified dealers the public
   shares and public key go into the genesis.
6. ``final_share``: each member sums its shares from the qualified dealers and checks
   the sum against its public share in the genesis.

Member j is the j-th member of the draft (1-based), as in ``dkg``. Every file is bound
to the draft's hash, and complaints and answers to the bundle's, so nothing can be
replayed into another consortium or another run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import nacl.exceptions
import nacl.utils
from nacl.bindings import (
    crypto_box,
    crypto_box_BOXZEROBYTES,
    crypto_box_NONCEBYTES,
    crypto_box_open,
    crypto_box_ZEROBYTES,
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_ed25519_sk_to_curve25519,
    crypto_sign_seed_keypair,
)

from consensus.codec import encode_value
from consensus.crypto import hash_bytes, verify_signature
from node.identifiers import dkg
from node.identifiers.group import SCALAR_SIZE, base_mul
from node.setup.ceremony_files import (
    HASH_SIZE,
    Answer,
    CeremonyError,
    Complaints,
    Deal,
    DealBundle,
    RevealedShare,
    signed_message,
)
from node.setup.genesis import (
    Genesis,
    GenesisDraft,
    GenesisError,
    GenesisPseudonyms,
    finished_genesis,
)
from node.setup.keys import NodeKey
from node.setup.shares import PseudonymShare

__all__ = [
    "Answer",
    "CeremonyError",
    "Complaints",
    "Deal",
    "DealBundle",
    "answer",
    "check_bundle",
    "collect",
    "complain",
    "final_share",
    "finish",
    "make_deal",
    "run_in_process",
]

SignedItem = TypeVar("SignedItem", Deal, Complaints, Answer)

_INDEX_BYTES = 2
_PLAINTEXT_SIZE = HASH_SIZE + 2 * _INDEX_BYTES + SCALAR_SIZE
# The box's authenticator (PyNaCl 1.6 binds no crypto_box_MACBYTES): 16 bytes.
_BOX_MAC = crypto_box_ZEROBYTES - crypto_box_BOXZEROBYTES
CIPHERTEXT_SIZE = crypto_box_NONCEBYTES + _BOX_MAC + _PLAINTEXT_SIZE


# ---- keys and sealing ------------------------------------------------------------------


def _curve_secret(key: NodeKey) -> bytes:
    _, secret64 = crypto_sign_seed_keypair(key.seed)
    curve: bytes = crypto_sign_ed25519_sk_to_curve25519(secret64)
    return curve


def _curve_public(public_key: bytes) -> bytes:
    curve: bytes = crypto_sign_ed25519_pk_to_curve25519(public_key)
    return curve


def _plaintext(draft_hash: bytes, dealer: int, recipient: int, share: bytes) -> bytes:
    return (
        draft_hash
        + dealer.to_bytes(_INDEX_BYTES, "big")
        + recipient.to_bytes(_INDEX_BYTES, "big")
        + share
    )


def _seal(draft: GenesisDraft, key: NodeKey, dealer: int, recipient: int, share: bytes) -> bytes:
    nonce = nacl.utils.random(crypto_box_NONCEBYTES)
    peer = _curve_public(draft.members[recipient - 1].public_key)
    plaintext = _plaintext(draft.hash(), dealer, recipient, share)
    return nonce + bytes(crypto_box(plaintext, nonce, peer, _curve_secret(key)))


def _open(
    draft: GenesisDraft, key: NodeKey, peer_public_key: bytes, dealer: int, recipient: int,
    ciphertext: bytes,
) -> bytes | None:  # fmt: skip
    """The share in ``ciphertext``, or None when it does not decrypt or is not bound to
    this draft, dealer and recipient. Either end can open it: crypto_box's key is the
    same X25519 secret from both sides."""
    if len(ciphertext) != CIPHERTEXT_SIZE:
        return None
    nonce, box = ciphertext[:crypto_box_NONCEBYTES], ciphertext[crypto_box_NONCEBYTES:]
    try:
        plaintext = bytes(
            crypto_box_open(box, nonce, _curve_public(peer_public_key), _curve_secret(key))
        )
    except (nacl.exceptions.CryptoError, ValueError):
        return None
    expected_head = _plaintext(draft.hash(), dealer, recipient, b"")
    if len(plaintext) != _PLAINTEXT_SIZE or plaintext[: len(expected_head)] != expected_head:
        return None
    return plaintext[len(expected_head) :]


def _index_of_key(draft: GenesisDraft, key: NodeKey, what: str) -> int:
    for i, m in enumerate(draft.members):
        if m.public_key == key.public_key:
            return i + 1
    raise CeremonyError(
        f"{what}: this node key ({key.public_key.hex()[:16]}...) is not a member of the draft"
    )


def _index_of_name(draft: GenesisDraft, name: str, where: str) -> int:
    index = draft.member_index(name)
    if index is None:
        raise CeremonyError(f"{where}: {name!r} is not a member of the draft")
    return index


def _check_signature(draft: GenesisDraft, item: Deal | Complaints | Answer, author: str,
                     where: str) -> None:  # fmt: skip
    index = _index_of_name(draft, author, where)
    public_key = draft.members[index - 1].public_key
    if not verify_signature(public_key, signed_message(draft.chain_id, item), item.signature):
        raise CeremonyError(
            f"{where}: the signature is not {author}'s (not made with its node key over "
            "this file's contents)"
        )


def _check_draft_hash(draft: GenesisDraft, draft_hash: bytes, where: str) -> None:
    if draft_hash != draft.hash():
        raise CeremonyError(
            f"{where}: made for another draft ({draft_hash.hex()[:16]}...), not this one "
            f"({draft.hash().hex()[:16]}...)"
        )


def _signed(draft: GenesisDraft, key: NodeKey, unsigned: SignedItem) -> SignedItem:
    """``unsigned`` with this member's signature over it."""
    signature = key.signer().sign(signed_message(draft.chain_id, unsigned))
    return dataclasses.replace(unsigned, signature=signature)


# ---- 1. deal ---------------------------------------------------------------------------


def make_deal(draft: GenesisDraft, key: NodeKey, dealing: dkg.Dealing | None = None) -> Deal:
    """This member's signed deal; ``dealing`` exists for tests (a dealer who cheats)."""
    n, t = len(draft.members), draft.pseudonyms.threshold
    me = _index_of_key(draft, key, "deal")
    dealing = dealing if dealing is not None else dkg.deal(t, n)
    ciphertexts = tuple(_seal(draft, key, me, j, dealing.shares[j - 1]) for j in range(1, n + 1))
    unsigned = Deal(draft.hash(), draft.members[me - 1].name, dealing.commitments, ciphertexts)
    return _signed(draft, key, unsigned)


def check_deal(draft: GenesisDraft, deal: Deal, where: str) -> None:
    """Refuse a deal not signed by the member it names, for another draft, with bad
    commitments or without one well-sized ciphertext per member."""
    where = f"{where}: deal by {deal.dealer}"
    _check_draft_hash(draft, deal.draft_hash, where)
    try:
        dkg.check_commitments(deal.commitments, draft.pseudonyms.threshold)
    except ValueError as exc:
        raise CeremonyError(f"{where}: {exc}") from None
    n = len(draft.members)
    if len(deal.ciphertexts) != n:
        raise CeremonyError(
            f"{where}: {len(deal.ciphertexts)} ciphertexts, expected one per member ({n})"
        )
    for j, ciphertext in enumerate(deal.ciphertexts, start=1):
        if len(ciphertext) != CIPHERTEXT_SIZE:
            raise CeremonyError(
                f"{where}: the ciphertext for {draft.members[j - 1].name} is "
                f"{len(ciphertext)} bytes, expected {CIPHERTEXT_SIZE}"
            )
    # Last: a deal cut short in transit is named for what is missing, not as a forgery.
    _check_signature(draft, deal, deal.dealer, where)


# ---- 2. collect ------------------------------------------------------------------------


def collect(draft: GenesisDraft, deals: Sequence[tuple[str, Deal]]) -> DealBundle:
    """The bundle of the deals (each given with the file it came from), in genesis order."""
    by_index: dict[int, tuple[str, Deal]] = {}
    for where, deal in deals:
        check_deal(draft, deal, where)
        index = _index_of_name(draft, deal.dealer, where)
        if index in by_index:
            raise CeremonyError(
                f"{where}: a second deal by {deal.dealer} (the first is in {by_index[index][0]})"
            )
        by_index[index] = (where, deal)
    t = draft.pseudonyms.threshold
    if len(by_index) < t:
        raise CeremonyError(
            f"{len(by_index)} deals, but the key needs at least the threshold ({t}) of dealers"
        )
    return DealBundle(draft.hash(), tuple(by_index[i][1] for i in sorted(by_index)))


# (draft hash, bundle hash) of bundles that passed ``check_bundle``: both are immutable
# values, so a bundle checked once need not be checked again by the next step of the
# same process (``run_in_process`` runs every member's steps over one bundle).
_CHECKED_BUNDLES: dict[tuple[bytes, bytes], None] = {}
_CHECKED_BUNDLES_KEPT = 8


def check_bundle(draft: GenesisDraft, bundle: DealBundle, where: str) -> None:
    """What every member checks of the assembler's bundle: nobody need trust it."""
    _check_draft_hash(draft, bundle.draft_hash, where)
    checked = (bundle.draft_hash, bundle.hash())
    if checked in _CHECKED_BUNDLES:
        return
    _check_bundle_deals(draft, bundle, where)
    if len(_CHECKED_BUNDLES) >= _CHECKED_BUNDLES_KEPT:
        _CHECKED_BUNDLES.pop(next(iter(_CHECKED_BUNDLES)))
    _CHECKED_BUNDLES[checked] = None


def _check_bundle_deals(draft: GenesisDraft, bundle: DealBundle, where: str) -> None:
    seen: set[int] = set()
    last = 0
    for deal in bundle.deals:
        check_deal(draft, deal, where)
        index = _index_of_name(draft, deal.dealer, where)
        if index in seen:
            raise CeremonyError(f"{where}: a second deal by {deal.dealer}")
        if index < last:
            raise CeremonyError(f"{where}: deals are not in genesis order at {deal.dealer}")
        seen.add(index)
        last = index


def _open_deal(draft: GenesisDraft, key: NodeKey, me: int, deal: Deal) -> bytes | None:
    """Member ``me``'s share in ``deal`` when it decrypts (not yet checked)."""
    dealer = _index_of_name(draft, deal.dealer, "deal")
    return _open(
        draft, key, draft.members[dealer - 1].public_key, dealer, me, deal.ciphertexts[me - 1]
    )


def _opened_share(draft: GenesisDraft, key: NodeKey, me: int, deal: Deal) -> bytes | None:
    """Member ``me``'s share in ``deal`` when it decrypts and passes its check."""
    share = _open_deal(draft, key, me, deal)
    if share is None or not dkg.share_is_valid(deal.commitments, me, share):
        return None
    return share


# ---- 3. complain -----------------------------------------------------------------------


def complain(
    draft: GenesisDraft, bundle: DealBundle, key: NodeKey, *, bundle_file: str = "deals"
) -> Complaints:
    """This member's signed complaints: every dealer whose share failed (maybe none)."""
    check_bundle(draft, bundle, bundle_file)
    me = _index_of_key(draft, key, "check")
    against = tuple(
        deal.dealer for deal in bundle.deals if _opened_share(draft, key, me, deal) is None
    )
    unsigned = Complaints(draft.hash(), bundle.hash(), draft.members[me - 1].name, against)
    return _signed(draft, key, unsigned)


def check_complaints(
    draft: GenesisDraft, bundle: DealBundle, complaints: Complaints, where: str
) -> None:
    where = f"{where}: complaints by {complaints.member}"
    _check_draft_hash(draft, complaints.draft_hash, where)
    if complaints.deals_hash != bundle.hash():
        raise CeremonyError(f"{where}: made about another bundle of deals")
    _check_signature(draft, complaints, complaints.member, where)
    for i, dealer in enumerate(complaints.against):
        if bundle.deal_of(dealer) is None:
            raise CeremonyError(f"{where}: against[{i}]: {dealer!r} made no deal")
        if dealer in complaints.against[:i]:
            raise CeremonyError(f"{where}: against[{i}]: {dealer!r} named twice")


# ---- 4. answer -------------------------------------------------------------------------


def answer(
    draft: GenesisDraft,
    bundle: DealBundle,
    complaints: Iterable[Complaints],
    key: NodeKey,
    *,
    shares: Mapping[int, bytes] | None = None,
    bundle_file: str = "deals",
) -> Answer | None:
    """This dealer's signed answer revealing each complained-about share, or None when no
    complaint names it. The shares are re-opened from its own ciphertexts; ``shares``
    (member index -> share) exists for tests."""
    check_bundle(draft, bundle, bundle_file)
    me = _index_of_key(draft, key, "answer")
    name = draft.members[me - 1].name
    deal = bundle.deal_of(name)
    recipients = []
    for c in complaints:
        check_complaints(draft, bundle, c, "complaints")
        if name in c.against:
            recipients.append(_index_of_name(draft, c.member, "complaints"))
    if not recipients:
        return None
    if deal is None:
        raise CeremonyError(f"answer: {name} made no deal in this bundle, so has nothing to answer")
    revealed = []
    for j in sorted(set(recipients)):
        share = shares.get(j) if shares is not None else None
        if share is None:
            peer = draft.members[j - 1].public_key
            share = _open(draft, key, peer, me, j, deal.ciphertexts[j - 1])
        if share is None:
            raise CeremonyError(
                f"answer: {name}'s own ciphertext for {draft.members[j - 1].name} does not "
                "decrypt with this node key; the share cannot be revealed"
            )
        revealed.append(RevealedShare(draft.members[j - 1].name, share))
    unsigned = Answer(draft.hash(), bundle.hash(), name, tuple(revealed))
    return _signed(draft, key, unsigned)


def check_answer(draft: GenesisDraft, bundle: DealBundle, answer: Answer, where: str) -> None:
    where = f"{where}: answer by {answer.dealer}"
    _check_draft_hash(draft, answer.draft_hash, where)
    if answer.deals_hash != bundle.hash():
        raise CeremonyError(f"{where}: made about another bundle of deals")
    _check_signature(draft, answer, answer.dealer, where)
    if bundle.deal_of(answer.dealer) is None:
        raise CeremonyError(f"{where}: {answer.dealer} made no deal")
    names = [r.recipient for r in answer.revealed]
    for i, recipient in enumerate(names):
        _index_of_name(draft, recipient, f"{where}: revealed[{i}]")
        if recipient in names[:i]:
            raise CeremonyError(f"{where}: revealed[{i}]: {recipient!r} named twice")


def _revealed_share(answers: Iterable[Answer], dealer: str, recipient: str) -> bytes | None:
    for a in answers:
        if a.dealer == dealer:
            for r in a.revealed:
                if r.recipient == recipient:
                    return r.share
    return None


# ---- 5. finish -------------------------------------------------------------------------


def _by_author(items: Sequence[tuple[str, Complaints | Answer]], kind: str) -> None:
    seen: dict[str, str] = {}
    for where, item in items:
        author = item.member if isinstance(item, Complaints) else item.dealer
        if author in seen:
            raise CeremonyError(f"{where}: a second {kind} file by {author} (see {seen[author]})")
        seen[author] = where


def qualified_dealers(
    draft: GenesisDraft,
    bundle: DealBundle,
    complaints: Sequence[Complaints],
    answers: Sequence[Answer],
) -> tuple[str, ...]:
    """The dealers whose every complaint was answered with a share that checks."""
    disqualified: set[str] = set()
    for c in complaints:
        recipient = _index_of_name(draft, c.member, "complaints")
        for dealer in c.against:
            deal = bundle.deal_of(dealer)
            assert deal is not None  # check_complaints
            share = _revealed_share(answers, dealer, c.member)
            if share is None or not dkg.share_is_valid(deal.commitments, recipient, share):
                disqualified.add(dealer)
    return tuple(d.dealer for d in bundle.deals if d.dealer not in disqualified)


def transcript_hash(
    bundle: DealBundle, complaints: Sequence[Complaints], answers: Sequence[Answer]
) -> bytes:
    """The hash of everything the result came from, in a canonical order."""
    parts = [bundle.hash()]
    parts += [hash_bytes("dkg-complaints", encode_value(c)) for c in complaints]
    parts += [hash_bytes("dkg-answer", encode_value(a)) for a in answers]
    return hash_bytes("dkg-transcript", b"".join(parts))


def finish(
    draft: GenesisDraft,
    bundle: DealBundle,
    complaints: Sequence[tuple[str, Complaints]] = (),
    answers: Sequence[tuple[str, Answer]] = (),
    *,
    bundle_file: str = "deals",
) -> Genesis:
    """The final genesis (the draft's members, time, consensus and approvals) from the
    bundle, all complaints and answers, each given with the file it came from."""
    check_bundle(draft, bundle, bundle_file)
    for where, c in complaints:
        check_complaints(draft, bundle, c, where)
    for where, a in answers:
        check_answer(draft, bundle, a, where)
    _by_author(complaints, "complaints")
    _by_author(answers, "answer")

    def order(name: str) -> int:
        return _index_of_name(draft, name, "finish")

    sorted_complaints = sorted((c for _, c in complaints), key=lambda c: order(c.member))
    sorted_answers = sorted((a for _, a in answers), key=lambda a: order(a.dealer))
    qualified = qualified_dealers(draft, bundle, sorted_complaints, sorted_answers)
    t = draft.pseudonyms.threshold
    if len(qualified) < t:
        dropped = [d.dealer for d in bundle.deals if d.dealer not in qualified]
        raise CeremonyError(
            f"only {len(qualified)} qualified dealers, fewer than the threshold ({t}); "
            f"disqualified for unanswered or failed complaints: {', '.join(dropped)}; "
            "the ceremony must start again from the draft"
        )
    commitments = [d.commitments for d in bundle.deals if d.dealer in qualified]
    n = len(draft.members)
    p = draft.pseudonyms
    try:
        return finished_genesis(
            draft,
            GenesisPseudonyms(
                threshold=p.threshold,
                public_key=dkg.group_public_key(commitments),
                public_shares=tuple(dkg.public_share(commitments, j) for j in range(1, n + 1)),
                dealers=qualified,
                transcript=transcript_hash(bundle, sorted_complaints, sorted_answers),
                report_quota_per_day=p.report_quota_per_day,
                query_quota_per_case_per_day=p.query_quota_per_case_per_day,
                scheme=p.scheme,
            ),
        )
    except (GenesisError, ValueError) as exc:
        raise CeremonyError(f"finish: the result is not a valid genesis: {exc}") from None


# ---- 6. share --------------------------------------------------------------------------


def final_share(
    genesis: Genesis,
    bundle: DealBundle,
    answers: Sequence[tuple[str, Answer]],
    key: NodeKey,
    *,
    bundle_file: str = "deals",
) -> PseudonymShare:
    """This member's share of the key: the sum of its shares from the qualified dealers
    (opened from the deals, or revealed in an answer), checked against the genesis."""
    draft = genesis.draft()
    if bundle.draft_hash != draft.hash():
        raise CeremonyError(
            f"{bundle_file}: made for another draft than this genesis's; use the bundle "
            "this genesis was finished from"
        )
    check_bundle(draft, bundle, bundle_file)
    for where, a in answers:
        check_answer(draft, bundle, a, where)
    me = _index_of_key(draft, key, "share")
    name = draft.members[me - 1].name
    checked_answers = [a for _, a in answers]
    deals = []
    for dealer in genesis.pseudonyms.dealers:
        deal = bundle.deal_of(dealer)
        if deal is None:
            raise CeremonyError(
                f"{bundle_file}: qualified dealer {dealer} has no deal in this bundle"
            )
        deals.append(deal)
    public_share = genesis.pseudonyms.public_shares[me - 1]
    # Opened only: when their sum matches the public share, it is the share, and the
    # t multiplications per dealer of checking each one are spared.
    opened = [_open_deal(draft, key, me, deal) for deal in deals]
    if all(s is not None for s in opened):
        secret = dkg.combine_shares([s for s in opened if s is not None])
        if base_mul(secret) == public_share:
            return PseudonymShare(me, secret, genesis.hash())
    shares = []
    for deal, share in zip(deals, opened, strict=True):
        if share is None or not dkg.share_is_valid(deal.commitments, me, share):
            share = _revealed_share(checked_answers, deal.dealer, name)
            if share is None or not dkg.share_is_valid(deal.commitments, me, share):
                raise CeremonyError(
                    f"share: {deal.dealer}'s share for {name} fails its check and no answer "
                    "reveals a valid one; pass that dealer's answer with --answers"
                )
        shares.append(share)
    secret = dkg.combine_shares(shares)
    if base_mul(secret) != public_share:
        raise CeremonyError(
            f"share: {name}'s share does not match its public share in the genesis; this "
            "genesis was not finished from these deals and answers"
        )
    return PseudonymShare(me, secret, genesis.hash())


# ---- all at once -----------------------------------------------------------------------


def run_in_process(
    draft: GenesisDraft, member_keys: Sequence[NodeKey]
) -> tuple[Genesis, list[PseudonymShare]]:
    """The whole ceremony, member by member through the steps above, each member's
    dealing made with its own key (for local consortia and test fixtures). Shares are
    returned in genesis order."""
    by_public = {k.public_key: k for k in member_keys}
    keys = []
    for m in draft.members:
        if m.public_key not in by_public:
            raise CeremonyError(f"run_in_process: no node key for member {m.name}")
        keys.append(by_public[m.public_key])
    deals = [
        (f"deal of {m.name}", make_deal(draft, k)) for m, k in zip(draft.members, keys, strict=True)
    ]
    bundle = collect(draft, deals)
    complaints = [(f"complaints of {m.name}", complain(draft, bundle, k))
                  for m, k in zip(draft.members, keys, strict=True)]  # fmt: skip
    only = [c for _, c in complaints]
    answers = []
    for m, k in zip(draft.members, keys, strict=True):
        reply = answer(draft, bundle, only, k)
        if reply is not None:
            answers.append((f"answer of {m.name}", reply))
    genesis = finish(draft, bundle, complaints, answers)
    shares = [final_share(genesis, bundle, answers, k) for k in keys]
    return genesis, shares
