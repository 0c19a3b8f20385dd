"""Threshold pseudonyms between nodes (node.pseudonyms): four in-process nodes on the
memory transport, each with its share of a key dealt by the test-only dealer, so the
expected pseudonyms can be computed offline with the whole key."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from cluster_helpers import FAST
from cluster_helpers import commit_body as commit

from net.wire import EvalReply, EvalRequest
from node.identifiers import oprf
from node.identifiers.group import random_scalar
from node.identifiers.normalize import normalize
from node.identifiers.pseudonym import EntityRef
from node.ledger.kinds import Approve, Case
from node.pseudonyms.service import Purpose
from node.pseudonyms.store import CachedPseudonym, PseudonymStore, day_of
from node.refusals import Forbidden, Invalid, Unavailable
from node.setup.shares import PseudonymShare
from node.testing.cluster import InProcessCluster, local_dealing, local_genesis

pytestmark = pytest.mark.timeout(120)

POLICE, BANK, TELECOM, UTILITY = 0, 1, 2, 3
PHONE = normalize("phone", "+86 138 0013 8000")
OTHER = normalize("phone", "+86 139 0000 1111")


@asynccontextmanager
async def consortium(tmp_path: Path, **genesis_options: int) -> AsyncIterator[InProcessCluster]:
    genesis, signers = local_genesis(4, consensus=FAST, **genesis_options)
    cluster = InProcessCluster(tmp_path, genesis, signers)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        for i in range(4):
            cluster.pseudonyms(i).timeout_s = 2.0
        try:
            yield cluster
        finally:
            await cluster.stop()
            nursery.cancel_scope.cancel()


def expected(cluster: InProcessCluster, entity_type: str, value: str) -> bytes:
    return oprf.pseudonym_with_key(local_dealing(cluster.genesis).key, entity_type, value)


async def open_case(cluster: InProcessCluster, opener: int, case_id: str, approve: bool) -> None:
    now = int(time.time() * 1000)
    scope = (oprf_ref(cluster, "phone", PHONE),)
    case = Case(
        case_id, "telecom_fraud", bytes(32), scope, now - 86_400_000, now + 60_000, now + 3_600_000
    )
    case_tx = await commit(cluster, opener, case)
    if approve:
        for approver in range(cluster.genesis.case_approvals):
            await commit(cluster, approver, Approve(case_id, case_tx))
    height = max(cluster.runtime(i).height for i in range(4))
    with trio.fail_after(20):
        await cluster.wait_height(height)


def oprf_ref(cluster: InProcessCluster, entity_type: str, value: str) -> EntityRef:
    return EntityRef(entity_type, expected(cluster, entity_type, value))


async def test_every_member_computes_the_same_pseudonym_as_the_whole_key(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        want = expected(cluster, "phone", PHONE)
        for i in range(4):
            got = await cluster.pseudonyms(i).refs([("phone", PHONE)], Purpose.report())
            assert got.refs[0].pseudonym == want
            assert got.from_cache == 0 and len(got.evaluation) == 16
        # Another identifier, another type: another pseudonym.
        other = await cluster.pseudonyms(0).refs(
            [("phone", OTHER), ("account", "DE89370400440532013000")], Purpose.report()
        )
        assert other.refs[0].pseudonym == expected(cluster, "phone", OTHER)
        assert other.refs[1].pseudonym == expected(cluster, "account", "DE89370400440532013000")
        assert other.refs[0].pseudonym != want


async def test_every_evaluating_pair_gives_the_same_result(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        want = expected(cluster, "phone", PHONE)
        service = cluster.pseudonyms(POLICE)
        seen = set()
        for partner in (BANK, TELECOM, UTILITY):
            # Send each round to one partner only: the others count as failed.
            service._failed_at = {m: time.monotonic() for m in (1, 2, 3) if m != partner}
            service.cooldown_s = 3600
            before = cluster.pseudonyms(partner).stats.evaluated.total()
            result = await service._evaluate([("phone", PHONE)], Purpose.report())
            assert result[0] == [want]
            assert cluster.pseudonyms(partner).stats.evaluated.total() == before + 1
            seen.add(partner)
        assert seen == {BANK, TELECOM, UTILITY}


async def test_a_batch_and_the_cache(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        values = [normalize("phone", f"+86 170 0000 {i:04d}") for i in range(300)]
        items = [("phone", v) for v in values]
        service = cluster.pseudonyms(BANK)
        first = await service.refs(items, Purpose.report())
        assert [r.pseudonym for r in first.refs] == [expected(cluster, "phone", v) for v in values]
        evaluated = sum(cluster.pseudonyms(i).stats.evaluated.total() for i in range(4))
        again = await service.refs([*items[:10], ("phone", PHONE)], Purpose.report())
        assert again.from_cache == 10
        assert again.refs[:10] == first.refs[:10]
        assert again.refs[10].pseudonym == expected(cluster, "phone", PHONE)
        # Only the one new identifier was evaluated by another member.
        assert sum(cluster.pseudonyms(i).stats.evaluated.total() for i in range(4)) == evaluated + 1


async def test_the_report_quota_is_counted_and_refused_with_its_reason(tmp_path: Path) -> None:
    async with consortium(tmp_path, report_quota_per_day=5) as cluster:
        service = cluster.pseudonyms(TELECOM)
        service._failed_at = {POLICE: time.monotonic(), UTILITY: time.monotonic()}
        service.cooldown_s = 3600  # always BANK
        values = [("phone", normalize("phone", f"+86 170 0000 {i:04d}")) for i in range(5)]
        await service.refs(values, Purpose.report())
        with pytest.raises(Forbidden) as refused:
            await service.refs([("phone", PHONE)], Purpose.report())
        assert refused.value.code == "over_quota"
        assert "used 5 of its 5 report evaluations today" in refused.value.message
        bank = cluster.pseudonyms(BANK)
        usage = bank.store.usage(day_of(bank.clock_ms()))
        assert [(u.kind, u.name, u.points) for u in usage] == [
            ("report", cluster.member_name(TELECOM), 5)
        ]
        outcomes = [r.outcome for r in bank.store.records()]
        assert outcomes == ["ok", "over_quota"]
        # Cached results still come back: they need no evaluation.
        cached = await service.refs(values[:2], Purpose.report())
        assert cached.from_cache == 2


async def test_the_quota_survives_a_restart(tmp_path: Path) -> None:
    async with consortium(tmp_path, report_quota_per_day=3) as cluster:
        service = cluster.pseudonyms(POLICE)
        service._failed_at = {TELECOM: time.monotonic(), UTILITY: time.monotonic()}
        service.cooldown_s = 3600
        await service.refs([("phone", PHONE), ("phone", OTHER)], Purpose.report())
        async with trio.open_nursery() as nursery:
            await cluster.stop_node(BANK)
            await cluster.start_node(nursery, BANK)
            bank = cluster.pseudonyms(BANK)
            assert bank.store.used(day_of(bank.clock_ms()), b"r", cluster.member_name(POLICE)) == 2
            nursery.cancel_scope.cancel()


async def test_queries_need_an_active_case_of_the_asking_member(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        police = cluster.pseudonyms(POLICE)
        with pytest.raises(Forbidden) as no_case:
            await police.refs([("phone", PHONE)], Purpose.query("case-1"))
        assert no_case.value.code == "no_case"
        await open_case(cluster, POLICE, "case-1", approve=False)
        with pytest.raises(Forbidden) as pending:
            await police.refs([("phone", PHONE)], Purpose.query("case-1"))
        assert pending.value.code == "case_inactive"
        await open_case(cluster, POLICE, "case-2", approve=True)
        got = await police.refs([("phone", OTHER)], Purpose.query("case-2"))
        assert got.refs[0].pseudonym == expected(cluster, "phone", OTHER)
        # Another member cannot evaluate under the police's case, even with its id.
        with pytest.raises(Forbidden) as foreign:
            await cluster.pseudonyms(BANK).refs([("phone", OTHER)], Purpose.query("case-2"))
        assert foreign.value.code == "not_your_case"
        # The evaluators logged the query with its case.
        logged = [
            (r.purpose, r.case_id, r.outcome)
            for i in (BANK, TELECOM, UTILITY)
            for r in cluster.pseudonyms(i).store.records()
            if r.purpose == "query" and r.outcome == "ok"
        ]
        assert logged == [("query", "case-2", "ok")]


async def test_a_wrong_evaluator_is_named_and_another_asked(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        liar = cluster.pseudonyms(BANK)
        assert liar.share is not None
        liar.share = PseudonymShare(liar.share.index, random_scalar(), liar.share.genesis_hash)
        police = cluster.pseudonyms(POLICE)
        police._failed_at = {TELECOM: time.monotonic(), UTILITY: time.monotonic()}
        police.cooldown_s = 0.0  # the others are fresh again on the retry
        # First round goes to BANK only (the others look failed); its wrong answer is
        # caught, BANK is named, and the retry asks someone else.
        police._failed_at = {TELECOM: time.monotonic() + 3600, UTILITY: time.monotonic() + 3600}
        got = await police.refs([("phone", PHONE)], Purpose.report())
        assert got.refs[0].pseudonym == expected(cluster, "phone", PHONE)
        assert police.stats.wrong_proofs == {cluster.member_name(BANK): 1}


async def test_fewer_than_t_members_cannot_evaluate(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        for i in (BANK, TELECOM, UTILITY):
            await cluster.stop_node(i)
        police = cluster.pseudonyms(POLICE)
        police.timeout_s = 0.3
        with pytest.raises(Unavailable) as refused:
            await police.refs([("phone", PHONE)], Purpose.report())
        assert refused.value.code == "pseudonyms_unavailable"
        assert police.stats.unanswered.total() == 3
        # Its own share alone is not the pseudonym: the Lagrange-weighted share for any
        # pair, applied alone, gives another point.
        share = police.share
        assert share is not None
        point = oprf.input_point("phone", PHONE)
        alone = oprf.evaluate_unproven(share.secret, 1, (1, 2), [point])[0]
        assert oprf.finalize("phone", PHONE, alone) != expected(cluster, "phone", PHONE)


async def test_an_evaluator_refuses_malformed_requests(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        bank = cluster.pseudonyms(BANK)
        replies: list[EvalReply] = []
        police = cluster.runtime(POLICE)
        police.frame_handlers[EvalReply] = lambda src, frame: replies.append(frame)
        point = oprf.input_point("phone", PHONE)
        cases = [
            EvalRequest(b"\1" * 16, "report", "", 0, (1, 3), (point,)),  # BANK not in the set
            EvalRequest(b"\2" * 16, "report", "", 0, (1, 2, 3), (point,)),  # not t members
            EvalRequest(b"\3" * 16, "report", "", 0, (1, 2), (bytes(32),)),  # not a point
        ]
        for request in cases:
            police.transport.send_nowait(BANK, request)
        with trio.fail_after(10):
            while len(replies) < 3:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert [r.outcome for r in replies] == ["bad_request"] * 3
        assert "valid group element" in replies[2].reason
        assert bank.stats.evaluated.total() == 0


async def test_refusals_of_the_caller(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        service = cluster.pseudonyms(POLICE)
        with pytest.raises(Invalid):
            await service.refs([], Purpose.report())
        with pytest.raises(Invalid):
            await service.refs([("phone", PHONE)], Purpose("query", ""))
        service.share = None
        with pytest.raises(Unavailable) as no_share:
            await service.refs([("phone", OTHER)], Purpose.report())
        assert no_share.value.code == "no_pseudonym_share"


async def test_a_batch_goes_out_as_several_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("node.pseudonyms.service.REQUEST_POINTS", 64)
    async with consortium(tmp_path) as cluster:
        values = [normalize("phone", f"+86 170 0001 {i:04d}") for i in range(200)]
        got = await cluster.pseudonyms(UTILITY).refs(
            [("phone", v) for v in values], Purpose.report()
        )
        assert [r.pseudonym for r in got.refs] == [expected(cluster, "phone", v) for v in values]
        logged = [r.points for i in range(3) for r in cluster.pseudonyms(i).store.records()]
        assert sorted(logged) == [8, 64, 64, 64]


def test_the_cache_forgets_results_older_than_the_retention(tmp_path: Path) -> None:
    store = PseudonymStore.open(tmp_path / "p", chain_id="local")
    try:
        keys = store.cache_keys([("phone", PHONE), ("phone", OTHER)])
        assert keys[0] != keys[1]
        store.remember(
            [
                (keys[0], CachedPseudonym(bytes(32), bytes(16), 1_000)),
                (keys[1], CachedPseudonym(bytes(32), bytes(16), 5_000)),
            ]
        )
        assert store.forget_before(2_000) == 1
        assert store.cached(keys) == [None, CachedPseudonym(bytes(32), bytes(16), 5_000)]
        # The file holds keyed hashes, never the identifier.
        data = (tmp_path / "p" / "cache" / "data.mdb").read_bytes()
        assert PHONE.encode() not in data and OTHER.encode() not in data
    finally:
        store.close()


async def test_an_identifier_asked_twice_in_a_batch_is_evaluated_once(tmp_path: Path) -> None:
    async with consortium(tmp_path) as cluster:
        service = cluster.pseudonyms(BANK)
        got = await service.refs(
            [("phone", PHONE), ("phone", OTHER), ("phone", PHONE)], Purpose.report()
        )
        assert got.refs[0] == got.refs[2] != got.refs[1]
        assert sum(cluster.pseudonyms(i).stats.evaluated.total() for i in range(4)) == 2
