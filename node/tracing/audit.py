"""The audit trail: every ``access`` transaction on the ledger, who asked what under
which case and when, for any member to check; and every ``psi`` record, a private set
intersection run under a case, which is filed under the case like an access.

Access records are found through the store's ``cases`` index (role ``ACCESS``), never
by scanning blocks: under one case, the case's postings in ledger order; across all
cases, every access posting, sorted into ledger order. Only transactions the
application admitted are posted there. Filters (member, query kind) are applied while
reading, and a page ends after ``limit`` matching records with the cursor to continue.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.codec import DecodeError
from node.ledger.cases import LedgerEntry, format_time_ms
from node.ledger.kinds import Access, PsiRun
from node.ledger.layout import CaseRole, case_key
from node.ledger.store import LedgerStore
from node.ledger.transactions import TxRejected, decode_body, decode_tx, tx_id
from node.tracing.render import entity_json, entry_json

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_PAGE = 1000


@dataclass(frozen=True)
class AuditEntry:
    entry: LedgerEntry  # the member who asked, and where the record sits
    access: Access | PsiRun

    @property
    def query(self) -> str:
        return self.access.query if isinstance(self.access, Access) else "psi"


@dataclass(frozen=True)
class AuditPage:
    entries: tuple[AuditEntry, ...]  # in ledger order
    # Pass as ``after`` to read on; None when this page reaches the end.
    next_after: tuple[int, int] | None


def audit_trail(
    store: LedgerStore,
    *,
    case_id: str | None = None,
    member: str | None = None,
    query: str | None = None,
    limit: int = DEFAULT_LIMIT,
    after: tuple[int, int] | None = None,
) -> AuditPage:
    """Access records after ``after``, in ledger order, matching every given filter."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT}")
    found: list[AuditEntry] = []
    pages = _case_pages(store, case_id, after) if case_id else _all_pages(store, after)
    for page in pages:
        for item in _decoded(store, page):
            if member is not None and item.entry.member != member:
                continue
            if query is not None and item.query != query:
                continue
            found.append(item)
            if len(found) > limit:
                return AuditPage(tuple(found[:limit]), found[limit - 1].entry.location)
    return AuditPage(tuple(found), None)


def _case_pages(
    store: LedgerStore, case_id: str, after: tuple[int, int] | None
) -> Iterator[list[tuple[int, int]]]:
    key = case_key(case_id)
    while True:
        page = store.case_postings(key, CaseRole.ACCESS, limit=_PAGE, after=after)
        if page:
            yield page
        if len(page) < _PAGE:
            return
        after = page[-1]


def _all_pages(
    store: LedgerStore, after: tuple[int, int] | None
) -> Iterator[list[tuple[int, int]]]:
    _tip, postings = store.governance_postings((CaseRole.ACCESS,))
    locations = sorted({(p.height, p.index) for p in postings})
    if after is not None:
        locations = [loc for loc in locations if loc > after]
    for start in range(0, len(locations), _PAGE):
        yield locations[start : start + _PAGE]


def _decoded(store: LedgerStore, locations: Sequence[tuple[int, int]]) -> Iterator[AuditEntry]:
    for (height, index), data in zip(locations, store.txs_at(locations), strict=True):
        try:
            tx = decode_tx(data)
            body = decode_body(tx)
        except (DecodeError, TxRejected):
            continue  # not admitted, so never posted: only a damaged store gets here
        if isinstance(body, Access | PsiRun):
            entry = LedgerEntry(tx_id(data), tx.member, height, index, tx.time_ms, body.actor)
            yield AuditEntry(entry, body)


def audit_entry_json(item: AuditEntry) -> dict[str, Any]:
    access = item.access
    if isinstance(access, PsiRun):
        subject, when = None, access.finished_ms
        psi: dict[str, Any] | None = {
            "run_id": access.run_id.hex(),
            "initiator": access.initiator,
            "responder": access.responder,
            "entity_type": access.entity_type,
            "initiator_size": access.initiator_size,
            "responder_size": access.responder_size,
            "result_size": access.result_size,
            "outcome": access.outcome,
        }
    else:
        subject = None if access.subject is None else entity_json(access.subject)
        when, psi = access.answered_ms, None
    evaluation = (
        access.evaluation.hex() if isinstance(access, Access) and access.evaluation else None
    )
    return {
        **entry_json(item.entry),
        "case_id": access.case_id,
        "query": item.query,
        "subject": subject,
        "answered_ms": when,
        "answered": format_time_ms(when),
        "psi": psi,
        "evaluation": evaluation,
    }


def audit_json(page: AuditPage) -> dict[str, Any]:
    return {
        "records": [audit_entry_json(item) for item in page.entries],
        "next_after": None if page.next_after is None else list(page.next_after),
    }
