"""The tracing application on top of consensus: which transactions a node admits, which
ones a backup will vote for, and what a committed block adds to the indexes.

Admission (``admit``) is the full check a member applies to what it accepts from a
client or from gossip, clock and replay included. ``check_proposed`` is the narrower,
clock-free check a backup applies to a primary's batch, so members whose clocks differ
still agree on what may be ordered. ``index_block`` is deterministic: every member
indexes the same committed block the same way, skipping transactions that fail the
deterministic rules (a replayed nonce that slipped into two blocks, say).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from consensus.blocks import Block
from node.identifiers.normalize import EntityType
from node.identifiers.pseudonym import EntityRef
from node.ledger.interface import Ledger
from node.ledger.kinds import (
    Access,
    Approve,
    Body,
    Case,
    Close,
    DisclosureRequest,
    PsiRun,
    Report,
)
from node.ledger.kinds import Link as LinkBody
from node.ledger.layout import BlockIndex, CaseRole, Link, TxIndex, case_key
from node.ledger.transactions import (
    MAX_SKEW_MS,
    RejectCode,
    TxContext,
    TxRejected,
    ValidatedTx,
    member_table,
    tx_id,
    validate_tx,
)
from node.setup.genesis import Genesis

_TYPE_CODES = {t.value: i + 1 for i, t in enumerate(EntityType)}
# Nonces admitted but not yet committed, per node; a bound keeps memory flat under a
# flood, at the cost of letting a replay through to the (deterministic) block check.
_PENDING_NONCES = 200_000
# Transactions whose signature and body this node already checked: a transaction is
# admitted once, then met again in a proposal and in a committed block; checking its
# signature three times would triple the dominant cost.
_VERIFIED_CACHE = 200_000


def entity_key(ref: EntityRef) -> bytes:
    """33 bytes: a type code, then the pseudonym (fixed width keeps the index compact)."""
    return bytes((_TYPE_CODES[ref.type],)) + ref.pseudonym


class Application:
    def __init__(self, genesis: Genesis, ledger: Ledger, max_skew_ms: int = MAX_SKEW_MS) -> None:
        self.genesis = genesis
        self.ledger = ledger
        self.max_skew_ms = max_skew_ms
        self.members = member_table(genesis.members)
        self._pending: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._verified: OrderedDict[bytes, ValidatedTx] = OrderedDict()

    def _remember(self, validated: ValidatedTx) -> None:
        self._verified[validated.tx_id] = validated
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)

    def _validated_without_clock(self, tx_bytes: bytes) -> ValidatedTx:
        """Signature, member, role and body checks (cached); no clock, no replay check."""
        cached = self._verified.get(tx_id(tx_bytes))
        if cached is not None:
            return cached
        ctx = replace(self._context(0), max_skew_ms=2**62, nonce_seen=_never_seen)
        validated = validate_tx(tx_bytes, ctx)
        self._remember(validated)
        return validated

    def _context(self, now_ms: int, *, skew_ms: int | None = None) -> TxContext:
        return TxContext(
            chain_id=self.genesis.chain_id,
            members=self.members,
            now_ms=now_ms,
            max_skew_ms=self.max_skew_ms if skew_ms is None else skew_ms,
            nonce_seen=self.ledger.nonce_used,
        )

    def admit(self, tx_bytes: bytes, now_ms: int) -> ValidatedTx:
        """Everything a member checks before it accepts a transaction; ``TxRejected``
        with a stable code and a precise message otherwise."""
        return self.accept(validate_tx(tx_bytes, self._context(now_ms)))

    def check_batch(self, txs: list[bytes], now_ms: int) -> list[ValidatedTx | TxRejected]:
        """The stateless part of admission (decode, signature, member, role, clock,
        committed nonces) for many transactions. It touches no state of this object, so
        the runtime runs it in a worker thread; ``accept`` then finishes on the loop."""
        ctx = self._context(now_ms)
        out: list[ValidatedTx | TxRejected] = []
        for tx_bytes in txs:
            try:
                out.append(validate_tx(tx_bytes, ctx))
            except TxRejected as exc:
                out.append(exc)
        return out

    def accept(self, validated: ValidatedTx) -> ValidatedTx:
        """The stateful end of admission: a nonce already pending is a replay."""
        key = (validated.tx.member, validated.tx.nonce)
        held = self._pending.get(key)
        if held is not None and held != validated.tx_id:
            raise TxRejected(
                RejectCode.REPLAY,
                f"nonce {validated.tx.nonce} of member {validated.tx.member!r} is already "
                "used by a pending transaction",
            )
        self._pending[key] = validated.tx_id
        while len(self._pending) > _PENDING_NONCES:
            self._pending.popitem(last=False)
        self._remember(validated)
        return validated

    def check_proposed(self, tx_bytes: bytes) -> bool:
        """Would this backup vote for a batch holding ``tx_bytes``? No clock involved."""
        try:
            validated = self._validated_without_clock(tx_bytes)
        except TxRejected:
            return False
        return not self.ledger.nonce_used(validated.tx.member, validated.tx.nonce)

    def index_blocks(self, blocks: list[Block]) -> list[BlockIndex]:
        """Index entries for consecutive committed blocks that are stored together; a
        nonce used earlier in the same group counts as used."""
        seen: set[tuple[str, int]] = set()
        return [self._index_block(block, seen) for block in blocks]

    def _index_block(self, block: Block, seen_nonces: set[tuple[str, int]]) -> BlockIndex:
        entries: list[TxIndex] = []
        for tx_bytes in block.txs:
            try:
                validated = self._validated_without_clock(tx_bytes)
            except TxRejected:
                # Stored as ordered (the block is final), indexed under nothing.
                entries.append(TxIndex(tx_id(tx_bytes)))
                continue
            tid = validated.tx_id
            self._verified.pop(tid, None)
            key = (validated.tx.member, validated.tx.nonce)
            if key in seen_nonces or self.ledger.nonce_used(*key):
                entries.append(TxIndex(tid))
                continue
            seen_nonces.add(key)
            self._pending.pop(key, None)
            entities, links = _index_body(validated)
            cases = _case_postings(validated.body)
            entries.append(TxIndex(tid, entities, links, nonce=key, cases=cases))
        return BlockIndex(tuple(entries))


def _never_seen(member: str, nonce: int) -> bool:
    return False


def _index_body(validated: ValidatedTx) -> tuple[tuple[bytes, ...], tuple[Link, ...]]:
    body = validated.body
    match body:
        case Report():
            return (entity_key(body.subject),), ()
        case LinkBody():
            a, b = entity_key(body.a), entity_key(body.b)
            return (a, b), (Link(a, b, body.relation.encode()),)
        case Case():
            return tuple(entity_key(ref) for ref in body.scope), ()
        case Access() if body.subject is not None:
            return (entity_key(body.subject),), ()
    return (), ()


def _case_postings(body: Body) -> tuple[tuple[bytes, CaseRole], ...]:
    """Where a transaction goes in the ``cases`` index (read by ``node.ledger.cases``)."""
    match body:
        case Case():
            return ((case_key(body.case_id), CaseRole.OPENED),)
        case Approve():
            return ((case_key(body.case_id), CaseRole.APPROVED),)
        case Close():
            return ((case_key(body.case_id), CaseRole.CLOSED),)
        case Report() if body.case_id is not None:
            return ((case_key(body.case_id), CaseRole.REPORT),)
        case Access() | PsiRun() | DisclosureRequest():
            # A PSI run and a disclosure request are accesses under their case: they show
            # in the case's history.
            return ((case_key(body.case_id), CaseRole.ACCESS),)
    return ()
