"""Private details between running nodes: in-process clusters over the in-memory
transport and over TCP with the Noise channel. Who receives them, who never does, what
a recipient does with tampered or early details, delivery to a member that was down,
retention, and the two API endpoints."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_helpers import asgi_client, full_user, users_with
from cluster_helpers import FAST, ledger_bytes
from metrics_helpers import sample_value

from net.transport import Transport
from net.wire import DetailsAck, Frame, PrivateDetails
from node.api.app import build_app
from node.details.records import (
    Details,
    commitment,
    committed_commitment,
    encode_details,
    new_salt,
)
from node.details.service import DAY_MS
from node.ledger.kinds import Report
from node.ledger.transactions import encode_tx, make_tx, tx_id
from node.refusals import NotFound
from node.testing.cluster import InProcessCluster, local_genesis, local_pseudonyms
from node.tracing.service import TracingService

# Timings short enough for tests; retention checks only when a test asks.
QUICK = {"tick_s": 0.05, "retry_base_s": 0.05, "retry_cap_s": 0.2, "retention_check_s": 3600}
POLICE, BANK, TELECOM, BANK2 = 0, 1, 2, 3


class Recorder:
    """A transport wrapper that notes every private-details frame a node sends."""

    def __init__(self, inner: Transport, sent: list[tuple[int, int, Frame]], me: int) -> None:
        self.inner, self.sent, self.me = inner, sent, me

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_nowait(self, to: int, frame: Frame) -> None:
        if isinstance(frame, PrivateDetails | DetailsAck):
            self.sent.append((self.me, to, frame))
        self.inner.send_nowait(to, frame)


class Clock:
    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


@asynccontextmanager
async def running(
    tmp_path: Path,
    transport: str = "memory",
    roles: dict[int, tuple[str, ...]] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[InProcessCluster, list[tuple[int, int, Frame]], trio.Nursery]]:
    genesis, signers = local_genesis(4, consensus=FAST, roles=roles)
    cluster = InProcessCluster(
        tmp_path, genesis, signers, transport=transport, private_options=QUICK | options
    )
    sent: list[tuple[int, int, Frame]] = []
    if transport == "memory":
        attach = cluster.hub.attach

        def recording(me: int) -> Any:
            return Recorder(attach(me), sent, me)

        cluster.hub.attach = recording  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        if transport == "tcp":
            for i in range(4):
                runtime = cluster.runtime(i)
                runtime.transport = Recorder(runtime.transport, sent, i)  # type: ignore[assignment]
        yield cluster, sent, nursery
        await cluster.stop()
        nursery.cancel_scope.cancel()


def signed_report(
    cluster: InProcessCluster, member: int, fields: dict[str, str], phone: str = "+8613800138000"
) -> tuple[bytes, bytes, Details]:
    details = Details.of(fields)
    salt = new_salt()
    body = Report(
        subject=local_pseudonyms(cluster.genesis).refs([("phone", phone)])[0],
        category="fraud_call",
        attributes=(),
        case_id=None,
        observed_ms=int(time.time() * 1000) - 1000,
        details_commitment=commitment(salt, encode_details(details)),
    )
    tx = make_tx(
        cluster.signers[member],
        cluster.genesis.chain_id,
        cluster.member_name(member),
        "report",
        body,
        cluster.next_nonce(),
        int(time.time() * 1000),
    )
    return encode_tx(tx), salt, details


async def share(
    cluster: InProcessCluster,
    member: int,
    fields: dict[str, str],
    recipients: Sequence[int] | None,
    phone: str = "+8613800138000",
) -> bytes:
    tx, salt, details = signed_report(cluster, member, fields, phone)
    names = None if recipients is None else [cluster.member_name(i) for i in recipients]
    result, _ = await cluster.details(member).submit_with_details(tx, salt, details, names)
    assert result.accepted, result
    await cluster.runtime(member).wait_committed(result.tx_id)
    return result.tx_id


async def until(condition: Callable[[], bool], poll_s: float = 0.02) -> None:
    while not condition():  # noqa: ASYNC110 (the state lives in several services)
        await trio.sleep(poll_s)


def holds(cluster: InProcessCluster, member: int, wanted: bytes) -> bool:
    return cluster.details(member).store.get(wanted) is not None


def not_held(cluster: InProcessCluster, member: int, wanted: bytes) -> str:
    with pytest.raises(NotFound) as caught:
        cluster.details(member).lookup(wanted)
    return caught.value.code


@pytest.mark.timeout(60)
async def test_details_reach_exactly_the_named_members_and_no_frame_goes_elsewhere(
    tmp_path: Path,
) -> None:
    with trio.fail_after(45):
        async with running(tmp_path) as (cluster, sent, _):
            fields = {"victim": "Li Na, +86 138 0013 8000", "officer_note": "called twice"}
            named = await share(cluster, BANK, fields, [TELECOM])
            default = await share(cluster, TELECOM, {"victim": "Wang Fang"}, None, "+8613900139000")
            await until(lambda: holds(cluster, TELECOM, named) and holds(cluster, POLICE, default))
            await until(lambda: not cluster.details(BANK)._outbox)
            await until(lambda: not cluster.details(TELECOM)._outbox)

            # Named: the submitter and telecom hold them, and match the ledger.
            for member in (BANK, TELECOM):
                view = cluster.details(member).lookup(named)
                assert view.details == fields and view.matches is True
                assert view.sender == cluster.member_name(BANK)
                assert view.height == cluster.store(member).tx_location(named)[0]  # type: ignore[index]
            mine = cluster.details(BANK).lookup(named)
            assert mine.shared_with == (cluster.member_name(BANK), cluster.member_name(TELECOM))
            assert mine.undelivered == ()
            assert cluster.details(TELECOM).lookup(named).shared_with == ()
            # Default: the investigator (police) and the submitter.
            assert cluster.details(POLICE).lookup(default).details == {"victim": "Wang Fang"}
            assert cluster.details(TELECOM).lookup(default).shared_with == (
                cluster.member_name(POLICE),
                cluster.member_name(TELECOM),
            )
            # The others never received a byte of them: nothing stored, no frame sent.
            for member, wanted in ((POLICE, named), (BANK2, named), (BANK, default)):
                assert not_held(cluster, member, wanted) == "not_entitled"
            assert cluster.details(BANK2).store.count() == 0
            details_frames = [(s, t, f) for s, t, f in sent if isinstance(f, PrivateDetails)]
            assert {(s, t, f.tx_id) for s, t, f in details_frames} == {
                (BANK, TELECOM, named),
                (TELECOM, POLICE, default),
            }
            # The ledger has the commitment only: no detail value is in its files.
            for member in range(4):
                ledger_file = (cluster.data_dir(member) / "data.mdb").read_bytes()
                assert b"Li Na" not in ledger_file and b"Wang Fang" not in ledger_file
            private_file = (cluster.data_dir(TELECOM) / "private" / "data.mdb").read_bytes()
            assert b"Li Na" in private_file
            stats = cluster.details(BANK).stats
            assert stats.shared == 1 and stats.acknowledged == 1


@pytest.mark.timeout(60)
async def test_a_case_s_justification_goes_to_the_approvers_only_and_no_frame_elsewhere(
    tmp_path: Path,
) -> None:
    # The bank with index 3 approves no cases in this consortium.
    with trio.fail_after(45):
        async with running(tmp_path, roles={BANK2: ("reporter", "auditor")}) as (cluster, sent, _):
            police = TracingService.attach(
                cluster.runtime(POLICE),
                cluster.store(POLICE),
                cluster.genesis,
                cluster.pseudonyms(POLICE),
            )
            officer, token = full_user()
            app = build_app(
                cluster.runtime(POLICE),
                cluster.store(POLICE),
                cluster.genesis,
                tracing=police,
                details=cluster.details(POLICE),
                pseudonyms=cluster.pseudonyms(POLICE),
                users=users_with(officer),
            )
            why = "Li Na, +86 138 0013 8000, lost 48,000 CNY to callers posing as police."
            now = int(time.time() * 1000)
            body = {
                "case_id": "HZ-WHY",
                "purpose": "telecom_fraud",
                "justification": why,
                "scope": ["phone:+86 170 2311 4587"],
                "window": {"start_ms": now - DAY_MS, "end_ms": now},
                "expires_ms": now + DAY_MS,
            }
            async with asgi_client(app, token) as c:
                response = await c.post("/cases", json=body)
            assert response.status_code == 201, response.text
            case_tx = bytes.fromhex(response.json()["tx_id"])
            await until(lambda: holds(cluster, BANK, case_tx) and holds(cluster, TELECOM, case_tx))
            await until(lambda: not cluster.details(POLICE)._outbox)
            committed = cluster.store(BANK).tx(case_tx)
            assert committed is not None
            _, promise = committed_commitment(committed)
            for member in (POLICE, BANK, TELECOM):
                view = cluster.details(member).lookup(case_tx)
                assert view.details == {"justification": why} and view.matches is True
                assert view.commitment == promise and view.sender == cluster.member_name(POLICE)
            assert not_held(cluster, BANK2, case_tx) == "not_entitled"
            details_frames = {(s, t, f.tx_id) for s, t, f in sent if isinstance(f, PrivateDetails)}
            assert details_frames == {(POLICE, BANK, case_tx), (POLICE, TELECOM, case_tx)}
            for member in range(4):
                ledger_file = (cluster.data_dir(member) / "data.mdb").read_bytes()
                assert b"Li Na" not in ledger_file and b"0013" not in ledger_file


@pytest.mark.timeout(60)
async def test_tampered_or_misattributed_details_are_refused_counted_and_not_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crosstrace.private")
    with trio.fail_after(45):
        async with running(tmp_path) as (cluster, sent, _):
            tx, salt, details = signed_report(cluster, BANK, {"victim": "Li Na"})
            accepted = await cluster.runtime(BANK).submit(tx)  # no details shared at all
            await cluster.runtime(TELECOM).wait_committed(accepted.tx_id)
            wanted = accepted.tx_id
            real = encode_details(details)
            tampered = encode_details(Details.of({"victim": "Li Nb"}))
            # Through the real transports: the signer with altered details, another
            # member with the right ones.
            cluster.runtime(BANK).transport.send_nowait(
                TELECOM, PrivateDetails(wanted, salt, tampered)
            )
            cluster.runtime(BANK2).transport.send_nowait(
                TELECOM, PrivateDetails(wanted, salt, real)
            )
            cluster.runtime(BANK).transport.send_nowait(
                POLICE, PrivateDetails(wanted, new_salt(), real)
            )
            recipient = cluster.details(TELECOM)
            await until(lambda: sum(recipient.stats.rejected.values()) == 2)
            await until(lambda: cluster.details(POLICE).stats.rejected.get("mismatch") == 1)
            assert recipient.stats.rejected == {"mismatch": 1, "not_signer": 1}
            assert recipient.store.count() == 0 and cluster.details(POLICE).store.count() == 0
            assert not_held(cluster, TELECOM, wanted) == "not_entitled"
            await until(lambda: len([f for *_, f in sent if isinstance(f, DetailsAck)]) == 3)
            acks = {(s, t, f.status) for s, t, f in sent if isinstance(f, DetailsAck)}
            assert acks == {
                (TELECOM, BANK, "mismatch"),
                (TELECOM, BANK2, "not_signer"),
                (POLICE, BANK, "mismatch"),
            }
            assert any("mismatch" in r.getMessage() for r in caplog.records)
            # The metric, through the API.
            app = build_app(
                cluster.runtime(TELECOM),
                cluster.store(TELECOM),
                cluster.genesis,
                details=recipient,
            )
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
            ) as client:
                metrics = (await client.get("/metrics")).text
            rejected = "crosstrace_private_details_rejected_total"
            assert sample_value(metrics, rejected, {"reason": "mismatch"}) == 1
            assert sample_value(metrics, "crosstrace_private_details_held") == 0
            # The genuine details from the signer are still taken afterwards.
            cluster.runtime(BANK).transport.send_nowait(TELECOM, PrivateDetails(wanted, salt, real))
            await until(lambda: holds(cluster, TELECOM, wanted))
            assert recipient.lookup(wanted).matches is True


@pytest.mark.timeout(60)
async def test_details_that_arrive_before_the_commit_wait_and_are_checked_when_it_commits(
    tmp_path: Path,
) -> None:
    with trio.fail_after(45):
        async with running(tmp_path) as (cluster, _sent, _):
            tx, salt, details = signed_report(cluster, BANK, {"victim": "Li Na"})
            wanted = tx_id(tx)
            frame = PrivateDetails(wanted, salt, encode_details(details))
            cluster.runtime(BANK).transport.send_nowait(TELECOM, frame)
            recipient = cluster.details(TELECOM)
            await until(lambda: bool(recipient._pending))
            assert not_held(cluster, TELECOM, wanted) == "pending"
            assert recipient.store.count() == 0
            result = await cluster.runtime(BANK).submit(tx)
            assert result.accepted
            await until(lambda: holds(cluster, TELECOM, wanted))
            # The record is readable as soon as the worker thread wrote it; the service
            # counts it once it is back on the loop.
            await until(lambda: recipient.stats.stored == 1)
            assert recipient.lookup(wanted).matches is True
            assert not recipient._pending and recipient.stats.stored == 1


@pytest.mark.timeout(60)
async def test_the_pending_area_is_bounded_and_expires(tmp_path: Path) -> None:
    from node.details import service as private_service

    with trio.fail_after(45):
        async with running(tmp_path, pending_ttl_s=0.3) as (cluster, _sent, _):
            recipient = cluster.details(TELECOM)
            limit = private_service.PENDING_PER_MEMBER
            for i in range(limit + 5):
                frame = PrivateDetails(i.to_bytes(32, "big"), bytes(32), b"x")
                cluster.runtime(BANK).transport.send_nowait(TELECOM, frame)
            await until(lambda: recipient.stats.rejected.get("pending_full") == 5)
            assert len(recipient._pending) == limit
            await until(lambda: not recipient._pending)
            assert recipient.stats.rejected["pending_expired"] == limit
            assert recipient._pending_bytes[BANK] == 0


@pytest.mark.timeout(90)
async def test_a_member_that_was_down_receives_the_details_when_it_is_back(
    tmp_path: Path,
) -> None:
    """Down when the report commits; meanwhile the submitter restarts, so its outbox must
    survive on disk; the details arrive once both are up again."""
    with trio.fail_after(75):
        async with running(tmp_path) as (cluster, _sent, nursery):
            await cluster.stop_node(BANK2)
            wanted = await share(cluster, BANK, {"victim": "Li Na"}, [BANK2])
            sender = cluster.details(BANK)
            assert list(sender._outbox) == [(wanted, BANK2)]
            await until(lambda: sender.stats.sent >= 3)  # retries that go nowhere
            assert sender._outbox
            assert sender.lookup(wanted).undelivered == (cluster.member_name(BANK2),)
            await cluster.stop_node(BANK)
            await cluster.start_node(nursery, BANK)
            assert list(cluster.details(BANK)._outbox) == [(wanted, BANK2)]
            await cluster.start_node(nursery, BANK2)
            await until(lambda: holds(cluster, BANK2, wanted))
            assert cluster.details(BANK2).lookup(wanted).matches is True
            await until(lambda: not cluster.details(BANK)._outbox)
            assert cluster.details(BANK).store.outbox() == []
            assert cluster.details(BANK).lookup(wanted).undelivered == ()


@pytest.mark.timeout(60)
async def test_retention_deletes_only_old_details_logs_each_and_leaves_the_ledger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crosstrace.private")
    clock = Clock()
    with trio.fail_after(45):
        async with running(tmp_path, clock_ms=clock, retention_ms=3 * DAY_MS) as (
            cluster,
            sent,
            _,
        ):
            old = await share(cluster, BANK, {"victim": "Li Na"}, [TELECOM])
            await until(lambda: holds(cluster, TELECOM, old))
            old_record = cluster.details(BANK).store.get(old)
            assert old_record is not None
            clock.offset_ms = 2 * DAY_MS
            new = await share(cluster, BANK, {"victim": "Wang Fang"}, [TELECOM], "+8613900139000")
            await until(lambda: holds(cluster, TELECOM, new))
            await cluster.wait_height(cluster.store(BANK).tip()[0])
            ledger_before = ledger_bytes(cluster, TELECOM)
            clock.offset_ms = int(3.5 * DAY_MS)
            for member in (BANK, TELECOM):
                gone = await cluster.details(member).run_retention()
                assert [d.tx_id for d in gone] == [old]
                assert cluster.details(member).stats.deleted == 1
                assert not_held(cluster, member, old) == "deleted"
                assert cluster.details(member).lookup(new).matches is True
            assert ledger_bytes(cluster, TELECOM) == ledger_before
            assert cluster.store(TELECOM).tx(old) is not None  # the commitment stays
            assert await cluster.details(TELECOM).run_retention() == []
            deletions = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
            assert len(deletions) == 2 and all(
                old.hex() in m and "3.5 days" in m for m in deletions
            )
            # A late re-delivery is acknowledged but not stored again.
            frame = PrivateDetails(old, old_record.salt, old_record.details)
            cluster.runtime(BANK).transport.send_nowait(TELECOM, frame)
            expired = (TELECOM, BANK, DetailsAck(old, "expired"))
            await until(lambda: expired in sent)
            assert not holds(cluster, TELECOM, old)


@pytest.mark.timeout(90)
async def test_over_tcp_with_noise_details_go_to_the_named_member_only(tmp_path: Path) -> None:
    with trio.fail_after(75):
        async with running(tmp_path, transport="tcp") as (cluster, sent, _):
            wanted = await share(cluster, TELECOM, {"victim": "Li Na"}, [BANK2])
            await until(lambda: holds(cluster, BANK2, wanted))
            await until(lambda: not cluster.details(TELECOM)._outbox)
            assert {(s, t) for s, t, f in sent if isinstance(f, PrivateDetails)} == {
                (TELECOM, BANK2)
            }
            for member in (POLICE, BANK):
                assert cluster.details(member).store.count() == 0
                assert not_held(cluster, member, wanted) == "not_entitled"


@pytest.mark.timeout(60)
async def test_the_api_takes_details_with_a_signed_report_and_shows_them(tmp_path: Path) -> None:
    with trio.fail_after(45):
        async with running(tmp_path) as (cluster, _sent, _):
            user, token = full_user()
            apps = [
                build_app(
                    cluster.runtime(i),
                    cluster.store(i),
                    cluster.genesis,
                    details=d,
                    users=users_with(user),
                )
                for i, d in ((i, cluster.details(i)) for i in range(4))
            ]

            def client(i: int) -> httpx.AsyncClient:
                return asgi_client(apps[i], token)

            tx, salt, details = signed_report(cluster, BANK, {"victim": "Li Na"})
            body = {
                "tx": tx.hex(),
                "salt": salt.hex(),
                "details": details.as_dict(),
                "share_with": [cluster.member_name(TELECOM)],
            }
            async with client(BANK) as bank:
                response = await bank.post("/details?wait=true&timeout=10", json=body)
                assert response.status_code == 200, response.text
                [row] = response.json()["results"]
                assert row["accepted"] and row["committed"]
                assert row["shared_with"] == [
                    cluster.member_name(BANK),
                    cluster.member_name(TELECOM),
                ]
                wanted = bytes.fromhex(row["tx_id"])
                again = await bank.post("/details", json=body)
                assert again.status_code == 409 and again.json()["error"] == "already_shared"
                refusals = {
                    "mismatch": body | {"salt": new_salt().hex()},
                    "unknown_member": body | {"share_with": ["bnak-1"]},
                    "bad_details": body | {"details": {"Victim": "x"}},
                    "bad_request": body | {"shared_with": []},
                    "bad_hex": body | {"salt": "00"},
                }
                for code, wrong in refusals.items():
                    refused = await bank.post("/details", json=wrong)
                    assert refused.status_code in (400, 422), refused.text
                    assert refused.json()["error"] == code
                    assert "Li Na" not in refused.text
                other, osalt, odetails = signed_report(cluster, TELECOM, {"victim": "x"})
                not_own = await bank.post(
                    "/details",
                    json={"tx": other.hex(), "salt": osalt.hex(), "details": odetails.as_dict()},
                )
                assert not_own.status_code == 422 and not_own.json()["error"] == "not_own"
            await until(lambda: holds(cluster, TELECOM, wanted))
            async with client(TELECOM) as telecom:
                shown = (await telecom.get(f"/details/{wanted.hex()}")).json()
                assert shown["details"] == {"victim": "Li Na"}
                assert shown["matches_commitment"] is True
                assert shown["sender"] == cluster.member_name(BANK)
                assert shown["salt"] == salt.hex() and shown["commitment"] is not None
            async with client(BANK2) as bank2:
                missing = await bank2.get(f"/details/{wanted.hex()}")
                assert missing.status_code == 404 and missing.json()["error"] == "not_entitled"
                unknown = await bank2.get(f"/details/{'00' * 32}")
                assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
                bad = await bank2.get("/details/xyz")
                assert bad.status_code == 400
            # A node assembled without a private store still has the routes, and says so.
            plain = build_app(
                cluster.runtime(POLICE),
                cluster.store(POLICE),
                cluster.genesis,
                users=users_with(user),
            )
            async with asgi_client(plain, token) as c:
                unavailable = await c.get(f"/details/{wanted.hex()}")
                assert unavailable.status_code == 503
                assert unavailable.json()["error"] == "unavailable"
