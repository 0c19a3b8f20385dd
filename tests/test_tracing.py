"""Tracing queries: authorisation under a case, trace, graph, history and their renderings."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracing_helpers import DAY, T0, LedgerBuilder, ent

from node.identifiers.pseudonym import EntityRef
from node.ledger.cases import CaseRegistry, format_time_ms
from node.ledger.kinds import Report
from node.ledger.transactions import tx_id
from node.tracing.queries import (
    Grant,
    GraphResult,
    Reference,
    Refusal,
    RefusalCode,
    TimeWindow,
    Tracer,
    short_pseudonym,
)
from node.tracing.render import (
    dot_string,
    graph_dot,
    graph_json,
    history_json,
    refusal_json,
    status_json,
    trace_json,
)

PHONE, ACCOUNT, DEVICE = ent(1), ent(2, "account"), ent(3, "device")
EMAIL, WALLET = ent(4, "email"), ent(5, "wallet")
CASE_WINDOW = TimeWindow(T0 - 30 * DAY, T0)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerBuilder]:
    builder = LedgerBuilder(tmp_path / "ledger")
    yield builder
    builder.close()


def tracer_of(ledger: LedgerBuilder) -> Tracer:
    return Tracer(ledger.store, CaseRegistry.load(ledger.genesis, ledger.store))


def grant(
    tracer: Tracer,
    query: str,
    subject: EntityRef | bytes,
    case_id: str = "C-1",
    window: TimeWindow | None = None,
) -> Grant:
    result = tracer.authorise(case_id, query, subject, T0, window)
    assert isinstance(result, Grant), result
    return result


def refusal(tracer: Tracer, *args: object, **kwargs: object) -> tuple[str, str]:
    result = tracer.authorise(*args, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Refusal), result
    return result.code.value, result.message


# -- authorisation -----------------------------------------------------------------------


def test_every_refusal_with_its_message(ledger: LedgerBuilder) -> None:
    case_tx = ledger.open_active_case("C-1", [PHONE, ACCOUNT])
    pending = ledger.case("C-P", [PHONE])
    closed = ledger.case("C-X", [PHONE])
    ledger.commit([pending, closed, ledger.approve("bank-a", "C-P", tx_id(pending))])
    ledger.commit([ledger.approve(m, "C-X", tx_id(closed)) for m in ("bank-a", "telco-b")])
    ledger.commit([ledger.close_case("police", "C-X", tx_id(closed))])
    approve = ledger.approve("telco-b", "C-1", case_tx)
    early = ledger.report("bank-a", PHONE, observed_ms=T0 - 40 * DAY)
    ledger.commit([approve, early])
    tracer = tracer_of(ledger)
    expires = T0 + 30 * DAY
    short = short_pseudonym(DEVICE)

    assert refusal(tracer, "C-1", "psi", PHONE, T0) == (
        "unknown_query",
        "query must be one of trace, graph, history, got 'psi'",
    )
    assert refusal(tracer, "C-9", "trace", PHONE, T0) == (
        "no_case",
        "there is no case 'C-9' on the ledger",
    )
    assert refusal(tracer, "C-P", "trace", PHONE, T0) == (
        "not_approved",
        "case 'C-P' is waiting for approval: 1 of 2 approvals",
    )
    assert refusal(tracer, "C-1", "graph", PHONE, expires) == (
        "expired",
        "case 'C-1' expired at 2025-07-15T15:06:40Z",
    )
    assert refusal(tracer, "C-X", "trace", PHONE, T0) == (
        "closed",
        "case 'C-X' was closed by 'police' at height 4",
    )
    assert refusal(tracer, "C-1", "trace", DEVICE, T0) == (
        "out_of_scope",
        f"device {short} is not in the scope of case 'C-1'",
    )
    late = TimeWindow(T0 + 1, T0 + DAY)
    assert refusal(tracer, "C-1", "graph", PHONE, T0, late) == (
        "outside_window",
        "the requested window (2025-06-15T15:06:40.001Z to 2025-06-16T15:06:40Z) lies "
        "outside the window of case 'C-1' (2025-05-16T15:06:40Z to 2025-06-15T15:06:40Z)",
    )
    missing = bytes(32)
    assert refusal(tracer, "C-1", "history", missing, T0) == (
        "no_record",
        "there is no transaction 0000000000000000 on the ledger",
    )
    assert refusal(tracer, "C-1", "history", tx_id(approve), T0) == (
        "out_of_scope",
        f"transaction {tx_id(approve).hex()[:16]} concerns no entity in the scope of case 'C-1'",
    )
    assert refusal(tracer, "C-1", "history", tx_id(early), T0) == (
        "outside_window",
        f"transaction {tx_id(early).hex()[:16]} was observed at 2025-05-06T15:06:40Z, "
        "outside the window 2025-05-16T15:06:40Z to 2025-06-15T15:06:40Z",
    )
    # The case is checked first: a refused caller learns nothing about the record.
    assert refusal(tracer, "C-P", "history", missing, T0)[0] == "not_approved"
    with pytest.raises(TypeError, match="a history query takes a transaction id"):
        tracer.authorise("C-1", "history", PHONE, T0)
    with pytest.raises(TypeError, match="a trace query takes an entity"):
        tracer.authorise("C-1", "trace", bytes(32), T0)
    assert {c.value for c in RefusalCode} == {
        "unknown_query", "no_case", "not_approved", "expired", "closed", "no_record",
        "out_of_scope", "outside_window",
    }  # fmt: skip


def test_a_stored_but_unadmitted_transaction_has_no_history(ledger: LedgerBuilder) -> None:
    ledger.open_active_case("C-1", [PHONE])
    first = ledger.report("bank-a", PHONE)
    # Another report under the same nonce: stored in its block, indexed under nothing.
    body = Report(PHONE, "money_mule", (), None, T0 - 2 * DAY, None)
    replay = ledger.sign("bank-a", body, nonce=ledger.nonces["bank-a"])
    ledger.commit([first])
    ledger.commit([replay])
    tracer = tracer_of(ledger)
    assert ledger.store.tx_location(tx_id(replay)) == (3, 0)
    assert refusal(tracer, "C-1", "history", tx_id(replay), T0) == (
        "no_record",
        f"transaction {tx_id(replay).hex()[:16]} is stored in a block but the application "
        "did not admit it (refused, or a replay)",
    )
    assert isinstance(tracer.authorise("C-1", "history", tx_id(first), T0), Grant)
    assert [f.entry.tx_id for f in tracer.trace(grant(tracer, "trace", PHONE)).facts] == [
        tx_id(first)
    ]


def test_a_grant_is_limited_to_the_case_and_requested_windows(ledger: LedgerBuilder) -> None:
    case_tx = ledger.open_active_case("C-1", [PHONE])
    tracer = tracer_of(ledger)
    whole = grant(tracer, "trace", PHONE)
    assert (whole.case_id, whole.case_tx, whole.query, whole.entity) == (
        "C-1",
        case_tx,
        "trace",
        PHONE,
    )
    assert whole.window == CASE_WINDOW and whole.now_ms == T0
    narrow = grant(tracer, "graph", PHONE, window=TimeWindow(T0 - 2 * DAY, T0 + 9 * DAY))
    assert narrow.window == TimeWindow(T0 - 2 * DAY, T0)
    with pytest.raises(ValueError, match="this grant is for a trace query, not graph"):
        tracer.graph(whole, 1)


# -- trace -------------------------------------------------------------------------------


def test_trace_is_every_fact_about_the_entity_in_ledger_order(ledger: LedgerBuilder) -> None:
    ledger.open_active_case("C-1", [PHONE])
    txs = [
        ledger.report("telco-b", PHONE, observed_ms=T0 - 3 * DAY),
        ledger.link("bank-a", ACCOUNT, PHONE, "owns", observed_ms=T0 - 5 * DAY),
        ledger.report("bank-a", ACCOUNT),  # another entity
        ledger.report("bank-a", PHONE, observed_ms=T0 - 31 * DAY),  # before the window
        ledger.access("police", "C-1", PHONE),  # an audit entry, not a fact
    ]
    ledger.commit(txs[:2])
    ledger.commit(txs[2:])
    ledger.commit([ledger.report("utility-c", PHONE, observed_ms=T0, category="phishing")])
    tracer = tracer_of(ledger)
    result = tracer.trace(grant(tracer, "trace", PHONE))
    assert [(f.entry.member, f.entry.height, f.entry.index) for f in result.facts] == [
        ("telco-b", 2, 0),
        ("bank-a", 2, 1),
        ("utility-c", 4, 0),
    ]
    assert [f.body.kind for f in result.facts] == ["report", "link", "report"]
    assert result.facts[0].entry.tx_id == tx_id(txs[0])
    assert not result.truncated and result.next_after is None
    narrow = grant(tracer, "trace", PHONE, window=TimeWindow(T0 - 4 * DAY, T0 - DAY))
    assert [f.entry.height for f in tracer.trace(narrow).facts] == [2]


def test_trace_pages(ledger: LedgerBuilder) -> None:
    ledger.open_active_case("C-1", [PHONE])
    for _ in range(3):
        ledger.commit([ledger.report("bank-a", PHONE) for _ in range(4)])
    tracer = tracer_of(ledger)
    g = grant(tracer, "trace", PHONE)
    everything = tracer.trace(g).facts
    assert len(everything) == 12
    pages = []
    after = None
    while True:
        page = tracer.trace(g, limit=5, after=after)
        pages.append(page.facts)
        if not page.truncated:
            break
        assert page.next_after == page.facts[-1].entry.location
        after = page.next_after
    assert [len(p) for p in pages] == [5, 5, 2]
    assert tuple(f for p in pages for f in p) == everything
    exact = tracer.trace(g, limit=12)
    assert not exact.truncated and exact.facts == everything


# -- graph -------------------------------------------------------------------------------


@pytest.fixture
def web(ledger: LedgerBuilder) -> Tracer:
    """PHONE - ACCOUNT - DEVICE - EMAIL in a line, DEVICE - PHONE closing a cycle, and
    ACCOUNT - WALLET observed before the case's window."""
    ledger.open_active_case("C-1", [PHONE])
    ledger.commit(
        [
            ledger.link("bank-a", PHONE, ACCOUNT, "owns"),
            ledger.link("telco-b", ACCOUNT, DEVICE, "logged_in_from"),
            ledger.link("telco-b", DEVICE, EMAIL, "registered_with"),
        ]
    )
    ledger.commit(
        [
            ledger.link("police", DEVICE, PHONE, "uses", observed_ms=T0 - 2 * DAY),
            ledger.link("bank-a", ACCOUNT, WALLET, "transferred_to", observed_ms=T0 - 60 * DAY),
        ]
    )
    return tracer_of(ledger)


