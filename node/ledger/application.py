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
from collections.abc import Iterable, Sequence
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
    check_clock,
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

    def check_batch(
        self,
        txs: list[bytes],
        now_ms: int,
        known: Sequence[ValidatedTx | None] | None = None,
    ) -> list[ValidatedTx | TxRejected]:
        """The stateless part of admission (decode, signature, member, role, clock,
        committed nonces) for many transactions. It touches no state of this object, so
        the runtime runs it in a worker thread; ``accept`` then finishes on the loop.
        ``known`` (from ``known_forms``, taken on the loop) are checked forms this node
        already holds: those need only the clock and nonce checks, not the signature
        again. The committed nonces of the whole batch are looked up in one read
        transaction."""
        ctx = replace(self._context(now_ms), nonce_seen=_never_seen)
        out: list[ValidatedTx | TxRejected] = []
        for i, tx_bytes in enumerate(txs):
            form = None if known is None else known[i]
            try:
                if form is None:
                    out.append(validate_tx(tx_bytes, ctx))
                else:
                    check_clock(form.tx, ctx)
                    out.append(form)
            except TxRejected as exc:
                out.append(exc)
        keys = [(v.tx.member, v.tx.nonce) for v in out if isinstance(v, ValidatedTx)]
        used = self.ledger.nonces_used(keys) if keys else set()
        if used:
            for i, outcome in enumerate(out):
                if isinstance(outcome, ValidatedTx) and (
                    (member := outcome.tx.member, nonce := outcome.tx.nonce) in used
                ):
                    out[i] = TxRejected(
                        RejectCode.REPLAY, f"nonce {nonce} of member {member!r} was already used"
                    )
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

    def known_forms(self, txs: Sequence[bytes]) -> list[ValidatedTx | None]:
        """For each transaction, its checked form if this node holds one, else None."""
        return [self._verified.get(tx_id(tx)) for tx in txs]

    def check_unclocked(self, txs: Sequence[bytes]) -> list[ValidatedTx | None]:
        """What ``check_proposed`` checks before its nonce look-up (signature, member,
        role, body; no clock), for the transactions of one proposal; None for one that
        fails, and for all after it: one bad transaction sinks the proposal, so no more
        signatures are worth verifying. Changes nothing here, so it runs in a worker
        thread; ``remember`` keeps the results."""
        ctx = replace(self._context(0), max_skew_ms=2**62, nonce_seen=_never_seen)
        out: list[ValidatedTx | None] = []
        for tx_bytes in txs:
            try:
                out.append(validate_tx(tx_bytes, ctx))
            except TxRejected:
                break
        return out + [None] * (len(txs) - len(out))

    def remember(self, forms: Iterable[ValidatedTx | None]) -> None:
        """Keep checked forms (from ``check_unclocked``) for the checks that follow."""
        for form in forms:
            if form is not None:
                self._remember(form)

    def checked(self, tx_id: bytes) -> ValidatedTx | None:
        """The checked form of a transaction this node already admitted or judged, if it
        is still held: decoded, signature verified, member and body checked."""
        return self._verified.get(tx_id)

    def index_blocks(self, blocks: list[Block]) -> list[BlockIndex]:
        """Index entries for consecutive committed blocks that are stored together; a
        nonce used earlier in the same group counts as used. The three steps below, for
        a caller that runs the middle one in a worker thread (the node runtime does)."""
        forms = self.checked_forms(blocks)
        indexes = self.build_indexes(blocks, forms)
        self.forget_indexed(indexes)
        return indexes

    def checked_forms(self, blocks: list[Block]) -> list[list[ValidatedTx | None]]:
        """Per block, per transaction: its checked form when this node holds one (it
        admitted the transaction or voted for it), else None. Cheap: no signature."""
        return [[self._verified.get(tx_id(tx)) for tx in block.txs] for block in blocks]

    def build_indexes(
        self, blocks: list[Block], forms: list[list[ValidatedTx | None]]
    ) -> list[BlockIndex]:
        """The index entries of ``blocks``, given ``checked_forms``. Changes nothing in
        this object, so it may run in a worker thread: transactions never checked here
        are checked now (signatures included), and the nonces of the whole group are
        looked up in one read transaction."""
        ctx = replace(self._context(0), max_skew_ms=2**62, nonce_seen=_never_seen)
        validated: list[list[ValidatedTx | None]] = []
        for block, block_forms in zip(blocks, forms, strict=True):
            row: list[ValidatedTx | None] = []
            for tx_bytes, form in zip(block.txs, block_forms, strict=True):
                if form is None:
                    try:
                        form = validate_tx(tx_bytes, ctx)
                    except TxRejected:
                        form = None
                row.append(form)
            validated.append(row)
        keys = {(v.tx.member, v.tx.nonce) for row in validated for v in row if v is not None}
        used = self.ledger.nonces_used(keys) if keys else set()
        seen_nonces: set[tuple[str, int]] = set()
        indexes: list[BlockIndex] = []
        for block, row in zip(blocks, validated, strict=True):
            entries: list[TxIndex] = []
            for tx_bytes, form in zip(block.txs, row, strict=True):
                if form is None:
                    # Stored as ordered (the block is final), indexed under nothing.
                    entries.append(TxIndex(tx_id(tx_bytes)))
                    continue
                key = (form.tx.member, form.tx.nonce)
                if key in seen_nonces or key in used:
                    entries.append(TxIndex(form.tx_id))
                    continue
                seen_nonces.add(key)
                entities, links = _index_body(form)
                cases = _case_postings(form.body)
                entries.append(TxIndex(form.tx_id, entities, links, nonce=key, cases=cases))
            indexes.append(BlockIndex(tuple(entries)))
        return indexes

    def forget_indexed(self, indexes: list[BlockIndex]) -> None:
        """A committed transaction is checked no more, and its nonce is no longer
        pending: the ledger holds it now."""
        for index in indexes:
            for entry in index.txs:
                self._verified.pop(entry.tx_id, None)
                if entry.nonce is not None:
                    self._pending.pop(entry.nonce, None)


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
