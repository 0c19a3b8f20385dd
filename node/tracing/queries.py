"""Tracing queries over the local ledger, each under an active case.

``Tracer.authorise`` decides whether a query may run and returns either a ``Grant``
(the case, the subject and the time window the query is limited to) or a ``Refusal``
with a stable code and a precise message; the queries take the grant, so a query never
runs without having been authorised, and never outside the case's window.

Scope and window, the rules of purpose limitation as applied here:

- ``trace`` and ``graph`` are about one entity, which must be in the case's scope list.
  ``graph`` then expands breadth-first from it and may reach entities outside the
  scope: the links of an in-scope entity are what an investigation is for, and a scope
  listing every account a mule touched could not be written in advance. The expansion
  is bounded by the depth and by caps on nodes and edges.
- ``history`` is about one record, which must concern an entity in scope (the subject of
  a report, an end of a link, an entity of a case's scope or of an access entry);
  approvals and closes concern no entity and are only seen through their case. Like
  ``graph``, the later links it lists may lead to entities outside the scope.
- ``trace`` returns facts only: reports and links. Case, approve, close and access
  transactions are posted under entities too, but they are governance, shown through
  ``history`` of the case and the case registry.
- Every observed fact (a report or a link) is returned only if its ``observed_ms`` lies
  in the case's window, narrowed further by a window the query asks for; a requested
  window that does not meet the case's is refused. Governance entries (approvals,
  closes, access entries) are not facts about the world and are not filtered by time.

The queries read only the store's indexes: an entity's postings (``entity_txs``), its
links (``links_of``) and the ``cases`` index, then the few transactions they point to.
Nothing scans the ledger. Results are frozen dataclasses; ``node.tracing.render``
turns them into JSON-able dicts and Graphviz DOT.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from consensus.codec import DecodeError, from_wire, unpack
from consensus.crypto import DIGEST_SIZE
from node.identifiers.pseudonym import EntityRef
from node.ledger.application import entity_key
from node.ledger.cases import CaseRecord, CaseRegistry, CaseState, LedgerEntry, format_time_ms
from node.ledger.kinds import BODY_TYPES, Access, Approve, Body, Case, Close, Link, Report
from node.ledger.layout import CaseRole, case_key
from node.ledger.store import LedgerStore
from node.ledger.transactions import Transaction, tx_id

QUERIES = ("trace", "graph", "history")
MAX_GRAPH_DEPTH = 6
DEFAULT_TRACE_LIMIT = 1000
DEFAULT_MAX_NODES = 1000
DEFAULT_MAX_EDGES = 5000
DEFAULT_HISTORY_LIMIT = 1000
_PAGE = 1000


class RefusalCode(enum.StrEnum):
    UNKNOWN_QUERY = "unknown_query"
    NO_CASE = "no_case"
    NOT_APPROVED = "not_approved"
    EXPIRED = "expired"
    CLOSED = "closed"
    NO_RECORD = "no_record"
    OUT_OF_SCOPE = "out_of_scope"
    OUTSIDE_WINDOW = "outside_window"


_STATE_REFUSALS = {
    CaseState.PENDING: RefusalCode.NOT_APPROVED,
    CaseState.EXPIRED: RefusalCode.EXPIRED,
    CaseState.CLOSED: RefusalCode.CLOSED,
}


@dataclass(frozen=True)
class Refusal:
    code: RefusalCode
    message: str


@dataclass(frozen=True)
class TimeWindow:
    """Milliseconds since the epoch, both ends included."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.start_ms > self.end_ms:
            raise ValueError("a time window must not end before it starts")

    def contains(self, time_ms: int) -> bool:
        return self.start_ms <= time_ms <= self.end_ms

    def intersect(self, other: TimeWindow) -> TimeWindow | None:
        start, end = max(self.start_ms, other.start_ms), min(self.end_ms, other.end_ms)
        return TimeWindow(start, end) if start <= end else None

    def __str__(self) -> str:
        return f"{format_time_ms(self.start_ms)} to {format_time_ms(self.end_ms)}"