def shape(result: GraphResult) -> tuple[list[tuple[str, int]], list[tuple[str, str, str]]]:
    names = {PHONE: "P", ACCOUNT: "A", DEVICE: "D", EMAIL: "E", WALLET: "W"}
    nodes = [(names[n.entity], n.depth) for n in result.nodes]
    edges = [(names[e.link.a], names[e.link.b], e.link.relation) for e in result.edges]
    return nodes, edges


def test_graph_depth_limits_and_cycles(web: Tracer) -> None:
    g = grant(web, "graph", PHONE)
    assert shape(web.graph(g, 0)) == ([("P", 0)], [])
    assert shape(web.graph(g, 1)) == (
        [("P", 0), ("A", 1), ("D", 1)],
        [("P", "A", "owns"), ("D", "P", "uses")],
    )
    assert shape(web.graph(g, 2)) == (
        [("P", 0), ("A", 1), ("D", 1), ("E", 2)],
        [
            ("P", "A", "owns"),
            ("D", "P", "uses"),
            ("A", "D", "logged_in_from"),
            ("D", "E", "registered_with"),
        ],
    )
    # Depth 3 finds nothing new: the cycle is not walked twice, WALLET is out of window.
    three = web.graph(g, 3)
    assert shape(three)[0] == shape(web.graph(g, 2))[0] and len(three.edges) == 4
    edge = three.edges[0]
    assert (edge.fact.entry.member, edge.fact.entry.height) == ("bank-a", 2)
    with pytest.raises(ValueError, match="depth must be 0 to 6, got 7"):
        web.graph(g, 7)


