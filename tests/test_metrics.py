"""``GET /metrics`` read back with ``prometheus_client``'s own parser: every family with
its type and help, the node's numbers, and one registry per node in a process that runs
several nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from api_helpers import now_ms
from cluster_helpers import make_cluster, report_tx
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from node.api.app import build_app
from node.api.metrics import MetricsCollector
from node.psi.service import PsiService
from node.testing.cluster import InProcessCluster

# Every family of a node with the private-details and PSI services, by the name the
# parser gives it (counters without ``_total``), with its type: the 0.0.4 text has no
# info type, so the node's info is a gauge named ``..._info``. Dashboards depend on
# these: a rename or a type change must fail here.
NODE_FAMILIES = {
    "crosstrace_node_info": "gauge",
    "crosstrace_api_refused": "counter",
    "crosstrace_api_body_bytes": "gauge",
    "crosstrace_api_body_budget_bytes": "gauge",
    "crosstrace_height": "gauge",
    "crosstrace_view": "gauge",
    "crosstrace_view_active": "gauge",
    "crosstrace_view_changes": "counter",
    "crosstrace_stable_checkpoint": "gauge",
    "crosstrace_passed_over_longest_seconds": "gauge",
    "crosstrace_blocks_committed": "counter",
    "crosstrace_txs_committed": "counter",
    "crosstrace_equivocations": "counter",
    "crosstrace_mempool_txs": "gauge",
    "crosstrace_mempool_bytes": "gauge",
    "crosstrace_mempool_rejected": "counter",
    "crosstrace_commit_rate_estimate": "gauge",
    "crosstrace_admission_bound_txs": "gauge",
    "crosstrace_commit_waiters": "gauge",
    "crosstrace_admission_refused": "counter",
    "crosstrace_gossip_refused": "counter",
    "crosstrace_regossiped": "counter",
    "crosstrace_peers": "gauge",
    "crosstrace_messages_sent": "counter",
    "crosstrace_messages_received": "counter",
    "crosstrace_gossip_dropped": "counter",
    "crosstrace_peer_resets": "counter",
    "crosstrace_messages_undeliverable": "counter",
    "crosstrace_messages_malformed": "counter",
    "crosstrace_gossip_shed": "counter",
    "crosstrace_commit_latency_seconds": "histogram",
}
DETAILS_FAMILIES = {
    "crosstrace_private_details_held": "gauge",
    "crosstrace_private_details_outbox": "gauge",
    "crosstrace_private_details_pending": "gauge",
    **{
        f"crosstrace_private_details_{name}": "counter"
        for name in ("shared", "stored", "sent", "acknowledged", "refused", "deleted", "rejected")
    },
}
PSI_FAMILIES = {
    "crosstrace_psi_runs_active": "gauge",
    **{
        f"crosstrace_psi_{name}": "counter"
        for name in (
            "started",
            "answered",
            "completed",
            "stale_messages",
            "unknown_run_messages",
            "failed",
            "refused",
        )
    },
}


class Scrape:
    """One parsed exposition: families by name, samples by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def types(self) -> dict[str, str]:
        return {name: family.type for name, family in self.families.items()}

    def samples(self, sample_name: str) -> list[Sample]:
        return [
            s for family in self.families.values() for s in family.samples if s.name == sample_name
        ]

    def value(self, sample_name: str, **labels: str) -> float:
        [found] = [s for s in self.samples(sample_name) if s.labels == labels]
        return found.value

    def by_label(self, sample_name: str, label: str) -> dict[str, float]:
        return {s.labels[label]: s.value for s in self.samples(sample_name)}


@asynccontextmanager
async def cluster_with_psi(
    tmp_path: Path,
) -> AsyncIterator[tuple[InProcessCluster, dict[int, PsiService]]]:
    """A running four-node cluster (private details in every node) and a PSI service
    for nodes 0 and 1."""
    cluster = make_cluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        services = {}
        for i in (0, 1):
            services[i] = PsiService(
                cluster.runtime(i), cluster.store(i), cluster.genesis, answer=True, workers=1
            )
            await nursery.start(services[i].run)
        yield cluster, services
        await cluster.stop()
        nursery.cancel_scope.cancel()


