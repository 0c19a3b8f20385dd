"""Cases, tracing queries and the audit trail through the local API, on an in-process
consortium of four nodes: every endpoint, every refusal with its exact message, and the
access record a query leaves on every node's ledger before it is answered."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_helpers import asgi_client, users_with
from tracing_api_helpers import (
    ACCOUNT,
    DAY,
    DEVICE,
    EMAIL,
    JUSTIFICATION,
    PHONE,
    TracingCluster,
    now_ms,
    ref,
    tracing_cluster,
)

from consensus.codec import pack, to_wire
from node.api.app import build_app
from node.client.text import audit_lines
from node.details.records import commitment, encode_details, justification_details
from node.details.store import PrivateRecord
from node.ledger.cases import format_time_ms
from node.ledger.kinds import PURPOSES, Case, PsiRun
from node.ledger.transactions import encode_tx, sign_tx
from node.tracing.queries import TimeWindow, short_pseudonym
from node.tracing.service import TracingService

pytestmark = pytest.mark.timeout(90)


JSON = {"content-type": "application/json"}
FREE_TEXT = "Caller 139.8765.4321 and Li Wei of 12 Xinhua Rd"
BAD_PURPOSE = (
    f"purpose must be one of {', '.join(PURPOSES)}; the reasons for the case go in its "
    "justification, which only the approvers receive"
)


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    message: str = body["message"]
    return message


async def delivered(tc: TracingCluster, member: int) -> None:
    """Until every private-details delivery ``member`` owes is acknowledged."""
    while tc.cluster.details(member)._outbox:  # noqa: ASYNC110 (the service's state)
        await trio.sleep(0.05)


def short(text: str) -> str:
    return short_pseudonym(ref(text))


async def build_ledger(tc: TracingCluster) -> dict[str, bytes]:
    """Reports and links from three members; returns their tx ids by name."""
    now = now_ms()
    names = ["phone report", "phone-account", "account report", "account-device", "device-email"]
    txs = [
        tc.report(1, PHONE, now - 2 * DAY),
        tc.link(2, PHONE, ACCOUNT, "uses", now - DAY),
        tc.report(1, ACCOUNT, now - DAY, "money_mule"),
        tc.link(3, ACCOUNT, DEVICE, "logged_in_from", now - DAY),
        tc.link(2, DEVICE, EMAIL, "registered_with", now - DAY),
    ]
    return dict(zip(names, await tc.commit(txs), strict=True))


async def test_a_case_opened_approved_by_k_members_then_queried_leaves_an_audit_trail(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path) as tc:
            ids = await build_ledger(tc)
            opened = await tc.open_case("HZ-2026-01", [PHONE, ACCOUNT])
            case = opened["case"]
            assert opened["committed"] is True and opened["height"] >= 1
            assert case["case_id"] == "HZ-2026-01" and case["state"] == "pending"
            assert case["opened"]["member"] == "police-0"
            assert case["reason"] == "case 'HZ-2026-01' is waiting for approval: 0 of 3 approvals"
            assert [e["pseudonym"] for e in case["scope"]] == [
                ref(PHONE).pseudonym.hex(),
                ref(ACCOUNT).pseudonym.hex(),
            ]
            # Every node's registry has it once the block is stored there.
            shown = (await tc.clients[3].get("/cases/HZ-2026-01")).json()
            assert shown["state"] == "pending" and shown["needed"] == 3

            await tc.approve("HZ-2026-01", [1, 2])
            shown = (await tc.clients[0].get("/cases/HZ-2026-01")).json()
            assert shown["reason"] == "case 'HZ-2026-01' is waiting for approval: 2 of 3 approvals"
            approved = await tc.approve("HZ-2026-01", [3])
            assert approved["case"]["state"] == "active"
            assert [a["member"] for a in approved["case"]["approvals"]] == [
                "bank-1",
                "telecom-2",
                "bank-3",
            ]
            listed = (await tc.clients[2].get("/cases")).json()
            assert listed["needed"] == 3
            assert [(c["case_id"], c["state"]) for c in listed["cases"]] == [
                ("HZ-2026-01", "active")
            ]

            response = await tc.clients[0].post(
                "/trace", json={"case_id": "HZ-2026-01", "entity": PHONE}
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["query"] == "trace" and answer["case_id"] == "HZ-2026-01"
            assert answer["entity"] == {"type": "phone", "pseudonym": ref(PHONE).pseudonym.hex()}
            assert [(r["kind"], r["member"]) for r in answer["records"]] == [
                ("report", "bank-1"),
                ("link", "telecom-2"),
            ]
            assert answer["records"][0]["tx_id"] == ids["phone report"].hex()
            assert answer["records"][0]["category"] == "fraud_call"
            assert answer["records"][1]["relation"] == "uses"
            access = answer["access"]
            assert access["committed"] is True
            assert response.headers["crosstrace-access-tx"] == access["tx_id"]
            assert response.headers["crosstrace-access-height"] == str(access["height"])
            timing = response.headers["server-timing"]
            assert re.fullmatch(
                r"authorise;dur=[0-9.]+, audit;dur=[0-9.]+, query;dur=[0-9.]+, total;dur=[0-9.]+",
                timing,
            ), timing

            # The access record is on every node's ledger, as committed by consensus.
            access_id = bytes.fromhex(access["tx_id"])
            await tc.settle()
            for i in range(4):
                location = tc.cluster.store(i).tx_location(access_id)
                assert location == (access["height"], access["index"]), i
            audit = (await tc.clients[2].get("/audit")).json()
            [record] = audit["records"]
            assert record["tx_id"] == access["tx_id"] and record["member"] == "police-0"
            assert record["case_id"] == "HZ-2026-01" and record["query"] == "trace"
            assert record["subject"] == answer["entity"]
            assert audit["next_after"] is None
            # The clear identifier went nowhere: not in any block of any node.
            for i in range(4):
                store = tc.cluster.store(i)
                for block, _cert in store.blocks_range(1, store.tip()[0]):
                    for tx in block.txs:
                        assert b"0013" not in tx and b"DE89" not in tx

            # Only the member that opened the case queries under it (issue 14: its
            # pseudonyms are evaluated under that member's case alone).
            refused = await tc.clients[1].post(
                "/graph", json={"case_id": "HZ-2026-01", "entity": PHONE, "depth": 3}
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "not_your_case"
            graph = await tc.clients[0].post(
                "/graph", json={"case_id": "HZ-2026-01", "entity": PHONE, "depth": 3}
            )
            assert graph.status_code == 200, graph.text
            nodes = {(n["type"], n["depth"]) for n in graph.json()["nodes"]}
            assert nodes == {("phone", 0), ("account", 1), ("device", 2), ("email", 3)}
            assert [e["relation"] for e in graph.json()["edges"]] == [
                "uses",
                "logged_in_from",
                "registered_with",
            ]
            dot = await tc.clients[0].post(
                "/graph",
                json={"case_id": "HZ-2026-01", "entity": ACCOUNT, "depth": 1, "format": "dot"},
            )
            assert dot.status_code == 200, dot.text
            assert dot.headers["content-type"].startswith("text/vnd.graphviz")
            assert dot.text.startswith("digraph trace {") and "logged_in_from" in dot.text
            assert f"account\\n{short(ACCOUNT)}" in dot.text
            assert dot.headers["crosstrace-access-tx"] != access["tx_id"]

            history = await tc.clients[2].post(
                "/history",
                json={"case_id": "HZ-2026-01", "tx_id": ids["phone report"].hex()},
            )
            assert history.status_code == 200, history.text
            found = history.json()
            assert found["record"]["member"] == "bank-1" and found["record"]["kind"] == "report"
            assert [(r["how"], r["relation"]) for r in found["referred_by"]] == [("links", "uses")]

            # Three more queries, each audited: by member, kind and case, and in pages.
            await tc.settle()
            audit = (await tc.clients[0].get("/audit", params={"case": "HZ-2026-01"})).json()
            assert [(r["member"], r["query"]) for r in audit["records"]] == [
                ("police-0", "trace"),
                ("police-0", "graph"),
                ("police-0", "graph"),
                ("telecom-2", "history"),
            ]
            assert audit["records"][3]["subject"]["type"] == "phone"
            by_member = (await tc.clients[0].get("/audit", params={"member": "police-0"})).json()
            assert [r["query"] for r in by_member["records"]] == ["trace", "graph", "graph"]
            # bank-1's refused graph left no record: it was refused before anything was signed.
            by_bank = (await tc.clients[0].get("/audit", params={"member": "bank-1"})).json()
            assert by_bank["records"] == []
            by_kind = (await tc.clients[0].get("/audit", params={"query": "history"})).json()
            assert [r["member"] for r in by_kind["records"]] == ["telecom-2"]
            assert (await tc.clients[0].get("/audit", params={"case": "OTHER"})).json() == {
                "records": [],
                "next_after": None,
            }
            first = (await tc.clients[0].get("/audit", params={"limit": "3"})).json()
            assert len(first["records"]) == 3 and first["next_after"] is not None
            after = "{}:{}".format(*first["next_after"])
            rest = (await tc.clients[0].get("/audit", params={"after": after})).json()
            assert [r["query"] for r in rest["records"]] == ["history"]
            assert rest["next_after"] is None


async def test_every_refusal_of_a_query_with_its_exact_message(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path) as tc:
            ids = await build_ledger(tc)
            now = now_ms()
            window = (now - 30 * DAY, now + DAY)
            await tc.open_case("HZ-1", [PHONE, ACCOUNT], window=window)
            client = tc.clients[0]

            async def refused(path: str, body: dict[str, Any], status: int, code: str) -> str:
                before = len(tc.cluster.runtime(0).mempool)
                message = error(await client.post(path, json=body), status, code)
                # Refused before anything was signed: no access record was submitted.
                assert len(tc.cluster.runtime(0).mempool) == before
                return message

            trace = {"case_id": "HZ-1", "entity": PHONE}
            assert await refused("/trace", trace | {"case_id": "NOPE"}, 403, "no_case") == (
                "there is no case 'NOPE' on the ledger"
            )
            assert await refused("/trace", trace, 403, "not_approved") == (
                "case 'HZ-1' is waiting for approval: 0 of 3 approvals"
            )
            await tc.approve("HZ-1", [1])
            assert await refused("/graph", trace, 403, "not_approved") == (
                "case 'HZ-1' is waiting for approval: 1 of 3 approvals"
            )
            await tc.approve("HZ-1", [2, 3])
            assert (await client.post("/trace", json=trace)).status_code == 200

            out = {"case_id": "HZ-1", "entity": DEVICE}
            assert await refused("/trace", out, 403, "out_of_scope") == (
                f"device {short(DEVICE)} is not in the scope of case 'HZ-1'"
            )
            assert await refused("/graph", out | {"format": "dot"}, 403, "out_of_scope") == (
                f"device {short(DEVICE)} is not in the scope of case 'HZ-1'"
            )
            late = {"start_ms": now + 2 * DAY, "end_ms": now + 3 * DAY}
            case_window = TimeWindow(*window)
            asked = TimeWindow(late["start_ms"], late["end_ms"])
            assert await refused("/trace", trace | {"window": late}, 403, "outside_window") == (
                f"the requested window ({asked}) lies outside the window of case 'HZ-1' "
                f"({case_window})"
            )
            device_link = ids["device-email"].hex()
            assert await refused(
                "/history", {"case_id": "HZ-1", "tx_id": device_link}, 403, "out_of_scope"
            ) == (f"transaction {device_link[:16]} concerns no entity in the scope of case 'HZ-1'")
            assert await refused(
                "/history", {"case_id": "HZ-1", "tx_id": "ab" * 32}, 404, "no_record"
            ) == (f"there is no transaction {'ab' * 8} on the ledger")
            # A malformed identifier: precise, and the value is not quoted back.
            for entity, expected in [
                ("phone:12", "entity: phone: the value is not a valid phone number"),
                ("account:12", "entity: account: the value is neither an IBAN nor a domestic "
                 "account number of 8 to 34 digits"),
                ("gsm:+8613800138000", "entity: the part before ':' is not an entity type; "
                 "one of phone, account, device, email, ip, person_id, wallet, domain"),
                ("+8613800138000", "entity must be TYPE:VALUE with TYPE one of phone, account, "
                 "device, email, ip, person_id, wallet, domain"),
                ("phone:", "entity must be TYPE:VALUE with TYPE one of phone, account, "
                 "device, email, ip, person_id, wallet, domain"),
            ]:  # fmt: skip
                message = await refused("/trace", trace | {"entity": entity}, 400, "bad_identifier")
                assert message == expected, entity
            assert await refused(
                "/trace", trace | {"entity": 13800138000}, 400, "bad_identifier"
            ) == ("entity must be a string TYPE:VALUE")
            assert await refused("/trace", trace | {"case_id": "a b"}, 400, "bad_case_id") == (
                "case_id must be letters and digits, optionally joined by . _ : / -"
            )

            # Closed: by the opener, then nothing more is answered under it.
            closed = await client.post("/cases/HZ-1/close", json={})
            assert closed.status_code == 200, closed.text
            height = closed.json()["height"]
            await tc.settle()
            assert closed.json()["case"]["state"] == "closed"
            assert await refused("/trace", trace, 403, "closed") == (
                f"case 'HZ-1' was closed by 'police-0' at height {height}"
            )
            assert await refused(
                "/history", {"case_id": "HZ-1", "tx_id": ids["phone report"].hex()}, 403, "closed"
            ) == (f"case 'HZ-1' was closed by 'police-0' at height {height}")


async def test_an_expired_case_authorises_nothing(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path) as tc:
            expires = now_ms() + 3000
            await tc.open_case("HZ-EXP", [PHONE], expires_ms=expires)
            await tc.approve("HZ-EXP")
            trace = {"case_id": "HZ-EXP", "entity": PHONE}
            assert (await tc.clients[0].post("/trace", json=trace)).status_code == 200
            await trio.sleep(max(0.0, (expires - now_ms()) / 1000) + 0.05)
            message = error(await tc.clients[0].post("/trace", json=trace), 403, "expired")
            assert message == f"case 'HZ-EXP' expired at {format_time_ms(expires)}"
            shown = (await tc.clients[1].get("/cases/HZ-EXP")).json()
            assert shown["state"] == "expired" and shown["reason"] == message
            late = error(
                await tc.clients[1].post("/cases/HZ-EXP/approve", json={}), 409, "case_expired"
            )
            assert late == message


async def test_case_changes_refused_with_their_reasons(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path) as tc:
            now = now_ms()
            body = {
                "case_id": "HZ-9",
                "purpose": "money_laundering",
                "justification": JUSTIFICATION,
                "scope": [PHONE],
                "window": {"start_ms": now - DAY, "end_ms": now},
                "expires_ms": now + DAY,
            }
            # Only an investigator opens or closes a case; only an approver approves.
            assert error(await tc.clients[1].post("/cases", json=body), 403, "forbidden_role") == (
                "this node's member 'bank-1' does not hold the investigator role, which opening "
                "a case needs"
            )
            assert error(
                await tc.clients[1].post("/cases/HZ-9/approve", json={}), 404, "no_case"
            ) == ("there is no case 'HZ-9' on the ledger")
            assert (await tc.clients[0].post("/cases", json=body)).status_code == 201
            await tc.settle()
            assert error(await tc.clients[0].post("/cases", json=body), 409, "case_exists") == (
                "case 'HZ-9' is already on the ledger (opened by 'police-0' at height 1)"
            )
            assert (await tc.clients[2].post("/cases/HZ-9/approve", json={})).status_code == 200
            await tc.settle()
            again = error(
                await tc.clients[2].post("/cases/HZ-9/approve", json={}), 409, "already_approved"
            )
            assert again == "member 'telecom-2' already approved case 'HZ-9' at height 2"
            assert error(
                await tc.clients[3].post("/cases/HZ-9/close", json={}), 403, "forbidden_role"
            ) == (
                "this node's member 'bank-3' does not hold the investigator role, which closing "
                "a case needs"
            )
            assert (await tc.clients[0].post("/cases/HZ-9/close", json={})).status_code == 200
            await tc.settle()
            closed = "case 'HZ-9' was closed by 'police-0' at height 3"
            assert (
                error(await tc.clients[0].post("/cases/HZ-9/close", json={}), 409, "case_closed")
                == closed
            )
            assert (
                error(await tc.clients[1].post("/cases/HZ-9/approve", json={}), 409, "case_closed")
                == closed
            )
            assert error(await tc.clients[0].get("/cases/HZ-404"), 404, "no_case") == (
                "there is no case 'HZ-404' on the ledger"
            )
            # Case ids may hold "/": the whole id is the path parameter.
            slashed = body | {"case_id": "HZ/2026/7"}
            assert (await tc.clients[0].post("/cases", json=slashed)).status_code == 201
            await tc.settle()
            assert (
                await tc.clients[1].post("/cases/HZ/2026/7/approve", json={})
            ).status_code == 200
            assert (await tc.clients[1].get("/cases/HZ/2026/7")).json()["case_id"] == "HZ/2026/7"

            # Without a place to keep the justification, no case is opened here.
            plain = build_app(
                tc.cluster.runtime(0),
                tc.cluster.store(0),
                tc.cluster.genesis,
                tracing=tc.services[0],
                users=users_with(tc.users[0]),
            )
            async with asgi_client(plain, tc.tokens[0]) as client:
                other = body | {"case_id": "HZ-11"}
                assert error(await client.post("/cases", json=other), 503, "unavailable") == (
                    "this node keeps no private details, so it cannot keep and share a case's "
                    "justification"
                )
                shown = (await client.get("/cases/HZ-9")).json()["justification"]
                assert shown == {
                    "status": "unavailable",
                    "text": None,
                    "matches_commitment": None,
                    "sender": None,
                    "message": "this node keeps no private details",
                }
            assert tc.services[0].registry.case("HZ-11") is None


async def test_a_case_s_justification_reaches_the_approvers_only_and_matches_the_ledger(
    tmp_path: Path,
) -> None:
    # bank-3 approves no cases here, so it is not sent the justification.
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path, roles={3: ("reporter", "auditor")}) as tc:
            opened = await tc.open_case("HZ-WHY", [PHONE], purpose="money_laundering")
            case_tx = bytes.fromhex(opened["tx_id"])
            promise = opened["case"]["justification_commitment"]
            assert opened["case"]["purpose"] == "money_laundering"

            async def shown(member: int) -> dict[str, Any]:
                answer: dict[str, Any] = (await tc.clients[member].get("/cases/HZ-WHY")).json()
                return answer

            # Polled through the API, as an approver would look.
            for member in (1, 2):
                while (await shown(member))["justification"]["status"] != "held":  # noqa: ASYNC110
                    await trio.sleep(0.05)
            await delivered(tc, 0)
            held = {
                "status": "held",
                "text": JUSTIFICATION,
                "matches_commitment": True,
                "sender": "police-0",
                "message": "matches the commitment on the ledger",
            }
            for member in (0, 1, 2):
                case = await shown(member)
                assert case["justification"] == held
                assert case["justification_commitment"] == promise
            # The opener shared it with the approvers and itself, and they hold what it
            # committed to: the salt it sent and the text give the ledger's commitment.
            assert tc.cluster.details(0).lookup(case_tx).shared_with == (
                "police-0",
                "bank-1",
                "telecom-2",
            )
            view = tc.cluster.details(2).lookup(case_tx)
            details = encode_details(justification_details(JUSTIFICATION))
            assert commitment(view.salt, details).hex() == promise
            # bank-3 holds nothing and says why; the lists show no justification at all.
            outsider = (await shown(3))["justification"]
            assert outsider["status"] == "not_entitled" and outsider["text"] is None
            assert tc.cluster.details(3).store.count() == 0
            listed = (await tc.clients[1].get("/cases")).json()["cases"]
            assert "justification" not in listed[0]
            # The text is in the recipients' private files only, never in a ledger's.
            for member in range(4):
                ledger = (tc.cluster.data_dir(member) / "data.mdb").read_bytes()
                assert b"Wang Fang" not in ledger and b"safe account" not in ledger
                private = (tc.cluster.data_dir(member) / "private" / "data.mdb").read_bytes()
                assert (b"Wang Fang" in private) is (member != 3)
            # Details that do not match the commitment are shown as such.
            forged = encode_details(justification_details("Nothing to see."))
            record = PrivateRecord(view.salt, forged, "police-0", now_ms(), ())
            assert tc.cluster.details(3).store.put(case_tx, record)
            assert (await shown(3))["justification"] | {"text": None} == {
                "status": "held",
                "text": None,
                "matches_commitment": False,
                "sender": "police-0",
                "message": "does NOT match the commitment on the ledger: do not rely on it",
            }
            # The approvers approve what they read.
            assert (await tc.approve("HZ-WHY", members=(0, 1, 2)))["case"]["state"] == "active"


async def test_a_free_text_purpose_cannot_reach_the_ledger_by_any_path(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path) as tc:
            now = now_ms()
            body = {
                "case_id": "HZ-FREE",
                "purpose": FREE_TEXT,
                "justification": JUSTIFICATION,
                "scope": [PHONE],
                "window": {"start_ms": now - DAY, "end_ms": now},
                "expires_ms": now + DAY,
            }
            assert error(await tc.clients[0].post("/cases", json=body), 400, "bad_purpose") == (
                BAD_PURPOSE
            )
            # A case transaction built by hand and signed by the investigator, posted to
            # /txs: in this format, and in the previous one (no commitment).
            wire = to_wire(Case("HZ-FREE", "telecom_fraud", bytes(32), (ref(PHONE),), now - DAY,
                                now, now + DAY))  # fmt: skip
            wire[1] = FREE_TEXT
            bodies = [pack(wire), pack([wire[0], FREE_TEXT, *wire[3:]])]
            txs = [
                encode_tx(sign_tx(tc.cluster.signers[0], tc.cluster.genesis.chain_id,
                                  "police-0", "case", raw, tc.cluster.next_nonce(), now))
                for raw in bodies
            ]  # fmt: skip
            response = await tc.clients[0].post("/txs", json={"txs": [tx.hex() for tx in txs]})
            assert response.status_code == 422, response.text
            rows = response.json()["results"]
            assert [(r["accepted"], r["code"], r["message"]) for r in rows] == [
                (
                    False,
                    "bad_body",
                    f"case body: Case: purpose must be one of {', '.join(PURPOSES)}",
                ),
                (False, "bad_body", "case body: Case: Case has 8 fields, got 7"),
            ]
            # As the justification it is what it should be: off the ledger, for approvers.
            await tc.open_case("HZ-FREE", [PHONE], justification=FREE_TEXT)
            await delivered(tc, 0)
            await tc.settle()
            for member in range(4):
                ledger = (tc.cluster.data_dir(member) / "data.mdb").read_bytes()
                assert b"Xinhua" not in ledger and b"Li Wei" not in ledger
                assert b"8765" not in ledger
            assert tc.services[0].registry.case("HZ-FREE").body.purpose == "telecom_fraud"  # type: ignore[union-attr]


async def test_malformed_requests_get_a_400_naming_the_field(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path) as tc:
            client = tc.clients[0]
            now = now_ms()
            case = {
                "case_id": "HZ-1",
                "purpose": "money_laundering",
                "justification": JUSTIFICATION,
                "scope": [PHONE],
                "window": {"start_ms": now - DAY, "end_ms": now},
                "expires_ms": now + DAY,
            }
            trace = {"case_id": "HZ-1", "entity": PHONE}
            fields = "case_id, entity, depth, window, format"
            cases: list[tuple[str, Any, str, str]] = [
                ("/trace", b"{", "bad_json", "the body is not valid JSON"),
                ("/trace", [], "bad_request", "the body must be a JSON object"),
                ("/trace", {"entity": PHONE}, "bad_request", "case_id is required"),
                ("/trace", trace | {"x": 1}, "bad_request",
                 "unexpected fields; the fields are case_id, entity, window, limit, after"),
                ("/graph", trace | {"phone": PHONE}, "bad_request",
                 f"unexpected fields; the fields are {fields}"),
                ("/trace", trace | {"limit": 0}, "bad_request", "limit must be 1 to 1000"),
                ("/trace", trace | {"limit": True}, "bad_request", "limit must be an integer"),
                ("/trace", trace | {"limit": None}, "bad_request", "limit must be an integer"),
                ("/trace", trace | {"after": [1]}, "bad_request", "after must be [height, index]"),
                ("/trace", trace | {"after": [1, -1]}, "bad_request",
                 f"after[1] must be 0 to {2**63 - 1}"),
                ("/trace", trace | {"window": {"start_ms": 5}}, "bad_request",
                 "end_ms is required"),
                ("/trace", trace | {"window": {"start_ms": 5, "end_ms": 4}}, "bad_window",
                 "window.start_ms is after window.end_ms"),
                ("/trace", trace | {"window": None}, "bad_request",
                 "the body must be a JSON object"),
                ("/graph", trace | {"depth": 7}, "bad_request", "depth must be 0 to 6"),
                ("/graph", trace | {"depth": 1.5}, "bad_request", "depth must be an integer"),
                ("/graph", trace | {"format": "svg"}, "bad_request", "format must be json or dot"),
                ("/history", {"case_id": "HZ-1", "tx_id": "zz"}, "bad_hex",
                 "tx_id must be 64 hex digits"),
                ("/history", {"case_id": "HZ-1", "tx_id": 5}, "bad_request",
                 "tx_id must be a string"),
                ("/cases", case | {"scope": PHONE}, "bad_scope",
                 "scope must be a list of TYPE:VALUE strings"),
                ("/cases", case | {"scope": []}, "bad_scope",
                 "scope must list 1 to 64 entities, got 0"),
                ("/cases", case | {"scope": [PHONE, "phone:+8613800138000"]}, "bad_scope",
                 "scope[0] and scope[1] are the same entity"),
                ("/cases", case | {"scope": [PHONE, "phone:1"]}, "bad_identifier",
                 "scope[1]: phone: the value is not a valid phone number"),
                ("/cases", case | {"purpose": " "}, "bad_purpose", BAD_PURPOSE),
                ("/cases", case | {"purpose": FREE_TEXT}, "bad_purpose", BAD_PURPOSE),
                ("/cases", case | {"purpose": ["telecom_fraud"]}, "bad_purpose", BAD_PURPOSE),
                ("/cases", {k: v for k, v in case.items() if k != "justification"},
                 "bad_request", "justification is required"),
                ("/cases", case | {"justification": " \n"}, "bad_justification",
                 "the justification must not be empty: approvers need to read why"),
                ("/cases", case | {"justification": "x" * 2001}, "bad_justification",
                 "the justification has 2001 characters, at most 2000"),
                ("/cases", case | {"justification": "a\x1b[2Jb"}, "bad_justification",
                 "the justification contains control characters (line breaks are fine)"),
                ("/cases", case | {"justification": 5}, "bad_justification",
                 "the justification must be a string"),
                ("/cases", case | {"expires_ms": now - 1}, "bad_expiry",
                 "expires_ms must be in the future"),
                ("/cases", case | {"case_id": "HZ 1"}, "bad_case_id",
                 "case_id must be letters and digits, optionally joined by . _ : / -"),
                ("/cases", case | {"case_id": "HZ-13800138000"}, "bad_case_id",
                 "case_id seems to contain a raw identifier; case ids must not"),
                ("/cases/HZ-1/approve", {"yes": True}, "bad_request",
                 "unexpected fields; the fields are "),
            ]  # fmt: skip
            for path, body, code, expected in cases:
                kwargs = (
                    {"content": body, "headers": JSON}
                    if isinstance(body, bytes)
                    else {"json": body}
                )
                message = error(await client.post(path, **kwargs), 400, code)
                assert message == expected, (path, body)
            for params, expected in [
                ({"limit": "0"}, "limit must be 1 to 1000"),
                ({"limit": "x"}, "limit must be a whole number, 1 to 1000"),
                ({"after": "3"}, "after must be HEIGHT:INDEX"),
                ({"query": "peek"}, "query must be one of trace, graph, history, psi"),
                ({"member": "nobody"}, "member names no member of this consortium"),
                (
                    {"case": "a b"},
                    "case_id must be letters and digits, optionally joined by . _ : / -",
                ),
                ({"who": "x"}, "unexpected parameters; they are case, member, query, limit, after"),
            ]:
                response = await client.get("/audit", params=params)
                assert response.status_code == 400, response.text
                assert response.json()["message"] == expected, params
            huge = {"case_id": "HZ-1", "entity": "x" * 70_000}
            assert error(await client.post("/trace", json=huge), 413, "body_too_large")


async def test_no_answer_unless_the_access_record_commits(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path, commit_timeout_s=0.5) as tc:
            await tc.commit([tc.report(1, PHONE, now_ms() - DAY)])
            await tc.open_case("HZ-1", [PHONE])
            await tc.approve("HZ-1")
            await tc.cluster.stop_node(3)
            await tc.cluster.stop_node(2)  # two of four: no quorum, nothing commits
            response = await tc.clients[0].post("/trace", json={"case_id": "HZ-1", "entity": PHONE})
            body = response.json()
            assert response.status_code == 503, body
            assert body["error"] == "audit_timeout"
            assert body["message"] == (
                f"the access record {body['access_tx'][:16]} was not committed within 0.5 s "
                "(is a quorum of members running?); the query is not answered until it is"
            )
            assert "records" not in body
            # It waits in the mempool, and commits once the quorum is back.
            assert tc.cluster.runtime(0).mempool.get(bytes.fromhex(body["access_tx"]))


async def test_without_the_service_or_the_pseudonyms_the_endpoints_say_why(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path) as tc:
            cluster = tc.cluster
            users = users_with(tc.users[0])
            # An active case of police-0's, so the query gets as far as pseudonymising.
            await tc.open_case("HZ-1", [PHONE])
            await tc.approve("HZ-1")
            bare = build_app(cluster.runtime(1), cluster.store(1), cluster.genesis, users=users)
            keyless = TracingService.attach(
                cluster.runtime(0), cluster.store(0), cluster.genesis, None
            )
            apps = [
                bare,
                build_app(
                    cluster.runtime(0),
                    cluster.store(0),
                    cluster.genesis,
                    tracing=keyless,
                    users=users,
                ),
            ]
            bare_client, keyless_client = (asgi_client(app, tc.tokens[0]) for app in apps)
            async with bare_client, keyless_client:
                for method, path in [("GET", "/cases"), ("POST", "/trace"), ("GET", "/audit")]:
                    message = error(
                        await bare_client.request(
                            method, path, json={} if method == "POST" else None
                        ),
                        503,
                        "tracing_unavailable",
                    )
                    assert message == (
                        "this node was started without its tracing service: cases, queries and "
                        "the audit trail are not served"
                    )
                trace = {"case_id": "HZ-1", "entity": PHONE}
                message = error(
                    await keyless_client.post("/trace", json=trace), 503, "no_pseudonym_share"
                )
                assert message == (
                    "this node runs without the pseudonym service, so it cannot pseudonymise "
                    "identifiers"
                )
                # Cases and the audit trail need no pseudonyms.
                listed = (await keyless_client.get("/cases")).json()["cases"]
                assert [c["case_id"] for c in listed] == ["HZ-1"]
                assert (await keyless_client.get("/audit")).json()["records"] == []


async def test_psi_runs_are_in_the_audit_trail_beside_queries(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with tracing_cluster(tmp_path) as tc:
            opened = await tc.open_case("HZ-PSI", [PHONE])
            await tc.approve("HZ-PSI")
            case_tx = bytes.fromhex(opened["case"]["opened"]["tx_id"])
            run = PsiRun("HZ-PSI", case_tx, bytes(16), "bank-1", "telecom-2", "phone",
                         120, 45, 7, "completed", now_ms() - 1000)  # fmt: skip
            [psi_tx] = await tc.commit([tc.sign(1, run)], via=1)
            assert (
                await tc.clients[0].post("/trace", json={"case_id": "HZ-PSI", "entity": PHONE})
            ).status_code == 200
            await tc.settle()
            audit = (await tc.clients[3].get("/audit", params={"case": "HZ-PSI"})).json()
            assert [(r["member"], r["query"]) for r in audit["records"]] == [
                ("bank-1", "psi"),
                ("police-0", "trace"),
            ]
            psi = audit["records"][0]
            assert psi["tx_id"] == psi_tx.hex() and psi["subject"] is None
            assert psi["psi"] == {
                "run_id": "00" * 16,
                "initiator": "bank-1",
                "responder": "telecom-2",
                "entity_type": "phone",
                "initiator_size": 120,
                "responder_size": 45,
                "result_size": 7,
                "outcome": "completed",
            }
            assert audit["records"][1]["psi"] is None
            only = (await tc.clients[3].get("/audit", params={"query": "psi"})).json()
            assert [r["tx_id"] for r in only["records"]] == [psi_tx.hex()]
            lines = audit_lines(audit)
            assert lines[1].endswith(
                "psi      phone sets of bank-1 (120) and telecom-2 (45): 7 shared, completed"
            )