def test_graph_window_filter(web: Tracer) -> None:
    narrow = grant(web, "graph", PHONE, window=TimeWindow(T0 - 3 * DAY, T0 - 2 * DAY))
    assert shape(web.graph(narrow, 3)) == ([("P", 0), ("D", 1)], [("D", "P", "uses")])


def test_graph_caps_are_reported(web: Tracer) -> None:
    g = grant(web, "graph", PHONE)
    by_nodes = web.graph(g, 3, max_nodes=2)
    assert by_nodes.truncated
    nodes, edges = shape(by_nodes)
    assert nodes == [("P", 0), ("A", 1)] and edges == [("P", "A", "owns")]
    by_edges = web.graph(g, 3, max_edges=3)
    assert by_edges.truncated and len(by_edges.edges) == 3
    assert not web.graph(g, 3, max_edges=4).truncated
    for result in (by_nodes, by_edges):
        ends = {e for edge in result.edges for e in (edge.link.a, edge.link.b)}
        assert ends <= {n.entity for n in result.nodes}


@dataclass(frozen=True)
class RandomLink:
    a: int
    b: int
    days_ago: int


LINK_SETS = st.lists(
    st.builds(RandomLink, st.integers(0, 5), st.integers(0, 5), st.integers(0, 35)).filter(
        lambda link: link.a != link.b
    ),
    min_size=3,
    max_size=20,
).map(lambda links: [RandomLink(0, links[0].b or 1, links[0].days_ago), *links[1:]])


