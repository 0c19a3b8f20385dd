"""``GET /metrics``: the node's state and counters in the Prometheus text format 0.0.4.

The text is produced by ``prometheus_client``, the reference implementation of the
format and its escaping. Every value already lives in the runtime, the mempool, the
transport and the services, so nothing is instrumented: custom collectors read those
values at scrape time and describe them as metric families.

Each node's API has its own ``CollectorRegistry``. The library's process-global
``REGISTRY``, and metric objects (``Counter(...)``, ``Gauge(...)``) that register with it,
are never used: several nodes run in one test process, and each must report its own
numbers.

Counters that the runtime keeps in memory (blocks and transactions committed, message
counts) start from zero when the node starts, as Prometheus expects of counters; the
``rate()`` of a counter is unaffected by such resets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from net.tcp_peer import TcpStats
from node.api.guard import BodyBudget, GuardStatistics
from node.details.service import PrivateDetailsService
from node.host.peers import peer_statistics
from node.host.runtime import NodeRuntime
from node.ledger.store import LedgerStore
from node.pseudonyms.service import PseudonymService
from node.pseudonyms.store import day_of
from node.psi.service import PsiService

# The 0.0.4 text format that ``generate_latest`` writes (the library's
# ``CONTENT_TYPE_LATEST`` names a newer version).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class MetricsCollector:
    """The metrics of one node: its own registry, with the node's collector and those of
    the services added by ``build_app`` (``register``)."""

    def __init__(self, runtime: NodeRuntime, store: LedgerStore, member_name: str) -> None:
        # auto_describe: ``register`` collects once, so that two collectors claiming the
        # same metric name fail when the app is built, not silently at scrape time.
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(NodeCollector(runtime, store, member_name))

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        """One scrape. Synchronous on purpose: no other task runs while the values are
        read, so they are consistent with each other (LMDB's tip read is a short read
        transaction that never waits for the writer)."""
        return generate_latest(self.registry)


def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def counter_by(
    name: str, help_text: str, label: str, values: Iterable[tuple[str, float]]
) -> CounterMetricFamily:
    """A counter with one label, its samples in the label's order (a family without
    samples is still described)."""
    return counter_by_labels(name, help_text, [label], (((v,), n) for v, n in values))


def counter_by_labels(
    name: str,
    help_text: str,
    labels: Sequence[str],
    values: Iterable[tuple[tuple[str, ...], float]],
) -> CounterMetricFamily:
    """A counter with several labels, its samples in the labels' order."""
    family = CounterMetricFamily(name, help_text, labels=list(labels))
    for label_values, value in sorted(values):
        family.add_metric(list(label_values), value)
    return family


