"""A small consortium and a ledger builder for the case and tracing tests.

Blocks carry real signed transactions, are indexed by the node's ``Application`` and
certified by a quorum of the genesis members, so ``verify_ledger`` accepts the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus.blocks import Batch, Block, Certificate, CommitSignature, commit_body
from consensus.crypto import Signer, hash_bytes, signing_bytes
from node.identifiers.pseudonym import EntityRef
from node.ledger.application import Application
from node.ledger.kinds import Access, Approve, Body, Case, Close, Link, Report
from node.ledger.store import BlockIndex, LedgerStore
from node.ledger.transactions import encode_tx, make_tx, tx_id
from node.setup.genesis import Genesis, Member, assemble_draft
from node.testing.dealer import dealt_genesis

CHAIN_ID = "crosstrace-test"
T0 = 1_750_000_000_000
DAY = 86_400_000
ROLES = {
    "police": ("reporter", "investigator", "approver", "auditor"),
    "police-b": ("reporter", "investigator"),
    "bank-a": ("reporter", "approver"),
    "telco-b": ("reporter", "approver"),
    "utility-c": ("reporter",),
}
NAMES = tuple(ROLES)
SIGNERS = {name: Signer(hash_bytes("tracing-test-key", name.encode())) for name in NAMES}


def make_genesis(k: int = 2) -> Genesis:
    members = [
        Member(name, "police" if name.startswith("police") else "bank", ROLES[name],
               SIGNERS[name].public_key, f"127.0.0.1:{26600 + i}")
        for i, name in enumerate(NAMES)
    ]  # fmt: skip
    draft = assemble_draft(CHAIN_ID, members, k, genesis_time="2025-01-31T12:00:00Z")
    # A fixed test-only dealing: the same genesis in every call and every process.
    return dealt_genesis(draft, seed="tracing-helpers")[0]


def ent(n: int, entity_type: str = "phone") -> EntityRef:
    return EntityRef(entity_type, hash_bytes("tracing-entity", n.to_bytes(8, "big")))


class LedgerBuilder:
    """Signs transactions as the members and commits them one block at a time."""

    def __init__(self, path: Path, genesis: Genesis | None = None) -> None:
        self.genesis = genesis or make_genesis()
        self.store = LedgerStore.open(
            path, chain_id=CHAIN_ID, genesis_hash=self.genesis.hash(), sync=False
        )
        self.app = Application(self.genesis, self.store)
        self.nonces = dict.fromkeys(NAMES, 0)
        self.committed: list[tuple[Block, BlockIndex]] = []

    def close(self) -> None:
        self.store.close()

    def sign(self, member: str, body: Body, time_ms: int = T0, nonce: int | None = None) -> bytes:
        if nonce is None:
            self.nonces[member] += 1
            nonce = self.nonces[member]
        tx = make_tx(SIGNERS[member], CHAIN_ID, member, body.kind, body, nonce, time_ms)
        return encode_tx(tx)

    def commit(self, txs: Sequence[bytes]) -> tuple[Block, BlockIndex]:
        height, parent = self.store.tip()
        batch = Batch(height + 1, T0 + height + 1, tuple(txs))
        block = Block.from_batch(CHAIN_ID, batch, parent)
        digest = batch.digest(CHAIN_ID)
        body = signing_bytes(CHAIN_ID, "commit", commit_body(0, batch.height, digest))
        quorum = self.genesis.membership().quorum
        sigs = tuple(CommitSignature(i, SIGNERS[NAMES[i]].sign(body)) for i in range(quorum))
        (index,) = self.app.index_blocks([block])
        self.store.append_block(block, Certificate(0, batch.height, digest, sigs), index)
        self.committed.append((block, index))
        return block, index

    # -- bodies, signed but not committed --------------------------------------------

    def report(
        self,
        member: str,
        subject: EntityRef,
        observed_ms: int = T0 - DAY,
        case_id: str | None = None,
        category: str = "fraud_call",
    ) -> bytes:
        body = Report(subject, category, (), case_id, observed_ms, None)
        return self.sign(member, body)

    def link(
        self,
        member: str,
        a: EntityRef,
        b: EntityRef,
        relation: str = "uses",
        observed_ms: int = T0 - DAY,
    ) -> bytes:
        return self.sign(member, Link(a, b, relation, observed_ms, None))

    def case(
        self,
        case_id: str,
        scope: Sequence[EntityRef],
        member: str = "police",
        window: tuple[int, int] = (T0 - 30 * DAY, T0),
        expires_ms: int = T0 + 30 * DAY,
        purpose: str = "telecom_fraud",
        justification_commitment: bytes = bytes(range(32)),
    ) -> bytes:
        body = Case(
            case_id,
            purpose,
            justification_commitment,
            tuple(scope),
            window[0],
            window[1],
            expires_ms,
        )
        return self.sign(member, body)

    def approve(self, member: str, case_id: str, case_tx: bytes) -> bytes:
        return self.sign(member, Approve(case_id, case_tx))

    def close_case(self, member: str, case_id: str, case_tx: bytes) -> bytes:
        return self.sign(member, Close(case_id, case_tx))

    def access(self, member: str, case_id: str, subject: EntityRef, query: str = "trace") -> bytes:
        return self.sign(member, Access(case_id, query, subject, T0))

    def open_active_case(self, case_id: str, scope: Sequence[EntityRef], **kwargs: Any) -> bytes:
        """Commit a case and enough approvals for it; returns the case tx id."""
        case = self.case(case_id, scope, **kwargs)
        case_tx = tx_id(case)
        approvers = ["bank-a", "telco-b", "police"][: self.genesis.case_approvals]
        self.commit([case, *(self.approve(m, case_id, case_tx) for m in approvers)])
        return case_tx