def reference_bfs(
    links: list[tuple[tuple[int, int], RandomLink]],
    depth: int,
    window: TimeWindow,
    max_nodes: int,
    max_edges: int,
) -> tuple[dict[int, int], list[tuple[int, int]], bool]:
    """The documented search, over the link list itself."""
    found, edges, seen, frontier, truncated = {0: 0}, [], set(), [0], False
    for level in range(1, depth + 1):
        next_frontier = []
        for node in frontier:
            for location, link in links:
                if node not in (link.a, link.b) or location in seen:
                    continue
                seen.add(location)
                if not window.contains(T0 - link.days_ago * DAY):
                    continue
                other = link.b if link.a == node else link.a
                new = other not in found
                if new and len(found) >= max_nodes:
                    truncated = True
                    continue
                if len(edges) >= max_edges:
                    return found, edges, True
                if new:
                    found[other] = level
                    next_frontier.append(other)
                edges.append(location)
        frontier = next_frontier
    return found, edges, truncated


@given(
    links=LINK_SETS,
    cuts=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    depth=st.integers(1, 4),
    # Days before T0, (latest, earliest); always meeting the case's 30-day window.
    window=st.integers(0, 10).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo + 10, 45))),
    max_nodes=st.integers(2, 8),
    max_edges=st.integers(0, 25),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_graph_equals_a_reference_bfs(
    links: list[RandomLink],
    cuts: list[int],
    depth: int,
    window: tuple[int, int],
    max_nodes: int,
    max_edges: int,
) -> None:
    entities = [ent(100 + i, "phone" if i % 2 else "account") for i in range(6)]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = LedgerBuilder(Path(tmp) / "ledger")
        try:
            ledger.open_active_case("C-1", [entities[0]])
            located: list[tuple[tuple[int, int], RandomLink]] = []
            rest, i = list(links), 0
            while rest:
                size = cuts[i % len(cuts)]
                batch, rest = rest[:size], rest[size:]
                height = ledger.store.tip()[0] + 1
                ledger.commit(
                    [
                        ledger.link(
                            "bank-a",
                            entities[link.a],
                            entities[link.b],
                            observed_ms=T0 - link.days_ago * DAY,
                        )
                        for link in batch
                    ]
                )
                located += [((height, j), link) for j, link in enumerate(batch)]
                i += 1
            tracer = tracer_of(ledger)
            asked = TimeWindow(T0 - window[1] * DAY, T0 - window[0] * DAY)
            g = grant(tracer, "graph", entities[0], window=asked)
            result = tracer.graph(g, depth, max_nodes=max_nodes, max_edges=max_edges)
            found, edges, truncated = reference_bfs(located, depth, g.window, max_nodes, max_edges)
            assert [(n.entity, n.depth) for n in result.nodes] == [
                (entities[n], d) for n, d in found.items()
            ]
            assert [e.fact.entry.location for e in result.edges] == edges
            assert result.truncated == truncated
        finally:
            ledger.close()