class NodeCollector(Collector):
    """The chain, consensus, mempool, transport and commit latency of one node."""

    def __init__(self, runtime: NodeRuntime, store: LedgerStore, member_name: str) -> None:
        self.runtime = runtime
        self.store = store
        self.member_name = member_name

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        stats, replica = runtime.stats, runtime.replica
        yield InfoMetricFamily(
            "crosstrace_node",  # exposed as crosstrace_node_info, a gauge of 1
            "Constant 1, labelled with the chain and this member.",
            value={"chain_id": self.store.chain_id, "member": self.member_name},
        )
        yield gauge("crosstrace_height", "Height of the last stored block.", self.store.tip()[0])
        if replica is not None:  # None only until the runtime has restored its state
            yield gauge("crosstrace_view", "Current PBFT view.", replica.view)
            yield gauge(
                "crosstrace_view_active",
                "1 while the view is active, 0 during a view change.",
                int(replica.view_active),
            )
            # Views only grow and every view after 0 was begun by a view change, so the
            # view number counts the view changes since genesis, restarts included.
            yield counter(
                "crosstrace_view_changes_total",
                "Views entered after the first (view changes since genesis).",
                replica.view,
            )
            yield gauge(
                "crosstrace_stable_checkpoint",
                "Height of the last stable checkpoint.",
                replica.low_watermark,
            )
            yield gauge(
                "crosstrace_passed_over_longest_seconds",
                "Longest a request waited here after a later one committed, since start: "
                "how close the primaries came to being taken for censoring (at "
                "censorship_grace_timeouts view timeouts).",
                replica.request_timer.longest_passed_over_ms / 1000,
            )
        yield counter(
            "crosstrace_blocks_committed_total",
            "Blocks committed since the node started.",
            stats.blocks_committed,
        )
        yield counter(
            "crosstrace_txs_committed_total",
            "Transactions committed since the node started.",
            stats.txs_committed,
        )
        yield counter(
            "crosstrace_equivocations_total",
            "Equivocation evidence reported by consensus since the node started.",
            stats.equivocations,
        )
        yield from self._mempool()
        yield from self._admission()
        yield from self._network()
        yield self._latency()

    def _mempool(self) -> Iterator[Metric]:
        pool = self.runtime.mempool
        yield gauge("crosstrace_mempool_txs", "Transactions pending.", len(pool))
        yield gauge(
            "crosstrace_mempool_bytes", "Bytes of the transactions pending.", pool.size_bytes
        )
        yield counter_by(
            "crosstrace_mempool_rejected_total",
            "Transactions the mempool refused, by reason.",
            "reason",
            ((str(reason), n) for reason, n in pool.statistics().rejected.items()),
        )

    def _admission(self) -> Iterator[Metric]:
        runtime = self.runtime
        admission = runtime.admission
        try:
            now: float | None = trio.current_time()
        except RuntimeError:
            # Described outside the event loop (the registry collects once when the
            # collector is registered): the families without figures yet.
            now = None
        yield gauge(
            "crosstrace_commit_rate_estimate",
            "Moving estimate of transactions this node commits per second.",
            0.0 if now is None else admission.rate.per_second(now),
        )
        yield gauge(
            "crosstrace_admission_bound_txs",
            "Pending transactions past which members over their share are refused (429).",
            0.0 if now is None else admission.bound(now),
        )
        yield gauge(
            "crosstrace_commit_waiters",
            "Transactions clients wait on (POST /txs?wait=true) until they commit.",
            runtime.waiting_clients,
        )
        yield counter_by(
            "crosstrace_admission_refused_total",
            "Submissions (POST /txs) refused with 429, by reason (share: the node at its "
            "bound and the member past its share; capacity: the mempool's limit; "
            "lagging: peers' gossip waits for this node's check).",
            "reason",
            ((str(reason), n) for reason, n in admission.refused.items()),
        )
        yield counter(
            "crosstrace_gossip_refused_total",
            "Gossiped transactions dropped by admission: past the bound (with slack).",
            admission.gossip_dropped,
        )
        yield counter(
            "crosstrace_regossiped_total",
            "Transactions submitted here and still pending, sent to the primary again.",
            runtime.stats.regossiped,
        )

    def _network(self) -> Iterator[Metric]:
        runtime = self.runtime
        yield gauge("crosstrace_peers", "Other members of the chain.", runtime.membership.n - 1)
        peers = peer_statistics(runtime)
        if peers is not None:  # an in-memory transport has no connections to count
            yield gauge(
                "crosstrace_peers_connected",
                "Other members with an open, authenticated connection.",
                sum(p.connected for p in peers.values()),
            )
        stats = runtime.transport.stats
        yield counter_by(
            "crosstrace_messages_sent_total",
            "Frames queued for other members, by kind.",
            "kind",
            stats.sent_by_kind.items(),
        )
        for name, help_text, value in (
            ("messages_received", "Frames received from other members.", stats.received),
            ("gossip_dropped", "Gossip frames dropped on a full queue.", stats.dropped_gossip),
            ("peer_resets", "Send queues discarded because they were full.", stats.peer_resets),
            ("messages_undeliverable", "Frames with no connection to go to.", stats.undeliverable),
            ("messages_malformed", "Frames received that did not decode.", stats.malformed),
            (
                "gossip_shed",
                "Gossip frames received but dropped: the sender's admission backlog was full.",
                runtime.stats.gossip_shed,
            ),
        ):
            yield counter(f"crosstrace_{name}_total", help_text, value)
        if isinstance(stats, TcpStats):
            yield counter_by(
                "crosstrace_p2p_rejected_total",
                "Inbound p2p sockets closed at once, by reason (net.admission).",
                "reason",
                stats.rejected_by_reason.items(),
            )
            yield counter_by(
                "crosstrace_p2p_evicted_total",
                "Unfinished p2p handshakes ended early to make room, by reason.",
                "reason",
                stats.evicted_by_reason.items(),
            )

    def _latency(self) -> HistogramMetricFamily:
        h = self.runtime.stats.commit_latency
        # The buckets are cumulative and end with +Inf, whose count is the ``_count``
        # sample (the histogram counts every observation in exactly one bucket).
        return HistogramMetricFamily(
            "crosstrace_commit_latency_seconds",
            "Time from submission to commit of transactions submitted here.",
            buckets=h.cumulative(),
            sum_value=h.sum_s,
        )


class GuardCollector(Collector):
    """The API's gate (``node.api.guard``): what it refused, and the request bodies it
    holds against their shared budget."""

    def __init__(self, budget: BodyBudget, stats: GuardStatistics) -> None:
        self.budget = budget
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield counter_by(
            "crosstrace_api_refused_total",
            "API requests the gate refused before any route, by code (wrong_host, "
            "cross_origin, unsupported_media_type, busy, body_timeout).",
            "code",
            self.stats.refused.items(),
        )
        yield gauge(
            "crosstrace_api_body_bytes",
            "Bytes of request bodies being received or held now.",
            self.budget.in_flight,
        )
        yield gauge(
            "crosstrace_api_body_budget_bytes",
            "Most bytes of request bodies held at once, over all requests.",
            self.budget.limit,
        )


