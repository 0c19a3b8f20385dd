"""Disclosure of an identity under a case, between the nodes of an in-process consortium:
a request answered at once (auto policy), one refused from the operator's queue, one
outside the case's reach (refused with the reason, nothing recorded or sent), a member
that did not report the entity is never asked, a hostile member's wrong identifier is
caught, no identifier ever reaches a ledger file or a log line, and retention deletes
the kept and the received identifiers."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from api_helpers import asgi_client
from cluster_helpers import FAST
from cluster_helpers import commit_body as commit

from net.transport import Transport
from net.wire import DisclosureAsk, DisclosureReply, Frame
from node.api.app import build_app
from node.disclosure.service import DAY_MS, DisclosureService
from node.disclosure.store import DisclosureStore, RequestRecord
from node.identifiers.normalize import normalize
from node.identifiers.pseudonym import EntityRef
from node.ledger.kinds import Approve, Body, Case, DisclosureAnswer, DisclosureRequest, Link, Report
from node.ledger.transactions import decode_body, decode_tx
from node.refusals import Forbidden, NotFound
from node.setup.users import NODE_ACTOR, UserStore, make_user
from node.testing.cluster import InProcessCluster, local_genesis, local_pseudonyms

pytestmark = pytest.mark.timeout(180)

POLICE, BANK, TELECOM, HOSTILE = 0, 1, 2, 3
CALLER = normalize("phone", "+86 138 0013 8000")  # in the case's scope
MULE = normalize("account", "DE89370400440532013000")  # linked to the caller
STRANGER = normalize("phone", "+86 139 0000 1111")  # reported, unrelated to the case
SECOND = normalize("phone", "+86 138 0013 8001")  # in scope, reported by the hostile one
LIE = normalize("phone", "+86 150 0000 0000")  # what the hostile member answers with
PSEUDONYMS = local_pseudonyms(local_genesis(4, consensus=FAST)[0])


def ref(entity_type: str, value: str) -> EntityRef:
    """The consortium's pseudonym (its key dealt by the test-only dealer), offline."""
    return PSEUDONYMS.refs([(entity_type, value)])[0]


class Clock:
    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


class Recorder:
    """Notes every disclosure frame a node sends."""

    def __init__(self, inner: Transport, sent: list[tuple[int, int, Frame]], me: int) -> None:
        self.inner, self.sent, self.me = inner, sent, me

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_nowait(self, to: int, frame: Frame) -> None:
        if isinstance(frame, DisclosureAsk | DisclosureReply):
            self.sent.append((self.me, to, frame))
        self.inner.send_nowait(to, frame)


@dataclass
class Net:
    cluster: InProcessCluster
    services: dict[int, DisclosureService]
    sent: list[tuple[int, int, Frame]]
    clock: Clock
    case_tx: bytes

    def name(self, i: int) -> str:
        return self.cluster.member_name(i)


def report(entity: EntityRef) -> Report:
    now = int(time.time() * 1000)
    return Report(entity, "fraud_call", (), None, now - 60_000, None)


async def until(condition: Callable[[], bool], within: float = 20) -> None:
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 (no event to wait on)
            await trio.sleep(0.02)