# -- history -----------------------------------------------------------------------------


def test_history_of_a_case(ledger: LedgerBuilder) -> None:
    case_tx = ledger.open_active_case("C-1", [PHONE, ACCOUNT])
    other_tx = ledger.open_active_case("C-2", [PHONE])
    filed = ledger.report("bank-a", ACCOUNT, case_id="C-1")
    filed_early = ledger.report("bank-a", ACCOUNT, case_id="C-1", observed_ms=T0 - 99 * DAY)
    audit = ledger.access("police", "C-1", PHONE)
    unrelated = ledger.approve("police", "C-1", other_tx)
    ledger.commit([filed, filed_early, audit, unrelated])
    close = ledger.close_case("police", "C-1", case_tx)
    ledger.commit([close])
    tracer = tracer_of(ledger)
    g = grant(tracer, "history", case_tx, case_id="C-2")  # C-1 is closed now
    result = tracer.history(g)
    assert (result.kind, result.entry.member, result.entry.height) == ("case", "police", 1)
    assert [(r.how, r.entry.member, r.entry.height) for r in result.referred_by] == [
        (Reference.APPROVES, "bank-a", 1),
        (Reference.APPROVES, "telco-b", 1),
        (Reference.CLOSES, "police", 4),
    ]
    assert g.entity == PHONE  # the in-scope entity the audit entry will name

    # Under the case itself, what was filed and asked under it is shown too.
    ledger.commit([ledger.case("C-3", [PHONE])])
    active = ledger.open_active_case("C-4", [PHONE])
    tracer = tracer_of(ledger)
    g = grant(tracer, "history", active, case_id="C-4")
    assert [r.how for r in tracer.history(g).referred_by] == [Reference.APPROVES] * 2
    ledger.commit(
        [
            ledger.report("telco-b", PHONE, case_id="C-4"),
            ledger.access("police", "C-4", PHONE, query="graph"),
            ledger.report("telco-b", PHONE, case_id="C-4", observed_ms=T0 - 99 * DAY),
        ]
    )
    tracer = tracer_of(ledger)
    result = tracer.history(grant(tracer, "history", active, case_id="C-4"))
    assert [(r.how, r.kind) for r in result.referred_by] == [
        (Reference.APPROVES, "approve"),
        (Reference.APPROVES, "approve"),
        (Reference.FILED_UNDER, "report"),
        (Reference.ACCESSED_UNDER, "access"),
    ]
    limited = tracer.history(grant(tracer, "history", active, case_id="C-4"), limit=3)
    assert limited.truncated and len(limited.referred_by) == 3


def test_history_of_a_report_and_a_link(ledger: LedgerBuilder) -> None:
    ledger.open_active_case("C-1", [PHONE])
    earlier = ledger.link("bank-a", PHONE, EMAIL)
    report = ledger.report("telco-b", PHONE)
    ledger.commit([earlier, report])
    first = ledger.link("bank-a", PHONE, ACCOUNT)
    second = ledger.link("telco-b", ACCOUNT, DEVICE)
    ledger.commit([first, second, ledger.link("bank-a", DEVICE, WALLET)])
    ledger.commit([ledger.link("bank-a", EMAIL, PHONE, observed_ms=T0 - 50 * DAY)])
    tracer = tracer_of(ledger)
    result = tracer.history(grant(tracer, "history", tx_id(report)))
    assert (result.kind, result.entry.member, result.entry.location) == (
        "report",
        "telco-b",
        (2, 1),
    )
    assert [r.entry.tx_id for r in result.referred_by] == [tx_id(first)]
    assert all(r.how is Reference.LINKS for r in result.referred_by)
    result = tracer.history(grant(tracer, "history", tx_id(first)))
    assert [r.entry.tx_id for r in result.referred_by] == [tx_id(second)]
    result = tracer.history(grant(tracer, "history", tx_id(earlier)))
    assert [r.entry.tx_id for r in result.referred_by] == [tx_id(first)]


