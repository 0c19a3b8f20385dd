"""``POST /txs`` past the admission bound (``node.host.admission``): 429 with
``Retry-After`` and nothing kept; within it, the usual answers. In process, on a
consortium that cannot commit (two of four stopped), so what is held stays held."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from api_helpers import OCTETS, api_on_cluster, assert_error, now_ms
from cluster_helpers import report_tx
from metrics_helpers import sample_value

from node.host.admission import Admission, AdmissionPolicy
from node.host.mempool import Mempool
from node.ledger.transactions import tx_id


@pytest.mark.timeout(60)
async def test_past_the_bound_a_submission_gets_429_with_retry_after_and_is_not_kept(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            runtime = cluster.runtime(0)
            await cluster.stop_node(3)
            await cluster.stop_node(2)  # no quorum: nothing commits, the rate stays 0
            # A bound of 8 (the floor), so a share of 2 per member of 4.
            runtime.admission = Admission(
                AdmissionPolicy(floor_txs=8), 4, runtime.mempool.max_txs, trio.current_time()
            )
            now = now_ms()
            first = [report_tx(cluster, 0, i, now) for i in range(8)]
            response = await client.post("/txs", json={"txs": [t.hex() for t in first]})
            assert response.status_code == 202, response.text  # idle: a burst is taken

            late = report_tx(cluster, 0, 100, now)
            response = await client.post("/txs", content=late, headers=OCTETS)
            body = assert_error(response, 429, "overloaded")
            # No commits, so the rate is taken as the floor's, 8 a second: the 1
            # transaction past the bound commits within a second.
            assert response.headers["retry-after"] == "1"
            assert body["retry_after"] == 1 and body["reason"] == "share"
            assert "results" not in body  # refused whole, before any check
            assert_error(await client.get(f"/txs/{tx_id(late).hex()}"), 404, "not_found")
            assert len(runtime.mempool) == 8

            # The same request with wait=true is refused the same way, at once.
            with trio.fail_after(2):
                waited = await client.post("/txs?wait=true", content=late, headers=OCTETS)
            assert_error(waited, 429, "overloaded")

            metrics = (await client.get("/metrics")).text
            refused = "crosstrace_admission_refused_total"
            assert sample_value(metrics, refused, {"reason": "share"}) == 2
            assert sample_value(metrics, refused, {"reason": "capacity"}) == 0
            assert sample_value(metrics, "crosstrace_admission_bound_txs") == 8
            assert sample_value(metrics, "crosstrace_commit_rate_estimate") == 0
            assert sample_value(metrics, "crosstrace_gossip_refused_total") == 0


@pytest.mark.timeout(60)
async def test_a_bound_that_commits_takes_what_a_second_commits(tmp_path: Path) -> None:
    """On a consortium that commits, the estimate rises above zero and a member within
    its share is admitted, then waited for as before."""
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            runtime = cluster.runtime(0)
            now = now_ms()
            for round_ in range(3):
                txs = [report_tx(cluster, 0, round_ * 100 + i, now) for i in range(50)]
                response = await client.post("/txs?wait=true", json={"txs": [t.hex() for t in txs]})
                assert response.status_code == 200, response.text
                await trio.sleep(0.3)
            assert runtime.admission.rate.per_second(trio.current_time()) > 0
            metrics = (await client.get("/metrics")).text
            assert sample_value(metrics, "crosstrace_commit_rate_estimate") > 0
            assert sample_value(metrics, "crosstrace_commit_waiters") == 0


@pytest.mark.timeout(60)
async def test_a_full_mempool_is_overload_too(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            runtime = cluster.runtime(0)
            await cluster.stop_node(3)
            await cluster.stop_node(2)
            # The pool takes 4; the admission bound alone would take far more.
            runtime.mempool = Mempool(4, 1 << 20, max_share=1.0)
            runtime.admission = Admission(AdmissionPolicy(), 4, 10_000, trio.current_time())
            now = now_ms()
            first = [report_tx(cluster, 0, i, now) for i in range(4)]
            response = await client.post("/txs", json={"txs": [t.hex() for t in first]})
            assert response.status_code == 202, response.text

            more = [report_tx(cluster, 0, 10 + i, now) for i in range(2)]
            response = await client.post("/txs", json={"txs": [t.hex() for t in more]})
            body = assert_error(response, 429, "overloaded")
            assert body["reason"] == "mempool"
            assert int(response.headers["retry-after"]) >= 1
            # A lone member meets its own cap first (node.host.mempool), also a wait.
            assert [r["code"] for r in body["results"]] == ["member_quota"] * 2
            assert not any(r["accepted"] for r in body["results"])
