"""Who can be asked about an entity, and whether a case reaches it: the members whose
committed reports and links name it, and the breadth-first walk over the ledger's link
index that decides whether an entity is in a case's scope or within its depth."""

from __future__ import annotations

from collections.abc import Callable

from consensus.codec import DecodeError
from node.identifiers.pseudonym import EntityRef
from node.ledger.application import entity_key
from node.ledger.cases import CaseRecord
from node.ledger.kinds import Body, Link, Report
from node.ledger.store import LedgerStore
from node.ledger.transactions import Transaction, TxRejected, decode_body, decode_tx

MAX_DEPTH = 6  # as far as a graph query may expand (``node.tracing.queries``)
MAX_REACH_NODES = 10_000

# (case, entity) -> None when the entity is within the case's reach, else the reason.
Reach = Callable[[CaseRecord, EntityRef], str | None]


def disclosure_reporters(store: LedgerStore, entity: EntityRef) -> list[str]:
    """The members whose committed reports and links name ``entity``, in ledger order."""
    members: list[str] = []
    key = entity_key(entity)
    after: tuple[int, int] | None = None
    while True:
        locations = store.entity_txs(key, limit=1000, after=after)
        for data in store.txs_at(locations):
            found = decoded(data)
            if found is None:
                continue
            tx, body = found
            if isinstance(body, Report | Link) and tx.member not in members:
                members.append(tx.member)
        if len(locations) < 1000:
            return members
        after = locations[-1]


def decoded(data: bytes) -> tuple[Transaction, Body] | None:
    try:
        tx = decode_tx(data)
        return tx, decode_body(tx)
    except (DecodeError, TxRejected):
        return None


def names(body: Body, entity: EntityRef) -> bool:
    if isinstance(body, Report):
        return body.subject == entity
    if isinstance(body, Link):
        return entity in (body.a, body.b)
    return False


def ledger_reach(store: LedgerStore, max_depth: int = MAX_DEPTH) -> Reach:
    """In the case's scope, or at most ``max_depth`` links from an entity in it, over the
    ledger's link index (as a graph query expands; capped at ``MAX_REACH_NODES``)."""

    def reach(case: CaseRecord, entity: EntityRef) -> str | None:
        if case.in_scope(entity):
            return None
        target = entity_key(entity)
        seen = {entity_key(ref) for ref in case.body.scope}
        frontier = list(seen)
        for _ in range(max_depth):
            following: list[bytes] = []
            for key in frontier:
                for link in store.links_of(key, limit=MAX_REACH_NODES):
                    if link.other == target:
                        return None
                    if link.other not in seen and len(seen) < MAX_REACH_NODES:
                        seen.add(link.other)
                        following.append(link.other)
            frontier = following
            if not frontier:
                break
        return (
            f"the entity is neither in the scope of case {case.case_id!r} nor within "
            f"{max_depth} links of an entity in it"
        )

    return reach