# -- rendering ---------------------------------------------------------------------------


def check_dot(text: str) -> tuple[set[str], list[tuple[str, str]]]:
    """A structural check of our DOT: statements outside strings, braces balanced,
    each node declared once, every edge between declared nodes."""
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    assert outside.count("{") == outside.count("}") == 1
    assert outside.startswith("digraph trace {") and outside.rstrip().endswith("}")
    declared: list[str] = re.findall(r"^\s*(n\d+) \[", outside, re.MULTILINE)
    assert len(declared) == len(set(declared))
    edges: list[tuple[str, str]] = re.findall(r"^\s*(n\d+) -> (n\d+) \[", outside, re.MULTILINE)
    assert all(a in declared and b in declared for a, b in edges)
    for line in outside.splitlines()[1:-1]:
        assert line.rstrip().endswith(";"), line
    return set(declared), edges


def test_graph_dot(web: Tracer) -> None:
    result = web.graph(grant(web, "graph", PHONE), 3)
    text = graph_dot(result)
    declared, edges = check_dot(text)
    assert len(declared) == len(result.nodes) and len(edges) == len(result.edges)
    assert f'n0 [label="phone\\n{short_pseudonym(PHONE)}", penwidth=2];' in text
    assert 'n0 -> n1 [label="owns\\nbank-a @2"];' in text
    truncated = graph_dot(web.graph(grant(web, "graph", PHONE), 3, max_nodes=2))
    check_dot(truncated)
    assert "(truncated)" in truncated


def test_dot_strings_cannot_escape() -> None:
    assert dot_string('a"b') == '"a\\"b"'
    assert dot_string("a\\") == '"a\\\\"'
    assert dot_string("x\ny\r\nz") == '"x\\ny\\nz"'
    hostile = 'x"]; n9 -> n0; n1 [label="\\'
    assert re.fullmatch(r'"(?:[^"\\]|\\.)*"', dot_string(hostile))


def test_json_renderings(web: Tracer, ledger: LedgerBuilder) -> None:
    trace = web.trace(grant(web, "trace", PHONE))
    doc = json.loads(json.dumps(trace_json(trace)))
    assert doc["case_id"] == "C-1" and doc["query"] == "trace" and not doc["truncated"]
    assert doc["entity"] == {"type": "phone", "pseudonym": PHONE.pseudonym.hex()}
    assert doc["window"]["end"] == format_time_ms(T0)
    first = doc["records"][0]
    assert (first["kind"], first["member"], first["height"], first["relation"]) == (
        "link",
        "bank-a",
        2,
        "owns",
    )
    assert first["time"] == format_time_ms(T0)
    graph = json.loads(json.dumps(graph_json(web.graph(grant(web, "graph", PHONE), 2))))
    assert [n["depth"] for n in graph["nodes"]] == [0, 1, 1, 2]
    assert {e["relation"] for e in graph["edges"]} == {
        "owns",
        "uses",
        "logged_in_from",
        "registered_with",
    }
    report = ledger.report("bank-a", PHONE, case_id="C-1")
    ledger.commit([report])
    tracer = tracer_of(ledger)
    history = history_json(tracer.history(grant(tracer, "history", tx_id(report))))
    doc = json.loads(json.dumps(history))
    assert doc["record"]["kind"] == "report" and doc["record"]["case_id"] == "C-1"
    assert doc["record"]["category"] == "fraud_call" and doc["referred_by"] == []
    status = tracer.registry.status("C-1", T0)
    assert status is not None
    doc = json.loads(json.dumps(status_json(status)))
    assert doc["state"] == "active" and doc["needed"] == 2 and len(doc["approvals"]) == 2
    assert refusal_json(Refusal(RefusalCode.NO_CASE, "m")) == {"error": "no_case", "message": "m"}