@dataclass(frozen=True)
class Grant:
    """One query, authorised: the subject entity (for ``history``, the in-scope entity
    the record concerns, which the audit entry names) and the window it is limited to."""

    case_id: str
    case_tx: bytes
    query: str
    entity: EntityRef
    window: TimeWindow
    now_ms: int
    record: bytes | None = None  # the tx id, for ``history``


@dataclass(frozen=True)
class Fact:
    """A report or a link, where it sits in the ledger and who reported it."""

    entry: LedgerEntry
    body: Report | Link

    @property
    def observed_ms(self) -> int:
        return self.body.observed_ms


@dataclass(frozen=True)
class TraceResult:
    grant: Grant
    facts: tuple[Fact, ...]  # in ledger order
    truncated: bool
    # Pass as ``after`` to read the next page when truncated.
    next_after: tuple[int, int] | None


@dataclass(frozen=True)
class GraphNode:
    entity: EntityRef
    depth: int


@dataclass(frozen=True)
class GraphEdge:
    """A link as the reporting member recorded it: ``a`` -[relation]-> ``b``."""

    fact: Fact

    @property
    def link(self) -> Link:
        assert isinstance(self.fact.body, Link)
        return self.fact.body


@dataclass(frozen=True)
class GraphResult:
    grant: Grant
    depth: int
    nodes: tuple[GraphNode, ...]  # in the order found, the start first
    edges: tuple[GraphEdge, ...]
    truncated: bool  # a cap on nodes or edges left part of the neighbourhood out


class Reference(enum.StrEnum):
    """How a later record refers to the one whose history is asked."""

    APPROVES = "approves"  # an approve naming a case transaction
    CLOSES = "closes"  # a close naming it
    FILED_UNDER = "filed_under"  # a report filed under the case's id
    ACCESSED_UNDER = "accessed_under"  # an audit entry of a query under the case
    LINKS = "links"  # a later link touching an entity the record is about


@dataclass(frozen=True)
class Referrer:
    entry: LedgerEntry
    kind: str
    how: Reference
    body: Body


@dataclass(frozen=True)
class HistoryResult:
    grant: Grant
    entry: LedgerEntry
    kind: str
    body: Body
    referred_by: tuple[Referrer, ...]  # in ledger order
    truncated: bool


def entities_of(body: Body) -> tuple[EntityRef, ...]:
    """The entities a record concerns."""
    match body:
        case Report():
            return (body.subject,)
        case Link():
            return (body.a, body.b)
        case Case():
            return body.scope
        case Access() if body.subject is not None:
            return (body.subject,)
    return ()


def short_pseudonym(entity: EntityRef) -> str:
    return entity.pseudonym[:4].hex()


def describe(entity: EntityRef) -> str:
    """How messages and pictures name an entity: its type and a short pseudonym."""
    return f"{entity.type} {short_pseudonym(entity)}"


