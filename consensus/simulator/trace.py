"""One-line descriptions of messages for simulation traces."""

from __future__ import annotations

from typing import Any

from consensus.messages import (
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Commit,
    Message,
    NewView,
    NewViewRequest,
    Prepare,
    PrePrepare,
    Proposal,
    Status,
    ViewChange,
)


def _short(digest: bytes) -> str:
    """The first 8 hex digits: enough to tell digests apart in a trace."""
    return digest.hex()[:8]


def describe(message: Message) -> str:
    match message:
        case Proposal(pp, batch):
            return (
                f"PRE-PREPARE v{pp.view} s{pp.seq} {_short(pp.digest)} from {pp.sender} "
                f"({len(batch.txs)} txs)"
            )
        case PrePrepare():
            return f"PRE-PREPARE v{message.view} s{message.seq} {_short(message.digest)}"
        case Prepare():
            return (
                f"PREPARE v{message.view} s{message.seq} {_short(message.digest)} "
                f"from {message.sender}"
            )
        case Commit():
            return (
                f"COMMIT v{message.view} s{message.seq} {_short(message.digest)} "
                f"from {message.sender}"
            )
        case Checkpoint():
            return f"CHECKPOINT s{message.seq} {_short(message.block_hash)} from {message.sender}"
        case ViewChange():
            return (
                f"VIEW-CHANGE to v{message.new_view} from {message.sender} stable "
                f"s{message.stable_seq}, {len(message.prepared)} prepared"
            )
        case NewView():
            seqs = [p.pre_prepare.seq for p in message.proposals]
            return f"NEW-VIEW v{message.view} from {message.sender} re-proposing {seqs}"
        case Status():
            state = "active" if message.view_active else "changing"
            return f"STATUS from {message.sender}: v{message.view} {state} height {message.height}"
        case NewViewRequest():
            return f"NEW-VIEW-REQUEST v{message.view} from {message.sender}"
        case BlockRequest():
            return f"BLOCK-REQUEST {message.from_height}..{message.to_height} from {message.sender}"
        case BlockResponse():
            heights = [e.batch.height for e in message.entries]
            span = f"{heights[0]}..{heights[-1]}" if heights else "nothing"
            return f"BLOCK-RESPONSE {span}"
    return type(message).__name__


def format_entry(entry: tuple[Any, ...]) -> str:
    now, instance, what, *rest = entry
    head = f"{now:>8} n{instance}"
    if what == "deliver":
        src, message = rest
        return f"{head} <- n{src} {describe(message)}"
    if what == "commit":
        block, cert = rest
        return (
            f"{head} COMMIT height {block.header.height} view {cert.view} "
            f"txs {len(block.txs)} hash {block.hash().hex()[:8]}"
        )
    if what == "crash":
        return f"{head} CRASH at height {rest[0]}"
    if what == "restart":
        return f"{head} RESTART from durable state: view {rest[0]}, height {rest[1]}"
    return f"{head} {what} {rest}"
