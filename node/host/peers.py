"""What the transport knows of each peer connection, for metrics and for services that
prefer members they are connected to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from net.tcp_peer import PeerStatistics
from node.host.runtime import NodeRuntime


@runtime_checkable
class PeerReporter(Protocol):
    """A transport that knows its connections (``TcpTransport``; the in-memory one does not)."""

    def peers(self) -> Mapping[int, PeerStatistics]: ...


def peer_statistics(runtime: NodeRuntime) -> Mapping[int, PeerStatistics] | None:
    transport = runtime.transport
    return transport.peers() if isinstance(transport, PeerReporter) else None