class Tracer:
    """The tracing queries of one node, over its store and case registry."""

    def __init__(self, store: LedgerStore, registry: CaseRegistry) -> None:
        self.store = store
        self.registry = registry

    # -- authorisation --------------------------------------------------------------

    def authorise(
        self,
        case_id: str,
        query: str,
        subject: EntityRef | bytes,
        now_ms: int,
        window: TimeWindow | None = None,
    ) -> Grant | Refusal:
        """May ``query`` run under ``case_id`` at ``now_ms``?

        ``subject`` is the entity for ``trace`` and ``graph`` and the transaction id
        for ``history``. ``window`` narrows the case's window. The case is checked
        before the subject, so a refused caller learns nothing about the ledger.
        """
        if query not in QUERIES:
            return Refusal(
                RefusalCode.UNKNOWN_QUERY,
                f"query must be one of {', '.join(QUERIES)}, got {query!r}",
            )
        if isinstance(subject, EntityRef) == (query == "history"):
            need = "a transaction id" if query == "history" else "an entity"
            raise TypeError(f"a {query} query takes {need} as its subject")
        status = self.registry.status(case_id, now_ms)
        if status is None:
            return Refusal(RefusalCode.NO_CASE, f"there is no case {case_id!r} on the ledger")
        if not status.active:
            return Refusal(_STATE_REFUSALS[status.state], status.reason)
        case = status.case
        case_window = TimeWindow(case.body.window_start_ms, case.body.window_end_ms)
        allowed = case_window if window is None else case_window.intersect(window)
        if allowed is None:
            return Refusal(
                RefusalCode.OUTSIDE_WINDOW,
                f"the requested window ({window}) lies outside the window of case "
                f"{case_id!r} ({case_window})",
            )
        if isinstance(subject, EntityRef):
            if not case.in_scope(subject):
                return Refusal(
                    RefusalCode.OUT_OF_SCOPE,
                    f"{describe(subject)} is not in the scope of case {case_id!r}",
                )
            return Grant(case_id, case.tx_id, query, subject, allowed, now_ms)
        return self._authorise_record(case, subject, allowed, now_ms)

    def _authorise_record(
        self, case: CaseRecord, record: bytes, allowed: TimeWindow, now_ms: int
    ) -> Grant | Refusal:
        found = self._read(record)
        if found is None:
            return Refusal(
                RefusalCode.NO_RECORD, f"there is no transaction {record.hex()[:16]} on the ledger"
            )
        entry, body = found
        in_scope = [e for e in entities_of(body) if case.in_scope(e)]
        if not in_scope:
            return Refusal(
                RefusalCode.OUT_OF_SCOPE,
                f"transaction {record.hex()[:16]} concerns no entity in the scope of case "
                f"{case.case_id!r}",
            )
        if not self._counted(entry, body, in_scope[0]):
            return Refusal(
                RefusalCode.NO_RECORD,
                f"transaction {record.hex()[:16]} is stored in a block but the application "
                "did not admit it (refused, or a replay)",
            )
        if isinstance(body, Report | Link) and not allowed.contains(body.observed_ms):
            return Refusal(
                RefusalCode.OUTSIDE_WINDOW,
                f"transaction {record.hex()[:16]} was observed at "
                f"{format_time_ms(body.observed_ms)}, outside the window {allowed}",
            )
        return Grant(case.case_id, case.tx_id, "history", in_scope[0], allowed, now_ms, record)

    def _counted(self, entry: LedgerEntry, body: Body, entity: EntityRef) -> bool:
        """Whether the application admitted the transaction: a block keeps what it
        was given, and only admitted transactions are indexed."""
        if isinstance(body, Case):
            return self.registry.case_by_tx(entry.tx_id) is not None
        height, index = entry.location
        postings = self.store.entity_txs(entity_key(entity), limit=1, after=(height, index - 1))
        return postings == [entry.location]

    # -- trace ----------------------------------------------------------------------

    def trace(
        self,
        grant: Grant,
        limit: int = DEFAULT_TRACE_LIMIT,
        after: tuple[int, int] | None = None,
    ) -> TraceResult:
        """Every report and link about the granted entity, in ledger order, inside the
        window; at most ``limit``, continuing after the location ``after``."""
        _check_grant(grant, "trace")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        key = entity_key(grant.entity)
        page = min(_PAGE, limit + 1)
        facts: list[Fact] = []
        cursor = after
        while len(facts) <= limit:
            locations = self.store.entity_txs(key, limit=page, after=cursor)
            facts += self._facts(locations, grant.window)
            if len(locations) < page:
                break
            cursor = locations[-1]
        truncated = len(facts) > limit
        del facts[limit:]
        next_after = facts[-1].entry.location if truncated else None
        return TraceResult(grant, tuple(facts), truncated, next_after)

    # -- graph ----------------------------------------------------------------------

    def graph(
        self,
        grant: Grant,
        depth: int,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_edges: int = DEFAULT_MAX_EDGES,
    ) -> GraphResult:
        """The entities linked to the granted one, breadth-first up to ``depth`` hops.

        Each entity's links are taken in ledger order; a link outside the window is not
        followed. Links are explored from entities found at depths below ``depth``, so
        an edge between two entities found at the last depth is not shown. When a cap
        is reached, what was found so far is returned with ``truncated`` set: every
        edge's two ends are always among the nodes.
        """
        _check_grant(grant, "graph")
        if not 0 <= depth <= MAX_GRAPH_DEPTH:
            raise ValueError(f"depth must be 0 to {MAX_GRAPH_DEPTH}, got {depth}")
        if max_nodes < 1 or max_edges < 0:
            raise ValueError("max_nodes must be at least 1 and max_edges at least 0")
        found: dict[EntityRef, int] = {grant.entity: 0}
        edges: list[GraphEdge] = []
        truncated = self._expand(grant, depth, found, edges, max_nodes, max_edges)
        nodes = tuple(GraphNode(entity, d) for entity, d in found.items())
        return GraphResult(grant, depth, nodes, tuple(edges), truncated)

    def _expand(
        self,
        grant: Grant,
        depth: int,
        found: dict[EntityRef, int],
        edges: list[GraphEdge],
        max_nodes: int,
        max_edges: int,
    ) -> bool:
        """Breadth-first search filling ``found`` and ``edges``; True if a cap cut it."""
        truncated = False
        seen_links: set[tuple[int, int]] = set()
        frontier = [grant.entity]
        for level in range(1, depth + 1):
            next_frontier: list[EntityRef] = []
            for entity in frontier:
                for fact in self._links_of(entity, seen_links, grant.window):
                    link = fact.body
                    assert isinstance(link, Link)
                    other = link.b if link.a == entity else link.a
                    new = other not in found
                    if new and len(found) >= max_nodes:
                        truncated = True
                        continue
                    if len(edges) >= max_edges:
                        return True
                    if new:
                        found[other] = level
                        next_frontier.append(other)
                    edges.append(GraphEdge(fact))
            frontier = next_frontier
        return truncated

    def _links_of(
        self,
        entity: EntityRef,
        seen: set[tuple[int, int]],
        window: TimeWindow,
        after: tuple[int, int] | None = None,
    ) -> Iterable[Fact]:
        """The links of ``entity`` after ``after`` and not in ``seen`` (which grows), in
        ledger order, inside ``window``."""
        key = entity_key(entity)
        while True:
            records = self.store.links_of(key, limit=_PAGE, after=after)
            if not records:
                return
            locations = []
            for record in records:
                location = (record.height, record.index)
                if location not in seen:
                    seen.add(location)
                    locations.append(location)
            yield from self._facts(locations, window)
            if len(records) < _PAGE:
                return
            after = (records[-1].height, records[-1].index)

    # -- history --------------------------------------------------------------------

    def history(self, grant: Grant, limit: int = DEFAULT_HISTORY_LIMIT) -> HistoryResult:
        """Who submitted the granted record, when, and which records refer to it.

        A record is referred to by:

        - a case transaction: the approvals and closes that name it (wherever they sit
          in the ledger); and, when the history is asked under that very case, the
          reports filed under its id and the audit entries of queries under it, after it;
        - a report or a link: the later links touching an entity it is about (later
          reports about the entity are what ``trace`` shows);
        - an approve, close or access entry: nothing.

        Referring reports and links are limited to the window; at most ``limit``
        referrers are returned, the earliest first.
        """
        _check_grant(grant, "history")
        if grant.record is None:
            raise ValueError("a history grant names its record")
        found = self._read(grant.record)
        if found is None:
            raise ValueError("the granted record is not on the ledger")
        entry, body = found
        referrers: list[Referrer] = []
        if isinstance(body, Case):
            referrers = self._case_referrers(grant, entry, body, limit + 1)
        elif isinstance(body, Report | Link):
            referrers = self._fact_referrers(grant, entry, body, limit + 1)
        truncated = len(referrers) > limit
        return HistoryResult(grant, entry, body.kind, body, tuple(referrers[:limit]), truncated)

    def _case_referrers(
        self, grant: Grant, entry: LedgerEntry, body: Case, limit: int
    ) -> list[Referrer]:
        key = case_key(body.case_id)
        refs = [(CaseRole.APPROVED, Reference.APPROVES), (CaseRole.CLOSED, Reference.CLOSES)]
        record = self.registry.case_by_tx(entry.tx_id)
        # What was filed and asked under a case is shown only under that case itself.
        if record is not None and self.registry.owns_id(record) and grant.case_tx == entry.tx_id:
            refs += [
                (CaseRole.REPORT, Reference.FILED_UNDER),
                (CaseRole.ACCESS, Reference.ACCESSED_UNDER),
            ]
        out: list[Referrer] = []
        for role, how in refs:
            later = role in (CaseRole.REPORT, CaseRole.ACCESS)
            pages = self._case_pages(key, role, entry.location if later else None)
            picked: list[Referrer] = []
            for page in pages:
                for ref_entry, ref_body in self._decoded(page):
                    if isinstance(ref_body, Approve | Close) and ref_body.case_tx != entry.tx_id:
                        continue
                    if isinstance(ref_body, Report) and not grant.window.contains(
                        ref_body.observed_ms
                    ):
                        continue
                    picked.append(Referrer(ref_entry, ref_body.kind, how, ref_body))
                if len(picked) >= limit:
                    break
            out += picked[:limit]
        out.sort(key=lambda r: r.entry.location)
        return out[:limit]

    def _case_pages(
        self, key: bytes, role: CaseRole, after: tuple[int, int] | None
    ) -> Iterable[list[tuple[int, int]]]:
        while True:
            page = self.store.case_postings(key, role, limit=_PAGE, after=after)
            if page:
                yield page
            if len(page) < _PAGE:
                return
            after = page[-1]

    def _fact_referrers(
        self, grant: Grant, entry: LedgerEntry, body: Report | Link, limit: int
    ) -> list[Referrer]:
        # The earliest ``limit`` of the union lie among the earliest ``limit`` of each end.
        by_location: dict[tuple[int, int], Fact] = {}
        for entity in entities_of(body):
            seen = {entry.location}
            links = self._links_of(entity, seen, grant.window, after=entry.location)
            for picked, fact in enumerate(links, start=1):
                by_location[fact.entry.location] = fact
                if picked >= limit:
                    break
        facts = [by_location[location] for location in sorted(by_location)][:limit]
        return [Referrer(f.entry, f.body.kind, Reference.LINKS, f.body) for f in facts]

    # -- reading transactions -------------------------------------------------------

    def _read(self, record: bytes) -> tuple[LedgerEntry, Body] | None:
        if len(record) != DIGEST_SIZE:
            return None
        location = self.store.tx_location(record)
        if location is None:
            return None
        decoded = self._decoded([location])
        return decoded[0] if decoded else None

    def _decoded(self, locations: Sequence[tuple[int, int]]) -> list[tuple[LedgerEntry, Body]]:
        """The transactions at ``locations``; bodies that do not decode (a transaction
        the application refused, stored but indexed under nothing) are left out."""
        out = []
        for (height, index), data in zip(locations, self.store.txs_at(locations), strict=True):
            decoded = _decode_committed(data)
            if decoded is not None:
                tx, body = decoded
                out.append((LedgerEntry(tx_id(data), tx.member, height, index, tx.time_ms), body))
        return out

    def _facts(self, locations: Sequence[tuple[int, int]], window: TimeWindow) -> list[Fact]:
        return [
            Fact(entry, body)
            for entry, body in self._decoded(locations)
            if isinstance(body, Report | Link) and window.contains(body.observed_ms)
        ]


def _decode_committed(data: bytes) -> tuple[Transaction, Body] | None:
    """A stored transaction and its body, or None if it does not decode.

    Unlike ``decode_tx`` this does not re-encode to prove the bytes canonical: the
    transaction passed that check before it was ordered, and the check is nearly half
    the cost of a decode, which is most of the cost of a query.
    """
    try:
        tx = from_wire(Transaction, unpack(data, len(data)))
        cls = BODY_TYPES.get(tx.kind)
        if cls is None:
            return None
        return tx, from_wire(cls, unpack(tx.body, max(len(tx.body), 1)))
    except DecodeError:
        return None


def _check_grant(grant: Grant, query: str) -> None:
    if grant.query != query:
        raise ValueError(f"this grant is for a {grant.query} query, not {query}")