class DetailsCollector(Collector):
    """The private-details service: what it holds, delivers and refuses."""

    def __init__(self, service: PrivateDetailsService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        snapshot = self.service.statistics()
        stats = snapshot.stats
        for name, help_text, value in (
            ("held", "Records in the private store.", snapshot.held),
            ("outbox", "Deliveries of private details not yet acknowledged.", snapshot.outbox),
            (
                "pending",
                "Received details waiting for their transaction to commit.",
                snapshot.pending,
            ),
        ):
            yield gauge(f"crosstrace_private_details_{name}", help_text, value)
        for name, help_text, value in (
            ("shared", "Details this member submitted and shares.", stats.shared),
            (
                "stored",
                "Details received, checked against their commitment and stored.",
                stats.stored,
            ),
            ("sent", "Details frames sent, retries included.", stats.sent),
            ("acknowledged", "Deliveries a recipient confirmed.", stats.acknowledged),
            ("refused", "Deliveries a recipient refused for good.", stats.refused),
            ("deleted", "Records deleted by retention.", stats.deleted),
        ):
            yield counter(f"crosstrace_private_details_{name}_total", help_text, value)
        yield counter_by(
            "crosstrace_private_details_rejected_total",
            "Details received and not stored, by reason (mismatch: failed the commitment check).",
            "reason",
            stats.rejected.items(),
        )


class PsiCollector(Collector):
    """The private set intersection service: its runs, either role, and their outcomes."""

    def __init__(self, service: PsiService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        stats = service.stats
        yield gauge(
            "crosstrace_psi_runs_active",
            "PSI runs going on here, asked or answered.",
            sum(1 for run in service.runs.values() if run.active),
        )
        for name, help_text, value in (
            ("started", "PSI runs this member asked for.", stats.started),
            ("answered", "PSI runs this member answered.", stats.answered),
            ("completed", "PSI runs completed and recorded here.", stats.completed),
            ("stale_messages", "PSI messages for a run that had ended here.", stats.stale),
            ("unknown_run_messages", "PSI messages for a run never had here.", stats.unknown_run),
        ):
            yield counter(f"crosstrace_psi_{name}_total", help_text, value)
        yield counter_by(
            "crosstrace_psi_failed_total",
            "PSI runs that failed, by outcome (invalid_point, wrong_count, timeout, ...).",
            "outcome",
            stats.failed.items(),
        )
        yield counter_by(
            "crosstrace_psi_refused_total",
            "PSI runs this member refused to answer, by reason.",
            "reason",
            stats.refused.items(),
        )


class PseudonymCollector(Collector):
    """Threshold pseudonyms: what this member evaluated for each other member (by
    purpose), what it refused, today's quota use, and how its own requests went."""

    def __init__(self, service: PseudonymService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        stats = service.stats
        yield counter_by_labels(
            "crosstrace_pseudonym_evaluated_points_total",
            "Points this member evaluated for another member, by requester and purpose.",
            ["member", "purpose"],
            stats.evaluated.items(),
        )
        yield counter_by_labels(
            "crosstrace_pseudonym_refused_total",
            "Evaluation requests this member refused, by requester and reason.",
            ["member", "reason"],
            stats.refused.items(),
        )
        day = day_of(service.clock_ms())
        params = service.genesis.pseudonyms
        used = GaugeMetricFamily(
            "crosstrace_pseudonym_report_quota_used_ratio",
            "Share of its daily report quota each member used here today (UTC).",
            labels=["member"],
        )
        for row in service.store.usage(day):
            if row.kind == "report":
                used.add_metric([row.name], row.points / params.report_quota_per_day)
        yield used
        yield counter_by(
            "crosstrace_pseudonym_requests_total",
            "This member's own evaluation requests, by outcome.",
            "outcome",
            stats.asked.items(),
        )
        yield counter_by(
            "crosstrace_pseudonym_wrong_proofs_total",
            "Evaluations whose proof failed, by the member that sent them.",
            "member",
            stats.wrong_proofs.items(),
        )
        yield counter_by(
            "crosstrace_pseudonym_unanswered_total",
            "Evaluation requests a member left unanswered in time, by member.",
            "member",
            stats.unanswered.items(),
        )
        yield counter(
            "crosstrace_pseudonym_cache_hits_total",
            "Identifiers pseudonymised from this node's own cache.",
            stats.cache_hits,
        )
        yield counter(
            "crosstrace_pseudonym_cache_misses_total",
            "Identifiers that needed an evaluation.",
            stats.cache_misses,
        )
        h = stats.latency
        yield HistogramMetricFamily(
            "crosstrace_pseudonym_seconds",
            "Time to pseudonymise one request's identifiers, cache and evaluation included.",
            buckets=h.cumulative(),
            sum_value=h.sum_s,
        )
