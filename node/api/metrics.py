"""``GET /metrics``: the node's state and counters in the Prometheus text format 0.0.4.

Written by hand rather than with ``prometheus_client``: every value already lives in
the runtime, the mempool and the transport, so a scrape only has to read and format
them. The client library would add a dependency and a process-global registry (awkward
with several nodes in one test process) to produce the same few dozen lines.

Counters that the runtime keeps in memory (blocks and transactions committed, message
counts) start from zero when the node starts, as Prometheus expects of counters; the
``rate()`` of a counter is unaffected by such resets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from node.host.peers import peer_statistics
from node.host.runtime import NodeRuntime
from node.ledger.store import LedgerStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


class Exposition:
    """Builds the text of one scrape: HELP and TYPE once per family, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def header(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Labels, value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]
    ) -> None:
        self.header(name, kind, help_text)
        for labels, value in samples:
            self.sample(name, labels, value)

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class MetricsCollector:
    def __init__(self, runtime: NodeRuntime, store: LedgerStore, member_name: str) -> None:
        self.runtime = runtime
        self.store = store
        self.member_name = member_name
        # Families of the node's services (private details ...), appended by build_app.
        self.extras: list[Callable[[Exposition], None]] = []

    def render(self) -> str:
        """One scrape. Synchronous on purpose: no other task runs while the values are
        read, so they are consistent with each other (LMDB's tip read is a short read
        transaction that never waits for the writer)."""
        runtime, out = self.runtime, Exposition()
        stats, replica = runtime.stats, runtime.replica
        out.family(
            "crosstrace_node_info",
            "gauge",
            "Constant 1, labelled with the chain and this member.",
            [({"chain_id": self.store.chain_id, "member": self.member_name}, 1)],
        )
        out.one(
            "crosstrace_height", "gauge", "Height of the last stored block.", self.store.tip()[0]
        )
        if replica is not None:  # None only until the runtime has restored its state
            out.one("crosstrace_view", "gauge", "Current PBFT view.", replica.view)
            out.one(
                "crosstrace_view_active",
                "gauge",
                "1 while the view is active, 0 during a view change.",
                int(replica.view_active),
            )
            # Views only grow and every view after 0 was begun by a view change, so the
            # view number counts the view changes since genesis, restarts included.
            out.one(
                "crosstrace_view_changes_total",
                "counter",
                "Views entered after the first (view changes since genesis).",
                replica.view,
            )
            out.one(
                "crosstrace_stable_checkpoint",
                "gauge",
                "Height of the last stable checkpoint.",
                replica.low,
            )
        out.one(
            "crosstrace_blocks_committed_total",
            "counter",
            "Blocks committed since the node started.",
            stats.blocks_committed,
        )
        out.one(
            "crosstrace_txs_committed_total",
            "counter",
            "Transactions committed since the node started.",
            stats.txs_committed,
        )
        out.one(
            "crosstrace_equivocations_total",
            "counter",
            "Equivocation evidence reported by consensus since the node started.",
            stats.equivocations,
        )
        self._mempool(out)
        self._network(out)
        self._latency(out)
        for extra in self.extras:
            extra(out)
        return out.text()

    def _mempool(self, out: Exposition) -> None:
        pool = self.runtime.mempool
        out.one("crosstrace_mempool_txs", "gauge", "Transactions pending.", len(pool))
        out.one(
            "crosstrace_mempool_bytes",
            "gauge",
            "Bytes of the transactions pending.",
            pool.size_bytes,
        )
        rejected = pool.statistics().rejected
        out.family(
            "crosstrace_mempool_rejected_total",
            "counter",
            "Transactions the mempool refused, by reason.",
            [({"reason": str(reason)}, n) for reason, n in sorted(rejected.items())],
        )

    def _network(self, out: Exposition) -> None:
        runtime = self.runtime
        out.one(
            "crosstrace_peers",
            "gauge",
            "Other members of the chain.",
            runtime.membership.n - 1,
        )
        peers = peer_statistics(runtime)
        if peers is not None:  # an in-memory transport has no connections to count
            out.one(
                "crosstrace_peers_connected",
                "gauge",
                "Other members with an open, authenticated connection.",
                sum(p.connected for p in peers.values()),
            )
        stats = runtime.transport.stats
        out.family(
            "crosstrace_messages_sent_total",
            "counter",
            "Frames queued for other members, by kind.",
            [({"kind": kind}, n) for kind, n in sorted(stats.sent_by_kind.items())],
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
            out.one(f"crosstrace_{name}_total", "counter", help_text, value)

    def _latency(self, out: Exposition) -> None:
        name, h = "crosstrace_commit_latency_seconds", self.runtime.stats.commit_latency
        out.header(
            name, "histogram", "Time from submission to commit of transactions submitted here."
        )
        for bound, n in h.cumulative():
            out.sample(f"{name}_bucket", {"le": bound}, n)
        out.sample(f"{name}_sum", {}, h.sum_s)
        out.sample(f"{name}_count", {}, h.count)


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_value(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