async def run_until_cancelled(
    service: DisclosureService,
    scopes: list[tuple[trio.CancelScope, trio.Event]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    done = trio.Event()
    with trio.CancelScope() as scope:
        scopes.append((scope, done))
        try:
            await service.run(task_status=task_status)
        finally:
            done.set()


@asynccontextmanager
async def consortium(tmp_path: Path) -> AsyncIterator[Net]:
    genesis, signers = local_genesis(4, consensus=FAST)
    cluster = InProcessCluster(tmp_path, genesis, signers)
    sent: list[tuple[int, int, Frame]] = []
    attach = cluster.hub.attach

    def recording(me: int) -> Any:
        return Recorder(attach(me), sent, me)

    cluster.hub.attach = recording  # type: ignore[method-assign]
    clock = Clock()
    policies = {POLICE: "queue", BANK: "auto", TELECOM: "queue", HOSTILE: "auto"}
    stores: list[DisclosureStore] = []
    scopes: list[tuple[trio.CancelScope, trio.Event]] = []
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        services = {}
        for i, policy in policies.items():
            store = DisclosureStore.open(
                cluster.data_dir(i) / "disclosure", chain_id=genesis.chain_id
            )
            stores.append(store)
            services[i] = DisclosureService(
                cluster.runtime(i),
                cluster.store(i),
                genesis,
                store,
                pseudonyms=cluster.pseudonyms(i),
                policy=policy,
                retention_ms=30 * DAY_MS,
                clock_ms=clock,
                resend_s=0.2,
                record_timeout_s=20,
                retention_check_s=3600,
            )
            await nursery.start(run_until_cancelled, services[i], scopes)
        now = int(time.time() * 1000)
        scope = (ref("phone", CALLER), ref("phone", SECOND))
        case = Case("C-1", "telecom_fraud", bytes(32), scope, now - DAY_MS, now, now + DAY_MS)
        case_tx = await commit(cluster, POLICE, case)
        for member in (BANK, TELECOM, HOSTILE):
            await commit(cluster, member, Approve("C-1", case_tx))
        # What each member reported, and the identifiers its tools hand its node.
        await commit(cluster, BANK, report(ref("phone", CALLER)))
        await commit(cluster, BANK, report(ref("phone", STRANGER)))
        link = Link(ref("phone", CALLER), ref("account", MULE), "transferred_to", now, None)
        await commit(cluster, BANK, link)
        await commit(cluster, TELECOM, report(ref("phone", CALLER)))
        await commit(cluster, HOSTILE, report(ref("phone", SECOND)))
        for member, entity_type, value in (
            (BANK, "phone", CALLER),
            (BANK, "phone", STRANGER),
            (BANK, "account", MULE),
            (TELECOM, "phone", CALLER),
        ):
            kept = await services[member].keep_identifiers(
                [(entity_type, ref(entity_type, value).pseudonym, value, None)]
            )
            assert [k.reason for k in kept] == ["kept"]
        # The hostile member keeps a lie for the entity it reported.
        services[HOSTILE].store.keep(ref("phone", SECOND), LIE, clock())
        await cluster.wait_height(cluster.runtime(POLICE).height)
        yield Net(cluster, services, sent, clock, case_tx)
        # The services first, then the nodes, then the stores they used.
        for cancel_scope, done in scopes:
            cancel_scope.cancel()
            await done.wait()
        await cluster.stop()
        for store in stores:
            store.close()
        nursery.cancel_scope.cancel()


def ledger_records(net: Net, member: int) -> list[Body]:
    store = net.cluster.store(member)
    height, _ = store.tip()
    bodies: list[Body] = []
    for block, _cert in store.blocks_range(1, height):
        bodies.extend(decode_body(decode_tx(tx)) for tx in block.txs)
    return bodies


def ledger_files_hold(net: Net, member: int, text: str) -> bool:
    """Do the ledger's own LMDB files (not the private environments beside them) hold
    ``text``, in UTF-8 or as the digits alone?"""
    needles = {text.encode(), text.lstrip("+").encode()}
    directory = net.cluster.data_dir(member)
    for path in directory.iterdir():
        if path.is_file():
            data = path.read_bytes()
            if any(n in data for n in needles):
                return True
    return False


async def answered(service: DisclosureService, request_id: bytes) -> RequestRecord:
    await until(lambda: service.view(request_id).state == "complete")
    return service.view(request_id)


async def test_auto_answer_queue_denial_and_no_identifier_on_any_ledger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with consortium(tmp_path) as net:
        police, telecom = net.services[POLICE], net.services[TELECOM]
        record = await police.request("C-1", ref("phone", CALLER))
        # The two members that reported the caller are asked; the other one never is.
        assert set(record.asked) == {net.name(BANK), net.name(TELECOM)}
        await until(lambda: len(telecom.pending()) == 1)
        [held] = telecom.pending()
        assert held.request_id == record.request_id and held.requester == net.name(POLICE)
        denied = await telecom.deny(record.request_id, "no court order")
        assert denied.state == "answered" and not telecom.pending()
        final = await answered(police, record.request_id)
        by_member = {a.member: a for a in final.answers}
        assert by_member[net.name(BANK)].outcome == "allowed"
        assert by_member[net.name(BANK)].identifier == CALLER
        assert by_member[net.name(TELECOM)].outcome == "denied"
        assert by_member[net.name(TELECOM)].reason == "no court order"
        assert by_member[net.name(TELECOM)].identifier is None
        asks = [(src, to) for src, to, f in net.sent if isinstance(f, DisclosureAsk)]
        assert asks and all(src == POLICE and to in (BANK, TELECOM) for src, to in asks)
        replies = [(src, to, f) for src, to, f in net.sent if isinstance(f, DisclosureReply)]
        assert all(to == POLICE for _, to, _ in replies)  # to the requester only
        assert {f.identifier for _, _, f in replies} == {CALLER, ""}
        # Every member's ledger records the request and both answers, no identifier.
        height = net.cluster.runtime(POLICE).height
        await net.cluster.wait_height(height)
        for member in range(4):
            bodies = ledger_records(net, member)
            [request] = [b for b in bodies if isinstance(b, DisclosureRequest)]
            assert request.request_id == record.request_id
            assert request.case_tx == net.case_tx
            answers = {b.outcome for b in bodies if isinstance(b, DisclosureAnswer)}
            assert answers == {"allowed", "denied"}
            for value in (CALLER, MULE, STRANGER):
                assert not ledger_files_hold(net, member, value), (member, value)
        # The requester's private store holds it; no log line does.
        private = net.cluster.data_dir(POLICE) / "disclosure"
        assert any(CALLER.encode() in p.read_bytes() for p in private.iterdir() if p.is_file())
        assert police.store.request(record.request_id) is not None
        assert not any(CALLER.lstrip("+") in r.getMessage() for r in caplog.records)


async def test_linked_entity_is_within_reach_but_an_unrelated_one_is_refused(
    tmp_path: Path,
) -> None:
    async with consortium(tmp_path) as net:
        police = net.services[POLICE]
        record = await police.request("C-1", ref("account", MULE))  # one link from the scope
        assert record.asked == (net.name(BANK),)
        final = await answered(police, record.request_id)
        assert [(a.outcome, a.identifier) for a in final.answers] == [("allowed", MULE)]
        before = net.cluster.store(POLICE).tip()[0]
        frames = len(net.sent)
        with pytest.raises(Forbidden) as refused:
            await police.request("C-1", ref("phone", STRANGER))
        assert refused.value.code == "out_of_scope"
        assert "neither in the scope of case 'C-1'" in refused.value.message
        await trio.sleep(0.5)
        assert len(net.sent) == frames  # nothing sent
        assert net.cluster.store(POLICE).tip()[0] == before  # nothing recorded
        with pytest.raises(NotFound):
            await police.request("C-2", ref("phone", CALLER))


async def test_answering_member_refuses_what_its_own_ledger_puts_outside_the_case(
    tmp_path: Path,
) -> None:
    async with consortium(tmp_path) as net:
        bank = net.services[BANK]
        bank.reach = lambda case, entity: "the entity is outside the case on this ledger"
        record = await net.services[POLICE].request("C-1", ref("account", MULE))
        final = await answered(net.services[POLICE], record.request_id)
        [answer] = final.answers
        assert answer.outcome == "outside_scope" and answer.identifier is None
        assert answer.reason == "the entity is outside the case on this ledger"


async def test_a_wrong_identifier_from_a_hostile_member_is_caught(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        police = net.services[POLICE]
        record = await police.request("C-1", ref("phone", SECOND))
        assert record.asked == (net.name(HOSTILE),)
        final = await answered(police, record.request_id)
        [answer] = final.answers
        assert answer.outcome == "wrong_identifier"
        assert answer.identifier is None
        assert net.name(HOSTILE) in answer.reason
        # Counted on the loop once the record's write (in a worker thread) has returned,
        # so just after the record shows complete.
        await until(lambda: police.stats.received == {"wrong_identifier": 1})


async def test_keeping_needs_own_report_and_a_matching_identifier(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        telecom = net.services[TELECOM]
        results = await telecom.keep_identifiers(
            [
                ("account", ref("account", MULE).pseudonym, MULE, None),  # not its report
                ("phone", ref("phone", CALLER).pseudonym, STRANGER, None),  # wrong one
                ("phone", ref("phone", CALLER).pseudonym, "+86 138 0013 8000", None),
                ("phone", ref("phone", CALLER).pseudonym, CALLER, None),  # kept already
            ]
        )
        assert [r.reason for r in results] == [
            "not_reported",
            "mismatch",
            "not_normalised",
            "already_kept",
        ]


async def test_retention_deletes_kept_and_received_identifiers(tmp_path: Path) -> None:
    async with consortium(tmp_path) as net:
        police, bank = net.services[POLICE], net.services[BANK]
        record = await police.request("C-1", ref("account", MULE))
        final = await answered(police, record.request_id)
        assert final.answers[0].identifier == MULE
        assert bank.store.identifier(ref("account", MULE)) is not None
        net.clock.offset_ms = 29 * DAY_MS
        assert await bank.run_retention() == (0, 0)
        net.clock.offset_ms = 31 * DAY_MS
        assert await bank.run_retention() == (3, 0)
        assert await police.run_retention() == (0, 1)
        assert bank.store.identifier(ref("account", MULE)) is None
        [answer] = police.view(record.request_id).answers
        assert answer.identifier is None and answer.reason == "deleted by retention"
        assert answer.outcome == "allowed"


async def test_api_routes_with_roles(tmp_path: Path) -> None:
    """The routes behind the CLI: an investigator asks and reads, the operator of the
    queueing member denies; other roles are refused."""
    async with consortium(tmp_path) as net:
        investigator, investigator_token = make_user("ina", ["investigator"])
        reporter, reporter_token = make_user("rob", ["reporter"])
        operator, operator_token = make_user("otto", ["operator"])
        users = UserStore.fixed([investigator, reporter, operator])

        def app_of(i: int) -> Any:
            return build_app(
                net.cluster.runtime(i),
                net.cluster.store(i),
                net.cluster.genesis,
                disclosure=net.services[i],
                users=users,
            )

        police_app, telecom_app = app_of(POLICE), app_of(TELECOM)
        entity = {"type": "phone", "pseudonym": ref("phone", CALLER).pseudonym.hex()}
        body = {"case_id": "C-1", "entity": entity}
        async with asgi_client(police_app, reporter_token) as client:
            refused = await client.post("/disclosures", json=body)
            assert refused.status_code == 403, refused.text
        async with asgi_client(police_app, investigator_token) as client:
            outside = {"case_id": "C-1", "entity": {**entity, "pseudonym": "ab" * 32}}
            response = await client.post("/disclosures", json=outside)
            assert response.status_code == 403 and response.json()["error"] == "out_of_scope"
            response = await client.post("/disclosures", json=body)
            assert response.status_code == 201, response.text
            request_id = response.json()["request_id"]
        async with asgi_client(telecom_app, investigator_token) as client:
            assert (await client.get("/disclosure/pending")).status_code == 403
        async with asgi_client(telecom_app, operator_token) as client:
            await until(lambda: len(net.services[TELECOM].pending()) == 1)
            listed = (await client.get("/disclosure/pending")).json()["disclosures"]
            assert [d["request_id"] for d in listed] == [request_id]
            path = f"/disclosure/pending/{request_id}/deny"
            response = await client.post(path, json={"reason": "no court order"})
            assert response.status_code == 200, response.text
            again = await client.post(path, json={})
            assert again.status_code == 409
        async with asgi_client(police_app, investigator_token) as client:
            await answered(net.services[POLICE], bytes.fromhex(request_id))
            shown = (await client.get(f"/disclosures/{request_id}")).json()
            outcomes = {a["member"]: (a["outcome"], a["identifier"]) for a in shown["answers"]}
            assert outcomes == {
                net.name(BANK): ("allowed", CALLER),
                net.name(TELECOM): ("denied", None),
            }
            listing = (await client.get("/disclosures")).json()["disclosures"]
            assert [d["request_id"] for d in listing] == [request_id]
        # Who asked and who denied are on the ledger as the users' actor ids.
        top = max(net.cluster.runtime(i).height for i in range(4))
        await net.cluster.wait_height(top, [POLICE])
        bodies = ledger_records(net, POLICE)
        [asked_by] = [b.actor for b in bodies if isinstance(b, DisclosureRequest)]
        assert asked_by == investigator.actor
        decided = {b.outcome: b.actor for b in bodies if isinstance(b, DisclosureAnswer)}
        assert decided == {"denied": operator.actor, "allowed": NODE_ACTOR}
        async with asgi_client(app_of(BANK), reporter_token) as client:
            mule = ref("account", MULE).pseudonym.hex()
            items = [{"type": "account", "pseudonym": mule, "identifier": MULE}]
            kept = await client.post("/disclosure/identifiers", json={"identifiers": items})
            assert kept.status_code == 200, kept.text
            assert kept.json()["results"][0]["reason"] == "already_kept"
