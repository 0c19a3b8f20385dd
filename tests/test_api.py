"""The local query API, against running in-process clusters: through httpx's ASGI
transport (no sockets) and through a real Hypercorn server on a loopback port."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_helpers import OCTETS, ZERO_ID, api_on_cluster, assert_error, forged, now_ms
from cluster_helpers import report_tx
from starlette.applications import Starlette
from starlette.routing import Route

from node.api.input import MAX_BATCH, MAX_BODY_BYTES
from node.api.server import serve_api
from node.host.latency import LatencyHistogram
from node.ledger.store import StoreCorruptError
from node.ledger.transactions import MAX_TX_BYTES


@pytest.mark.timeout(60)
async def test_status_reports_chain_member_consensus_mempool_and_peers(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            response = await client.get("/status")
            assert response.status_code == 200
            status = response.json()
            assert status["chain_id"] == cluster.genesis.chain_id
            assert status["member"] == {"name": cluster.member_name(0), "index": 0}
            assert status["height"] == 0
            assert status["tip_hash"] == "00" * 32
            assert status["view"] == 0 and status["view_active"] is True
            assert status["primary"] == 0 and status["stable_checkpoint"] == 0
            assert status["mempool"] == {"txs": 0, "bytes": 0}
            # The in-memory transport cannot tell connections: "unknown", not "down".
            assert [p["index"] for p in status["peers"]] == [1, 2, 3]
            assert all(p["connected"] is None for p in status["peers"])

            tx = report_tx(cluster, 0, 1, now_ms())
            committed = await client.post("/txs?wait=true", content=tx, headers=OCTETS)
            assert committed.status_code == 200
            status = (await client.get("/status")).json()
            height, tip_hash = cluster.store(0).tip()
            assert status["height"] == height >= 1
            assert status["tip_hash"] == tip_hash.hex()
            assert status["consensus_height"] >= height


@pytest.mark.timeout(60)
async def test_a_raw_tx_waited_for_then_found_by_id_and_in_its_block(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            tx = report_tx(cluster, 0, 1, now_ms())
            response = await client.post("/txs?wait=true&timeout=10", content=tx, headers=OCTETS)
            assert response.status_code == 200, response.text
            [result] = response.json()["results"]
            assert result["accepted"] is True and result["code"] == "accepted"
            assert result["committed"] is True
            tx_id, height, index = result["tx_id"], result["height"], result["index"]
            assert cluster.store(0).tx_location(bytes.fromhex(tx_id)) == (height, index)

            found = (await client.get(f"/txs/{tx_id}")).json()
            assert found["status"] == "committed"
            assert (found["height"], found["index"]) == (height, index)
            assert found["tx"] == tx.hex()
            assert found["envelope"]["member"] == cluster.member_name(0)
            assert found["envelope"]["kind"] == "report"
            # Upper-case hex names the same transaction.
            assert (await client.get(f"/txs/{tx_id.upper()}")).json()["tx"] == tx.hex()

            block = (await client.get(f"/blocks/{height}")).json()
            stored = cluster.store(0).block(height)
            assert stored is not None
            assert block["height"] == height and block["hash"] == stored.hash().hex()
            assert block["tx_ids"][index] == tx_id
            assert block["header"]["tx_count"] == len(block["tx_ids"])
            assert block["header"]["tx_root"] == stored.header.tx_root.hex()
            cert = block["certificate"]
            assert cert["height"] == height and cert["view"] == 0
            signers = {s["index"] for s in cert["signers"]}
            assert len(signers) >= cluster.genesis.membership().quorum
            assert all(s["name"] == cluster.member_name(s["index"]) for s in cert["signers"])

            latest = (await client.get("/blocks/latest")).json()
            assert latest["height"] == cluster.store(0).tip()[0]

            # Sending it again is refused: its nonce is used up.
            again = await client.post("/txs", content=tx, headers=OCTETS)
            body = assert_error(again, 422, "rejected")
            assert [r["code"] for r in body["results"]] == ["replay"]
            assert body["results"][0]["tx_id"] == tx_id


@pytest.mark.timeout(60)
async def test_json_batches_and_single_hex_txs(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            now = now_ms()
            txs = [report_tx(cluster, 0, i, now) for i in range(20)]
            response = await client.post("/txs?wait=1", json={"txs": [t.hex() for t in txs]})
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert len(results) == 20
            assert all(r["accepted"] and r["committed"] and r["height"] >= 1 for r in results)

            # Without wait: 202, and the transaction commits on its own.
            single = report_tx(cluster, 0, 100, now)
            response = await client.post("/txs", json={"tx": single.hex()})
            assert response.status_code == 202
            [result] = response.json()["results"]
            assert result["accepted"] and "committed" not in result
            await cluster.runtime(0).wait_committed(bytes.fromhex(result["tx_id"]))
            assert (await client.get(f"/txs/{result['tx_id']}")).json()["status"] == "committed"

            # A batch with one forged transaction: the others go through, it is refused.
            good, bad = report_tx(cluster, 0, 200, now), forged(report_tx(cluster, 0, 201, now))
            response = await client.post("/txs?wait=true", json={"txs": [good.hex(), bad.hex()]})
            assert response.status_code == 200, response.text
            ok, refused = response.json()["results"]
            assert ok["accepted"] and ok["committed"]
            assert not refused["accepted"] and refused["code"] == "bad_signature"
            assert "committed" not in refused
            assert (await client.get(f"/txs/{refused['tx_id']}")).status_code == 404


@pytest.mark.timeout(60)
async def test_wait_answers_202_when_the_tx_cannot_commit_in_time(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            await cluster.stop_node(3)
            await cluster.stop_node(2)  # two of four: no quorum, nothing commits
            tx = report_tx(cluster, 0, 1, now_ms())
            with trio.fail_after(5):
                response = await client.post(
                    "/txs?wait=true&timeout=0.2", content=tx, headers=OCTETS
                )
            assert response.status_code == 202, response.text
            [result] = response.json()["results"]
            assert result["accepted"] is True and result["committed"] is False
            assert "height" not in result
            pending = (await client.get(f"/txs/{result['tx_id']}")).json()
            assert pending["status"] == "pending" and pending["tx"] == tx.hex()
            assert "height" not in pending
            status = (await client.get("/status")).json()
            assert status["mempool"] == {"txs": 1, "bytes": len(tx)}


@pytest.mark.timeout(60)
async def test_every_bad_submission_is_refused_with_a_4xx_and_a_code(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            good = report_tx(cluster, 0, 1, now_ms()).hex()

            def body(data: bytes, content_type: str = "application/json") -> dict[str, Any]:
                return {"content": data, "headers": {"content-type": content_type}}

            def waiting(**params: str) -> dict[str, Any]:
                return {"json": {"tx": good}, "params": params}

            cases: list[tuple[dict[str, Any], int, str]] = [
                ({"json": {"tx": "zz"}}, 400, "bad_hex"),
                ({"json": {"tx": "abc"}}, 400, "bad_hex"),  # odd length
                ({"json": {"tx": "ab cd"}}, 400, "bad_hex"),  # whitespace
                ({"json": {"tx": "é0"}}, 400, "bad_hex"),
                ({"json": {"tx": 12}}, 400, "bad_hex"),
                ({"json": {"tx": ""}}, 400, "empty_tx"),
                ({"json": {"txs": [good, "zz"]}}, 400, "bad_hex"),
                ({"json": {"txs": [None]}}, 400, "bad_hex"),
                ({"json": {"txs": []}}, 400, "bad_request"),
                ({"json": {"txs": good}}, 400, "bad_request"),
                ({"json": {"txs": ["00"] * (MAX_BATCH + 1)}}, 400, "too_many_txs"),
                ({"json": {"tx": good, "txs": [good]}}, 400, "bad_request"),
                ({"json": {"transaction": good}}, 400, "bad_request"),
                ({"json": [good]}, 400, "bad_request"),
                (body(b"null"), 400, "bad_request"),
                (body(b"{"), 400, "bad_json"),
                (body(b'{"tx": "\xff"}'), 400, "bad_json"),  # not UTF-8
                (body(b"[" * 100_000), 400, "bad_json"),  # nested past the recursion limit
                (body(b"", "application/octet-stream"), 400, "empty_body"),
                (body(b"00", "text/plain"), 415, "unsupported_media_type"),
                ({"content": b"00"}, 415, "unsupported_media_type"),
                (waiting(wait="maybe"), 400, "bad_query"),
                (waiting(wait="1", timeout="x"), 400, "bad_query"),
                (waiting(wait="1", timeout="0"), 400, "bad_query"),
                (waiting(wait="1", timeout="nan"), 400, "bad_query"),
                (waiting(wait="1", timeout="1e9"), 400, "bad_query"),
            ]
            for request, status, code in cases:
                assert_error(await client.post("/txs", **request), status, code)

            # Transactions that parse as a request but that the node refuses: 422, and
            # each result carries the node's code.
            forgery = forged(report_tx(cluster, 0, 2, now_ms()))
            for body, code in ((forgery, "bad_signature"), (b"\x00garbage", "malformed")):
                refused = assert_error(
                    await client.post("/txs", content=body, headers=OCTETS), 422, "rejected"
                )
                [result] = refused["results"]
                assert result["accepted"] is False and result["code"] == code
                assert len(result["tx_id"]) == 64
            refused = assert_error(
                await client.post("/txs", json={"tx": forgery.hex()}), 422, "rejected"
            )
            assert refused["results"][0]["code"] == "bad_signature"
            # Nothing of all that reached the ledger or the mempool.
            assert len(cluster.runtime(0).mempool) == 0
            assert (await client.post("/txs", json={"tx": good})).status_code == 202


async def asgi_post(
    app: Starlette, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, dict[str, Any], int]:
    """POST /txs straight to the ASGI app, the body in ``chunks`` and no Content-Length
    unless given; returns (status, JSON body, how many chunks the app pulled)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled == len(chunks):
            await trio.sleep_forever()  # a client that sent all and waits
        pulled += 1
        return {
            "type": "http.request",
            "body": chunks[pulled - 1],
            "more_body": pulled < len(chunks),
        }

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/txs",
        "raw_path": b"/txs",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")]
        + [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), pulled


