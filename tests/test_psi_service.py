"""PSI between the nodes of an in-process consortium (consensus records the runs): the
honest run, who may run under which case, and member 3 as a hostile peer that sends
invalid points, too many points, replays from an earlier run, or nothing at all."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from cluster_helpers import FAST
from cluster_helpers import commit_body as commit

from net.wire import PsiFrame
from node.identifiers.normalize import normalize
from node.ledger.kinds import NODE_ACTOR, Approve, Case, PsiRun
from node.ledger.layout import CaseRole, case_key
from node.ledger.transactions import decode_body, decode_tx
from node.psi.crypto import hash_blind_chunk, random_scalar
from node.psi.inputs import (
    MAX_PROBLEMS,
    NORMALISE_CHUNK,
    STOP_AFTER_PROBLEMS,
    PsiInputError,
)
from node.psi.protocol import (
    Abort,
    Accept,
    Hello,
    Points,
    PsiMessage,
    Refuse,
    decode_message,
    encode_message,
)
from node.psi.run import Run, RunState
from node.psi.service import PsiService
from node.refusals import Forbidden, Invalid, NotFound, TooLarge
from node.testing.cluster import InProcessCluster, local_genesis
from node.testing.dealer import TEST_KEY, keyed_ref

pytestmark = pytest.mark.timeout(120)

POLICE, BANK, TELECOM, HOSTILE = 0, 1, 2, 3
IDENTITY = bytes([1]) + bytes(31)
ENDED = (RunState.COMPLETED, RunState.FAILED, RunState.REFUSED)


def phones(start: int, count: int) -> list[str]:
    return [
        f"+86 170 {i // 10000 % 10000:04d} {i % 10000:04d}" for i in range(start, start + count)
    ]


def as_text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Net:
    cluster: InProcessCluster
    services: dict[int, PsiService]
    cases: dict[str, bytes]  # case id -> case tx
    hostile_got: list[tuple[bytes, PsiMessage]] = field(default_factory=list)

    @property
    def chain(self) -> str:
        return self.cluster.genesis.chain_id

    def name(self, i: int) -> str:
        return self.cluster.member_name(i)

    def send_as_hostile(self, to: int, run_id: bytes, message: PsiMessage) -> None:
        self.cluster.runtime(HOSTILE).transport.send_nowait(
            to, PsiFrame(run_id, encode_message(message))
        )

    async def hostile_receive(self, run_id: bytes, kind: type, within: float = 10) -> PsiMessage:
        with trio.fail_after(within):
            while True:
                for rid, message in self.hostile_got:
                    if rid == run_id and isinstance(message, kind):
                        return message
                await trio.sleep(0.02)

    def record(self, i: int, run: Run) -> PsiRun:
        assert run.record_tx is not None, run.message
        data = self.cluster.store(i).tx(run.record_tx)
        assert data is not None
        body = decode_body(decode_tx(data))
        assert isinstance(body, PsiRun)
        return body


async def open_case(cluster: InProcessCluster, case_id: str, approvers: list[int]) -> bytes:
    now = int(time.time() * 1000)
    scope = (keyed_ref(TEST_KEY, "phone", "+86 138 0013 8000"),)
    promise = bytes(32)  # a justification nobody reads in these tests
    body = Case(case_id, "telecom_fraud", promise, scope, now - 86_400_000, now, now + 86_400_000)
    case_tx = await commit(cluster, POLICE, body)
    for member in approvers:
        await commit(cluster, member, Approve(case_id, case_tx))
    return case_tx


async def until(condition: Callable[[], bool], within: float) -> None:
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 (runs and counters have no event to wait on)
            await trio.sleep(0.02)


async def wait_ended(run: Run, within: float = 60) -> Run:
    await until(lambda: run.state in ENDED, within)
    return run


async def the_run(service: PsiService, run_id: bytes, within: float = 20) -> Run:
    await until(lambda: run_id in service.runs, within)
    return await wait_ended(service.runs[run_id], within)


@asynccontextmanager
async def consortium(tmp_path: Path, **options: float) -> AsyncIterator[Net]:
    genesis, signers = local_genesis(4, consensus=FAST)
    cluster = InProcessCluster(tmp_path, genesis, signers)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        services: dict[int, PsiService] = {}
        for i, answer in ((POLICE, False), (BANK, True), (TELECOM, False)):
            services[i] = PsiService(
                cluster.runtime(i),
                cluster.store(i),
                genesis,
                answer=answer,
                workers=1,
                chunk=50,
                record_timeout_s=20,
                **options,
            )
            await nursery.start(services[i].run)
        net = Net(cluster, services, {})

        def hostile(src: int, frame: PsiFrame) -> None:
            net.hostile_got.append((frame.run_id, decode_message(frame.body)))

        cluster.runtime(HOSTILE).frame_handlers[PsiFrame] = hostile
        # C-1 names police (opener), bank and the hostile member; C-2 names the telecom.
        net.cases["C-1"] = await open_case(cluster, "C-1", [POLICE, BANK, HOSTILE])
        net.cases["C-2"] = await open_case(cluster, "C-2", [POLICE, BANK, TELECOM])
        yield net
        await cluster.stop()
        nursery.cancel_scope.cancel()


async def test_two_members_learn_the_intersection_and_both_record_the_run(
    tmp_path: Path,
) -> None:
    ours, theirs = phones(0, 230), phones(200, 120)  # 30 in common; several chunks of 50
    async with consortium(tmp_path) as net:
        police, bank = net.services[POLICE], net.services[BANK]
        await bank.set_answer_set("phone", as_text(theirs))
        ids = await police.read_set("phone", as_text(ours), dedupe=False)
        officer = bytes(range(1, 17))  # the initiating user's actor id
        run = await wait_ended(await police.start("C-1", net.name(BANK), ids, officer))
        expected = [normalize("phone", p) for p in phones(200, 30)]
        assert run.state is RunState.COMPLETED, run.message
        assert list(run.result or ()) == expected  # in the order of our input
        answered = await the_run(bank, run.run_id)
        assert answered.state is RunState.COMPLETED, answered.message
        assert list(answered.result or ()) == expected
        for i, mine in ((POLICE, run), (BANK, answered)):
            record = net.record(i, mine)
            assert (record.initiator, record.responder) == (net.name(POLICE), net.name(BANK))
            assert (record.initiator_size, record.responder_size) == (230, 120)
            assert (record.result_size, record.outcome) == (30, "completed")
            assert (record.case_id, record.case_tx, record.run_id) == (
                "C-1",
                net.cases["C-1"],
                run.run_id,
            )
            # The initiator's record names the user who started it; the responder's is
            # the node's own policy.
            assert record.actor == (officer if i == POLICE else NODE_ACTOR)
        # Both records are filed under the case, like queries.
        postings = net.cluster.store(TELECOM).case_postings(case_key("C-1"), CaseRole.ACCESS)
        assert len(postings) == 2


async def test_who_may_run_under_which_case(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        police = net.services[POLICE]
        ids = await police.read_set("phone", as_text(phones(0, 3)), dedupe=False)
        with pytest.raises(Forbidden) as forbidden:
            await police.start("C-1", net.name(TELECOM), ids)  # C-1 does not name it
        assert forbidden.value.code == "not_named"
        assert "does not name member" in forbidden.value.message
        with pytest.raises(NotFound) as not_found:
            await police.start("C-9", net.name(BANK), ids)
        assert not_found.value.code == "no_case"
        with pytest.raises(Invalid) as invalid:
            await police.start("C-1", net.name(POLICE), ids)
        assert invalid.value.code == "self"
        # The telecom is named by C-2, but does not answer: refused, nothing recorded.
        run = await wait_ended(await police.start("C-2", net.name(TELECOM), ids))
        assert (run.state, run.outcome, run.record_tx) == (RunState.REFUSED, "not_answering", None)
        # The bank has no account set.
        accounts = await police.read_set("account", b"DE89370400440532013000\n", dedupe=False)
        run = await wait_ended(await police.start("C-1", net.name(BANK), accounts))
        assert (run.state, run.outcome) == (RunState.REFUSED, "no_answer_set")
        # The responder checks its own ledger too: C-2 does not name the hostile member.
        await net.services[BANK].set_answer_set("phone", as_text(phones(0, 3)))
        run_id = os.urandom(16)
        net.send_as_hostile(BANK, run_id, Hello("C-2", net.cases["C-2"], "phone", 3, 3))
        refusal = await net.hostile_receive(run_id, Refuse)
        assert isinstance(refusal, Refuse) and refusal.code == "not_named"
        assert net.services[BANK].stats.refused == {"no_answer_set": 1, "not_named": 1}


async def hostile_run(net: Net, count: int, chunk: int) -> tuple[bytes, Accept]:
    """The hostile member asks the bank for a run under C-1 and waits for its Accept."""
    run_id = os.urandom(16)
    net.send_as_hostile(BANK, run_id, Hello("C-1", net.cases["C-1"], "phone", count, chunk))
    accept = await net.hostile_receive(run_id, Accept)
    assert isinstance(accept, Accept)
    return run_id, accept


def blinded(count: int) -> list[bytes]:
    return hash_blind_chunk(random_scalar(), b"x", [str(i) for i in range(count)])


async def test_invalid_points_are_detected_and_recorded_as_a_failure(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        bank = net.services[BANK]
        await bank.set_answer_set("phone", as_text(phones(0, 10)))
        run_id, _ = await hostile_run(net, 3, 3)
        good = blinded(3)
        net.send_as_hostile(BANK, run_id, Points(0, (good[0], IDENTITY, good[2])))
        run = await the_run(bank, run_id)
        assert (run.state, run.outcome, run.result) == (RunState.FAILED, "invalid_point", None)
        assert "point 2 of 3" in run.message
        abort = await net.hostile_receive(run_id, Abort)
        assert isinstance(abort, Abort) and abort.code == "invalid_point"
        record = net.record(BANK, run)
        assert (record.outcome, record.result_size) == ("invalid_point", 0)
        assert (record.initiator, record.initiator_size) == (net.name(HOSTILE), 3)


async def test_too_many_points_are_detected(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        bank = net.services[BANK]
        await bank.set_answer_set("phone", as_text(phones(0, 10)))
        run_id, _ = await hostile_run(net, 2, 2)
        points = blinded(3)
        net.send_as_hostile(BANK, run_id, Points(0, tuple(points[:2])))
        net.send_as_hostile(BANK, run_id, Points(1, tuple(points[2:])))
        run = await the_run(bank, run_id)
        assert (run.state, run.outcome) == (RunState.FAILED, "wrong_count")
        assert "announced in 1 chunks" in run.message
        assert net.record(BANK, run).outcome == "wrong_count"


async def test_messages_replayed_from_an_earlier_run_are_detected(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        bank = net.services[BANK]
        await bank.set_answer_set("phone", as_text(phones(0, 10)))
        # An earlier run the hostile member cut short (it sent too few points).
        old_run, _ = await hostile_run(net, 6, 3)
        old_points = Points(0, tuple(blinded(3)))
        net.send_as_hostile(BANK, old_run, old_points)
        net.send_as_hostile(BANK, old_run, Abort("failed", "gave up"))
        first = await the_run(bank, old_run)
        assert first.outcome == "aborted"
        # Its Hello again: refused, the run id was used.
        net.send_as_hostile(BANK, old_run, Hello("C-1", net.cases["C-1"], "phone", 6, 3))
        refusal = await net.hostile_receive(old_run, Refuse)
        assert isinstance(refusal, Refuse) and refusal.code == "replayed_run"
        # Its points again, and points for a run the bank never had: dropped, counted.
        net.send_as_hostile(BANK, old_run, old_points)
        net.send_as_hostile(BANK, os.urandom(16), old_points)
        await until(lambda: bank.stats.stale >= 1 and bank.stats.unknown_run >= 1, 10)
        # And a new run fed the old run's chunk 0 twice: the second is out of order.
        new_run, _ = await hostile_run(net, 6, 3)
        net.send_as_hostile(BANK, new_run, old_points)
        net.send_as_hostile(BANK, new_run, old_points)
        run = await the_run(bank, new_run)
        assert (run.state, run.outcome) == (RunState.FAILED, "out_of_order")
        assert bank.stats.completed == 0


async def test_a_hostile_responder_is_detected_by_the_initiator(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        police = net.services[POLICE]
        ids = await police.read_set("phone", as_text(phones(0, 4)), dedupe=False)
        run = await police.start("C-1", net.name(HOSTILE), ids)
        hello = await net.hostile_receive(run.run_id, Hello)
        assert isinstance(hello, Hello) and hello.count == 4
        send: Callable[[PsiMessage], None] = lambda m: net.send_as_hostile(POLICE, run.run_id, m)  # noqa: E731
        send(Accept(2, 2))
        send(Points(0, (IDENTITY, blinded(1)[0])))
        await wait_ended(run)
        assert (run.state, run.outcome, run.result) == (RunState.FAILED, "invalid_point", None)
        assert net.record(POLICE, run).outcome == "invalid_point"


async def test_a_silent_peer_times_out(tmp_path: Path) -> None:
    async with consortium(tmp_path, idle_timeout_s=1.0) as net:
        police = net.services[POLICE]
        ids = await police.read_set("phone", as_text(phones(0, 4)), dedupe=False)
        run = await police.start("C-1", net.name(HOSTILE), ids)
        await net.hostile_receive(run.run_id, Hello)
        net.send_as_hostile(POLICE, run.run_id, Accept(2, 2))
        await wait_ended(run)
        assert (run.state, run.outcome) == (RunState.FAILED, "timeout")
        assert "no message from bank-3 for 1 s" in run.message
        assert net.record(POLICE, run).outcome == "timeout"


async def test_bad_input_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        police = net.services[POLICE]
        with pytest.raises(PsiInputError) as info:
            await police.read_set("phone", b"+86 170 0000 0001\nnonsense\n", dedupe=False)
        assert info.value.code == "bad_lines" and [p.line for p in info.value.problems] == [2]
        with pytest.raises(PsiInputError) as info:
            await police.read_set("phone", b"\n\n", dedupe=False)
        assert info.value.code == "empty"
        assert police.runs == {} and net.hostile_got == []


async def test_a_set_is_bounded_before_it_is_parsed_and_bad_lines_stop_the_work(
    tmp_path: Path,
) -> None:
    async with consortium(tmp_path, max_set_size=10_000) as net:
        police = net.services[POLICE]
        # 24 MiB of short lines once took 2.2 GB and froze the loop: now one count of
        # newlines refuses it, before any text or line object is made.
        flood = b"1\n" * (12 * 1024 * 1024)
        started = time.perf_counter()
        with pytest.raises(TooLarge) as too_large:
            await police.read_set("phone", flood, dedupe=False)
        assert time.perf_counter() - started < 0.5
        assert too_large.value.code == "too_large"
        assert "at most 10,000 identifiers" in too_large.value.message
        # A file of nothing but bad lines: normalising stops after STOP_AFTER_PROBLEMS.
        bad = b"nonsense\n" * (4 * NORMALISE_CHUNK)
        with pytest.raises(PsiInputError) as info:
            await police.read_set("phone", bad, dedupe=False)
        assert info.value.code == "bad_lines"
        assert NORMALISE_CHUNK >= STOP_AFTER_PROBLEMS  # so the first chunk stops it
        assert info.value.message.startswith(f"at least {NORMALISE_CHUNK:,} lines")
        assert "the rest of the input was not read" in info.value.message
        assert len(info.value.problems) == MAX_PROBLEMS


async def test_who_may_run_is_checked_before_the_set_is_read(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        police = net.services[POLICE]
        with pytest.raises(Forbidden):
            police.check_start("C-1", net.name(TELECOM))  # C-1 does not name it
        with pytest.raises(NotFound):
            police.check_start("C-9", net.name(BANK))
        with pytest.raises(NotFound):
            police.check_start("C-1", "nobody")
        with pytest.raises(Invalid):
            police.check_start("C-1", net.name(POLICE))
        police.check_start("C-1", net.name(BANK))  # the one a run may use


async def test_the_answering_node_prepares_each_run_with_its_own_scalar(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        police, bank = net.services[POLICE], net.services[BANK]

        def prepared() -> bool:
            return bool(bank.answers.statistics().get("phone", {}).get("prepared"))

        await bank.set_answer_set("phone", as_text(phones(0, 120)))
        ids = await police.read_set("phone", as_text(phones(100, 50)), dedupe=False)
        for _ in range(2):
            await until(prepared, 30)
            run = await wait_ended(await police.start("C-1", net.name(BANK), ids))
            answered = await the_run(bank, run.run_id)
            assert answered.prepared  # its points were ready before the run
            assert (answered.state, answered.result_size, run.result_size) == (
                RunState.COMPLETED,
                20,
                20,
            )
            # Ended: the secret scalar and the elements are gone, the result stays.
            assert (answered.scalar, answered.values, answered.blinded) == (b"", (), None)
            assert answered.result is not None and len(answered.result) == 20
        # A new set drops what was prepared for the old one.
        await until(prepared, 30)
        await bank.set_answer_set("phone", as_text(phones(0, 10)))
        run = await wait_ended(await police.start("C-1", net.name(BANK), ids))
        assert (run.state, run.result_size, run.peer_size) == (RunState.COMPLETED, 0, 10)


async def test_each_prepared_run_has_its_own_scalar_and_shuffle(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        answers = net.services[BANK].answers
        await answers.load("phone", as_text(phones(0, 60)))
        taken = []
        for _ in range(2):
            await answers.prepare_next("phone")
            got = answers.take("phone")
            assert got is not None and got[1] is not None
            taken.append(got[1])
        first, second = taken
        assert first.scalar != second.scalar and first.blinded != second.blinded
        assert first.order != second.order
        assert answers.take("phone") == (first.answer_set, None)  # each is used once