async def scrape(cluster: InProcessCluster, i: int, psi: PsiService) -> tuple[str, Scrape]:
    app = build_app(
        cluster.runtime(i), cluster.store(i), cluster.genesis, details=cluster.details(i), psi=psi
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return response.headers["content-type"], Scrape(response.text)


@pytest.mark.timeout(60)
async def test_every_family_parses_with_its_type_help_and_the_node_s_numbers(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with cluster_with_psi(tmp_path) as (cluster, psi):
            runtime = cluster.runtime(0)
            for i in range(5):
                accepted = await runtime.submit(report_tx(cluster, 0, i, now_ms()))
            await runtime.wait_committed(accepted.tx_id)
            # Labelled samples, one with every character the format escapes.
            details = cluster.details(0)
            details.stats.rejected["mismatch"] = 2
            psi[0].stats.failed.update({"timeout": 3, 'odd "out\\come"\nhere': 1})
            psi[0].stats.answered = 4

            content_type, got = await scrape(cluster, 0, psi[0])
            assert content_type == "text/plain; version=0.0.4; charset=utf-8"
            assert got.types() == NODE_FAMILIES | DETAILS_FAMILIES | PSI_FAMILIES
            assert got.families["crosstrace_height"].documentation == (
                "Height of the last stored block."
            )
            assert got.families["crosstrace_private_details_rejected"].documentation == (
                "Details received and not stored, by reason "
                "(mismatch: failed the commitment check)."
            )
            # The text keeps the names dashboards query, suffixes included.
            for line in (
                "# TYPE crosstrace_txs_committed_total counter",
                "# TYPE crosstrace_node_info gauge",
                "# TYPE crosstrace_commit_latency_seconds histogram",
            ):
                assert line in got.text.splitlines()

            stats = runtime.stats
            node = {"chain_id": cluster.genesis.chain_id, "member": cluster.member_name(0)}
            assert got.value("crosstrace_node_info", **node) == 1
            assert got.value("crosstrace_height") == cluster.store(0).tip()[0] >= 1
            assert got.value("crosstrace_txs_committed_total") == stats.txs_committed >= 5
            assert got.value("crosstrace_view") == 0
            assert got.value("crosstrace_view_active") == 1
            assert got.value("crosstrace_peers") == 3
            assert "Commit" in got.by_label("crosstrace_messages_sent_total", "kind")
            rejected = got.by_label("crosstrace_mempool_rejected_total", "reason")
            assert set(rejected) == {"duplicate", "too_large", "member_quota", "full"}
            refused = got.by_label("crosstrace_admission_refused_total", "reason")
            assert refused == {"share": 0, "capacity": 0, "lagging": 0}
            assert got.value("crosstrace_admission_bound_txs") == runtime.admission.bound(
                trio.current_time()
            )

            latency = "crosstrace_commit_latency_seconds"
            buckets = got.by_label(f"{latency}_bucket", "le")
            assert list(buckets)[-1] == "+Inf" and "0.005" in buckets and "60.0" in buckets
            counts = list(buckets.values())
            assert counts == sorted(counts), "buckets are cumulative"
            assert buckets["+Inf"] == got.value(f"{latency}_count") == stats.commit_latency.count
            assert got.value(f"{latency}_count") >= 5
            assert got.value(f"{latency}_sum") == pytest.approx(stats.commit_latency.sum_s)

            assert got.by_label("crosstrace_private_details_rejected_total", "reason") == {
                "mismatch": 2
            }
            assert got.value("crosstrace_private_details_held") == details.statistics().held
            assert got.value("crosstrace_psi_answered_total") == 4
            assert got.value("crosstrace_psi_runs_active") == 0
            assert got.by_label("crosstrace_psi_failed_total", "outcome") == {
                "timeout": 3,
                'odd "out\\come"\nhere': 1,
            }
            assert got.by_label("crosstrace_psi_refused_total", "reason") == {}


@pytest.mark.timeout(60)
async def test_two_nodes_in_one_process_each_report_their_own_numbers(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with cluster_with_psi(tmp_path) as (cluster, psi):
            cluster.details(1).stats.rejected["not_signer"] = 5
            psi[0].stats.started = 7
            _, node0 = await scrape(cluster, 0, psi[0])
            _, node1 = await scrape(cluster, 1, psi[1])
            # A second app for node 0 in the same process: a global registry would refuse
            # the same names twice, or report both nodes' samples in one scrape.
            _, again = await scrape(cluster, 0, psi[0])

            def member(scrape: Scrape) -> str:
                [info] = scrape.samples("crosstrace_node_info")
                return info.labels["member"]

            assert (member(node0), member(node1), member(again)) == (
                cluster.member_name(0),
                cluster.member_name(1),
                cluster.member_name(0),
            )
            assert node0.by_label("crosstrace_private_details_rejected_total", "reason") == {}
            assert node1.by_label("crosstrace_private_details_rejected_total", "reason") == {
                "not_signer": 5
            }
            assert node0.value("crosstrace_psi_started_total") == 7
            assert node1.value("crosstrace_psi_started_total") == 0
            assert again.value("crosstrace_psi_started_total") == 7

            first = MetricsCollector(cluster.runtime(0), cluster.store(0), "a")
            second = MetricsCollector(cluster.runtime(1), cluster.store(1), "b")
            assert first.registry is not second.registry
            assert REGISTRY not in (first.registry, second.registry)
            # Nothing of any node reached the process-global registry.
            assert not [m for m in REGISTRY.collect() if m.name.startswith("crosstrace")]


class Clashing(Collector):
    def collect(self) -> list[Metric]:
        return [GaugeMetricFamily("crosstrace_height", "Claims a name the node reports.", 0)]


@pytest.mark.timeout(60)
async def test_a_collector_that_reuses_a_node_metric_name_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(30):
        cluster = make_cluster(tmp_path)
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            metrics = MetricsCollector(cluster.runtime(0), cluster.store(0), "police-0")
            with pytest.raises(ValueError, match="crosstrace_height"):
                metrics.register(Clashing())
            await cluster.stop()
            nursery.cancel_scope.cancel()