@pytest.mark.timeout(60)
async def test_oversize_bodies_are_refused_before_they_are_read(tmp_path: Path) -> None:
    # The default limit admits the largest valid request: a full batch of the largest
    # transactions, hex in JSON.
    largest = len(json.dumps({"txs": ["ab" * MAX_TX_BYTES] * MAX_BATCH}))
    assert largest <= MAX_BODY_BYTES
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path, max_body_bytes=4096) as (cluster, app, client):
            declared = await client.post("/txs", content=b"\0" * 5000, headers=OCTETS)
            assert_error(declared, 413, "body_too_large")
            auth = {"authorization": client.headers["authorization"]}

            # No Content-Length (chunked): refused while streaming, once past the limit.
            chunks = [b"\0" * 1024] * 1000
            status, body, pulled = await asgi_post(app, auth | OCTETS, chunks)
            assert (status, body["error"]) == (413, "body_too_large")
            assert pulled == 5  # 5 KiB: the first chunk past 4 KiB
            status, body, pulled = await asgi_post(
                app, auth | OCTETS | {"content-length": "5x"}, chunks
            )
            assert (status, body["error"], pulled) == (400, "bad_request", 0)
            status, body, pulled = await asgi_post(
                app, auth | OCTETS | {"content-length": "4097"}, chunks
            )
            assert (status, body["error"], pulled) == (413, "body_too_large", 0)

            big_json = {"txs": ["00" * 100] * 30}
            assert_error(await client.post("/txs", json=big_json), 413, "body_too_large")
            tx = report_tx(cluster, 0, 1, now_ms())
            assert (await client.post("/txs", content=tx, headers=OCTETS)).status_code == 202


