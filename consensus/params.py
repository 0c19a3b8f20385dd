"""Consensus parameters (set in the genesis file, identical on every member)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Params:
    checkpoint_interval: int = 10
    # Proposals are accepted only for low < seq <= low + window (the watermarks).
    window: int = 20
    max_batch_txs: int = 1000
    max_batch_bytes: int = 8 * 1024 * 1024
    max_request_bytes: int = 64 * 1024
    batch_delay_ms: int = 20
    # Proposals the primary keeps open (proposed, not yet executed) before a batch that
    # is not full waits for one to execute. Under load, requests then gather into fewer,
    # larger blocks while earlier ones are in consensus, instead of paying a consensus
    # round (signatures, messages, fsyncs) per few requests. Full batches are bound only
    # by the window. Only the primary's timing depends on it, so it is not in the genesis.
    pipeline_depth: int = 2
    view_timeout_ms: int = 2000
    # A request passed over by later arrivals is taken for censored this many view
    # timeouts after it was first passed over: under load a request a backup holds can
    # reach the primary about a timeout later than the backup's own (its gossip checked
    # behind a backlog, or dropped by the primary's bound and sent again every quarter
    # timeout), which is not censorship. Only this replica's judgement depends on it.
    censorship_grace_timeouts: int = 2
    max_view_timeout_ms: int = 60_000
    heartbeat_ms: int = 500
    max_pending_requests: int = 100_000
    # How many committed request ids to remember for de-duplication.
    committed_memory: int = 200_000
    sync_batch_blocks: int = 64

    def __post_init__(self) -> None:
        if self.checkpoint_interval < 1:
            raise ValueError("checkpoint_interval must be at least 1")
        if self.window < 2 * self.checkpoint_interval or self.window % self.checkpoint_interval:
            raise ValueError("window must be a multiple of checkpoint_interval, at least twice it")
        for name in (
            "max_batch_txs",
            "max_batch_bytes",
            "pipeline_depth",
            "max_request_bytes",
            "view_timeout_ms",
            "censorship_grace_timeouts",
            "heartbeat_ms",
            "max_pending_requests",
            "sync_batch_blocks",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.max_view_timeout_ms < self.view_timeout_ms:
            raise ValueError("max_view_timeout_ms must be at least view_timeout_ms")