@pytest.mark.timeout(60)
async def test_lookups_refuse_malformed_ids_and_heights_and_miss_with_404(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            assert_error(await client.get("/blocks/latest"), 404, "not_found")  # none yet
            for path in (
                "/txs/zz",
                f"/txs/{ZERO_ID[:-1]}",
                f"/txs/{'g' * 64}",
                f"/txs/{ZERO_ID}00",
            ):
                assert_error(await client.get(path), 400, "bad_hex")
            assert_error(await client.get(f"/txs/{ZERO_ID}"), 404, "not_found")
            for height in ("abc", "-1", "+1", "1.5", "1_0", "٣", "9" * 21):
                assert_error(await client.get(f"/blocks/{height}"), 400, "bad_height")
            for height in ("0", "1", "99", "9" * 20):
                assert_error(await client.get(f"/blocks/{height}"), 404, "not_found")
            assert_error(await client.get("/nowhere"), 404, "not_found")
            wrong = await client.delete("/status")
            assert_error(wrong, 405, "method_not_allowed")
            assert "GET" in wrong.headers["allow"]
            head = await client.head("/status")  # HEAD wherever there is GET
            assert head.status_code == 200 and head.content == b""
            assert_error(await client.get("/txs"), 405, "method_not_allowed")
            assert_error(await client.post("/blocks/1", json={}), 405, "method_not_allowed")

            tx = report_tx(cluster, 0, 1, now_ms())
            await client.post("/txs?wait=true", content=tx, headers=OCTETS)
            assert (await client.get("/blocks/1")).status_code == 200
            assert (await client.get("/blocks/latest")).status_code == 200
            assert_error(await client.get("/blocks/2"), 404, "not_found")


@pytest.mark.timeout(60)
async def test_a_broken_store_answers_500_in_the_same_error_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, app, _client):
            [result] = await cluster.runtime(0).submit_batch([report_tx(cluster, 0, 1, now_ms())])
            await cluster.runtime(0).wait_committed(result.tx_id)

            def broken(height: int) -> None:
                raise StoreCorruptError(f"block {height} does not decode")

            monkeypatch.setattr(cluster.store(0), "block", broken)
            # Starlette re-raises after answering (for the server's log); keep the answer.
            asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=asgi, base_url="http://127.0.0.1", headers=_client.headers
            ) as client:
                assert_error(await client.get("/blocks/1"), 500, "internal")
                assert (await client.get("/status")).status_code == 200


SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})?'
    r" (?P<value>-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|NaN|[+-]Inf)$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


def parse_metrics(
    text: str,
) -> tuple[dict[str, str], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """(family -> type, (name, labels) -> value); fails on any line not in the format."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in types, f"{name} declared twice"
            types[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or types.get(family) == "histogram", f"{name} has no TYPE"
        labels = frozenset(LABEL.findall(match["labels"] or ""))
        key = (name, labels)
        assert key not in samples, f"{line!r} repeated"
        samples[key] = float(match["value"])
    return types, samples


@pytest.mark.timeout(60)
async def test_metrics_are_prometheus_text_with_the_node_s_numbers(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            now = now_ms()
            txs = [report_tx(cluster, 0, i, now) for i in range(10)]
            committed = await client.post("/txs?wait=true", json={"txs": [t.hex() for t in txs]})
            assert committed.status_code == 200
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            types, samples = parse_metrics(response.text)

            def value(name: str, **labels: str) -> float:
                return samples[(name, frozenset(labels.items()))]

            stats = cluster.runtime(0).stats
            assert value("crosstrace_height") == cluster.store(0).tip()[0] >= 1
            assert value("crosstrace_view") == 0
            assert value("crosstrace_view_changes_total") == 0
            assert value("crosstrace_txs_committed_total") == stats.txs_committed >= 10
            assert value("crosstrace_blocks_committed_total") == stats.blocks_committed >= 1
            assert value("crosstrace_mempool_txs") == 0
            assert value("crosstrace_mempool_bytes") == 0
            assert value("crosstrace_peers") == 3
            sent = {
                dict(labels)["kind"]: n
                for (name, labels), n in samples.items()
                if name == "crosstrace_messages_sent_total"
            }
            # Heartbeats keep going after the scrape, so the live count may be ahead.
            assert "Commit" in sent
            assert 0 < sum(sent.values()) <= cluster.runtime(0).transport.stats.sent
            assert "crosstrace_peers_connected" not in types  # unknown on a memory hub
            for name in ("crosstrace_height", "crosstrace_view", "crosstrace_mempool_txs"):
                assert types[name] == "gauge"
            assert types["crosstrace_txs_committed_total"] == "counter"

            latency = "crosstrace_commit_latency_seconds"
            assert types[latency] == "histogram"
            buckets = sorted(
                (float(dict(labels)["le"]), n)
                for (name, labels), n in samples.items()
                if name == f"{latency}_bucket"
            )
            counts = [n for _, n in buckets]
            assert counts == sorted(counts), "buckets must be cumulative"
            assert buckets[-1] == (float("inf"), value(f"{latency}_count"))
            assert value(f"{latency}_count") == len(stats.commit_latency_ms) >= 10
            assert value(f"{latency}_sum") == pytest.approx(sum(stats.commit_latency_ms) / 1000)

            # A second scrape counts only what is new, and never counts anything twice.
            more = report_tx(cluster, 0, 50, now)
            await client.post("/txs?wait=true", content=more, headers=OCTETS)
            _, again = parse_metrics((await client.get("/metrics")).text)
            assert again[(f"{latency}_count", frozenset())] == len(stats.commit_latency_ms)


@pytest.mark.timeout(60)
async def test_the_latency_histogram_reads_only_new_samples() -> None:
    with trio.fail_after(5):
        histogram = LatencyHistogram(bounds_s=(0.01, 0.1))
        samples = [5.0, 50.0]
        histogram.update(samples)
        samples += [500.0, 7.0]
        histogram.update(samples)
        histogram.update(samples)  # nothing new: nothing counted
        assert histogram.cumulative() == [("0.01", 2), ("0.1", 3), ("+Inf", 4)]
        assert histogram.count == 4 and histogram.sum_s == pytest.approx(0.562)
        histogram.update([1.0])  # a replaced, shorter list: start over from its end
        histogram.update([1.0, 2.0])
        assert histogram.count == 5
        await trio.lowlevel.checkpoint()


@pytest.mark.timeout(60)
async def test_the_openapi_document_describes_exactly_the_app_s_routes(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (_cluster, app, client):
            response = await client.get("/openapi.json")
            assert response.status_code == 200
            doc = response.json()
            assert doc["openapi"].startswith("3.1")
            documented = {
                (path, method.upper()) for path, ops in doc["paths"].items() for method in ops
            }
            served = {
                # "{case_id:path}" is Starlette's converter; the document says "{case_id}".
                (re.sub(r":\w+}", "}", route.path), method)
                for route in app.routes
                if isinstance(route, Route)
                for method in route.methods or ()
                if method != "HEAD"  # Starlette adds HEAD to every GET route
            }
            assert documented == served
            assert all(isinstance(route, Route) for route in app.routes)
            # Every reference resolves.
            schemas = doc["components"]["schemas"]
            refs = re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', response.text)
            assert refs and all(ref in schemas for ref in refs)
            for path, ops in doc["paths"].items():
                for op in ops.values():
                    assert op["responses"], path
                    for parameter in op.get("parameters", ()):
                        if parameter["in"] == "path":
                            assert "{" + parameter["name"] + "}" in path


@pytest.mark.timeout(60)
# httpx stops sending a streamed body when the server answers early (the 413 below),
# and leaves its own wrapper generator around the body for the garbage collector.
@pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._content.AsyncIteratorByteStream.__aiter__':ResourceWarning"
)
async def test_a_real_hypercorn_server_on_port_0_over_tcp_peers(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with api_on_cluster(tmp_path, transport="tcp", max_body_bytes=65536) as (
            cluster,
            app,
            _client,
        ):
            shutdown = trio.Event()
            async with trio.open_nursery() as server:
                port = await server.start(
                    partial(serve_api, app, "127.0.0.1", 0, shutdown=shutdown)
                )
                assert port > 0
                base = f"http://127.0.0.1:{port}"
                # trust_env=False: a proxy from the environment must not see loopback traffic.
                async with httpx.AsyncClient(
                    base_url=base, trust_env=False, headers=_client.headers
                ) as client:
                    while True:  # the TCP transport connects in the background
                        status = (await client.get("/status")).json()
                        if all(p["connected"] for p in status["peers"]):
                            break
                        await trio.sleep(0.05)
                    for peer in status["peers"]:
                        assert abs(peer["since"] - time.time()) < 30
                        assert peer["sessions"] >= 1 and peer["queued"] >= 0
                        assert peer["direction"] in ("inbound", "outbound")

                    tx = report_tx(cluster, 0, 1, now_ms())
                    response = await client.post("/txs?wait=true", content=tx, headers=OCTETS)
                    assert response.status_code == 200, response.text
                    [result] = response.json()["results"]
                    got = (await client.get(f"/txs/{result['tx_id']}")).json()
                    assert got["height"] == result["height"]

                    metrics = await client.get("/metrics")
                    _, samples = parse_metrics(metrics.text)
                    assert samples[("crosstrace_peers_connected", frozenset())] == 3

                    async def chunks() -> AsyncIterator[bytes]:
                        for _ in range(64):
                            yield b"\0" * 16384

                    # Refused mid-stream over a real socket; the server stays healthy.
                    oversize = await client.post("/txs", content=chunks(), headers=OCTETS)
                    assert_error(oversize, 413, "body_too_large")
                    assert_error(await client.get("/nowhere"), 404, "not_found")
                    assert (await client.get("/status")).status_code == 200

                shutdown.set()  # serve_api returns, so this nursery can close
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient(trust_env=False) as client:
                    await client.get(f"{base}/status")


@pytest.mark.timeout(60)
async def test_serve_api_stops_when_cancelled_and_frees_its_port(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (_cluster, app, _client):
            with trio.CancelScope() as scope:
                # /healthz needs no token.
                async with trio.open_nursery() as nursery:
                    first = await nursery.start(serve_api, app, "127.0.0.1", 0)
                    second = await nursery.start(serve_api, app, "127.0.0.1", 0)
                    assert first != second
                    async with httpx.AsyncClient(trust_env=False) as client:
                        for port in (first, second):
                            response = await client.get(f"http://127.0.0.1:{port}/healthz")
                            assert response.status_code == 200
                    scope.cancel()
            assert scope.cancelled_caught
            # The port is free again: it can be bound at once.
            async with trio.open_nursery() as nursery:
                assert await nursery.start(serve_api, app, "127.0.0.1", first) == first
                # ...but not twice: a plain OSError that says what and where.
                with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first}"):
                    await nursery.start(serve_api, app, "127.0.0.1", first)
                nursery.cancel_scope.cancel()
