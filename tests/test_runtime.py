"""The node runtime driving real replicas, stores and an in-memory transport."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from cluster_helpers import cluster_ref, ledger_bytes, make_cluster, report_tx, submit_all

from consensus.codec import encode_value
from consensus.messages import Commit, Prepare, Proposal
from net.wire import Frame
from node.ledger.kinds import Report
from node.ledger.transactions import encode_tx
from node.ledger.verify import verify_ledger

NOW = 1_790_000_000_000


@pytest.mark.timeout(240)
async def test_four_nodes_commit_ten_thousand_transactions_identically(tmp_path: Path) -> None:
    import time

    cluster = make_cluster(tmp_path)
    now = int(time.time() * 1000)
    txs = [report_tx(cluster, i % 4, i, now) for i in range(10_000)]
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            ids: list[bytes] = []
            for member in range(4):  # every member submits its own, through its node
                ids += await submit_all(cluster, txs[member::4], via=member)
            # Every one: members' transactions reach the primary by gossip at their own
            # pace, so the last ones submitted need not be the last ones committed.
            for i in range(4):
                for tx_id in ids:
                    await cluster.runtime(i).wait_committed(tx_id)
            heights = {cluster.store(i).tip()[0] for i in range(4)}
            await cluster.wait_height(max(heights))
            ledgers = [ledger_bytes(cluster, i) for i in range(4)]
            assert ledgers[0] and all(ledger == ledgers[0] for ledger in ledgers)
            for i in range(4):
                store = cluster.store(i)
                assert all(store.tx_location(t) is not None for t in ids)
            await cluster.stop()
            nursery.cancel_scope.cancel()
    for i in range(4):
        report = verify_ledger(cluster.data_dir(i), cluster.genesis.membership())
        assert report.ok, report


class RecordingTransport:
    """Wraps a transport and remembers every vote the node signed and sent."""

    def __init__(self, inner: object, votes: dict[tuple[str, int, int], set[bytes]]) -> None:
        self.inner = inner
        self.votes = votes

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def send_nowait(self, to: int, frame: Frame) -> None:
        vote = None
        if isinstance(frame, Proposal):
            vote = frame.pre_prepare
        elif isinstance(frame, Prepare | Commit):
            vote = frame
        if vote is not None:
            self.votes.setdefault((vote.KIND, vote.view, vote.seq), set()).add(vote.digest)
        self.inner.send_nowait(to, frame)  # type: ignore[attr-defined]


@pytest.mark.timeout(240)
async def test_a_restarted_node_catches_up_and_never_signs_a_conflicting_vote(
    tmp_path: Path,
) -> None:
    import time

    cluster = make_cluster(tmp_path)
    votes: dict[tuple[str, int, int], set[bytes]] = {}
    attach = cluster.hub.attach

    def recording_attach(me: int):  # type: ignore[no-untyped-def]
        transport = attach(me)
        return RecordingTransport(transport, votes) if me == 2 else transport

    cluster.hub.attach = recording_attach  # type: ignore[method-assign]
    now = int(time.time() * 1000)
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            first = await submit_all(cluster, [report_tx(cluster, 0, i, now) for i in range(300)])
            await cluster.runtime(2).wait_committed(first[-1])
            await cluster.stop_node(2)  # mid-run: more work happens while it is down
            more = await submit_all(
                cluster, [report_tx(cluster, 1, 1000 + i, now) for i in range(600)]
            )
            for i in (0, 1, 3):
                await cluster.runtime(i).wait_committed(more[-1])
            await cluster.start_node(nursery, 2)
            tip = cluster.store(0).tip()[0]
            await cluster.runtime(2).wait_height(tip)
            final = await submit_all(
                cluster, [report_tx(cluster, 3, 5000 + i, now) for i in range(200)]
            )
            await cluster.runtime(2).wait_committed(final[-1])
            tip = max(cluster.store(i).tip()[0] for i in range(4))
            await cluster.wait_height(tip)
            assert ledger_bytes(cluster, 2) == ledger_bytes(cluster, 0)
            await cluster.stop()
            nursery.cancel_scope.cancel()
    conflicting = {key: ds for key, ds in votes.items() if len(ds) > 1}
    assert votes and not conflicting


async def test_bad_transactions_get_a_specific_error_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    import time

    cluster = make_cluster(tmp_path)
    now = int(time.time() * 1000)
    good = report_tx(cluster, 1, 1, now)
    forged = bytearray(good)
    forged[-1] ^= 1
    stale = report_tx(cluster, 1, 2, now - 3_600_000)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            runtime = cluster.runtime(0)
            results = [
                await runtime.submit(bytes(forged)),
                await runtime.submit(b"\x93\x01\x02"),
                await runtime.submit(stale),
            ]
            codes = [r.code for r in results]
            assert codes == ["bad_signature", "malformed", "clock_skew"]
            assert all(not r.accepted and r.message for r in results)
            ok = await runtime.submit(good)
            assert ok.accepted
            replay = await runtime.submit(good)
            assert replay.code in {"duplicate", "replay"}
            await runtime.wait_committed(ok.tx_id)
            assert cluster.store(0).tip()[0] == 1
            assert len(cluster.runtime(0).mempool) == 0
            await cluster.stop()
            nursery.cancel_scope.cancel()


@pytest.mark.timeout(180)
async def test_the_same_runtime_over_real_tcp_with_noise_and_a_restart(tmp_path: Path) -> None:
    """The TCP transport fits the runtime's interface: four nodes on loopback sockets
    commit, one is stopped and restarted on its port, catches up, and all agree."""
    import time

    cluster = make_cluster(tmp_path, transport="tcp")
    now = int(time.time() * 1000)
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            first = await submit_all(cluster, [report_tx(cluster, 0, i, now) for i in range(1000)])
            for i in range(4):
                await cluster.runtime(i).wait_committed(first[-1])
            await cluster.stop_node(3)
            more = await submit_all(
                cluster, [report_tx(cluster, 1, 2000 + i, now) for i in range(1000)], via=1
            )
            for i in range(3):
                await cluster.runtime(i).wait_committed(more[-1])
            await cluster.start_node(nursery, 3)
            tip = max(cluster.store(i).tip()[0] for i in range(3))
            await cluster.runtime(3).wait_height(tip)
            last = await submit_all(
                cluster, [report_tx(cluster, 2, 5000 + i, now) for i in range(200)], via=2
            )
            for i in range(4):
                await cluster.runtime(i).wait_committed(last[-1])
            tip = max(cluster.store(i).tip()[0] for i in range(4))
            await cluster.wait_height(tip)
            ledgers = [ledger_bytes(cluster, i) for i in range(4)]
            assert all(ledger == ledgers[0] for ledger in ledgers)
            await cluster.stop()
            nursery.cancel_scope.cancel()
    for i in range(4):
        assert verify_ledger(cluster.data_dir(i), cluster.genesis.membership()).ok


async def test_every_kind_of_bad_transaction_is_refused_by_a_node_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    import time

    from consensus.crypto import Signer
    from node.ledger.transactions import sign_tx

    cluster = make_cluster(tmp_path)
    now = int(time.time() * 1000)
    chain, member, signer = cluster.genesis.chain_id, cluster.member_name(1), cluster.signers[1]
    good_body = Report(
        subject=cluster_ref(cluster, "phone", "13800138000"),
        category="fraud_call",
        attributes=(),
        case_id=None,
        observed_ms=now - 1000,
        details_commitment=None,
    )
    raw_phone_body = Report(
        subject=cluster_ref(cluster, "phone", "13800138000"),
        category="fraud_call",
        attributes=(),
        case_id="case-13800138000",
        observed_ms=now - 1000,
        details_commitment=None,
    )

    def tx(body: bytes, *, nonce: int, kind: str = "report", who: str = member,
           key: Signer = signer, chain_id: str = chain) -> bytes:  # fmt: skip
        return encode_tx(sign_tx(key, chain_id, who, kind, body, nonce, now))

    body = encode_value(good_body)
    cases = {
        "bad_signature": flip_last_bit(tx(body, nonce=1)),
        "unknown_member": tx(body, nonce=2, who="mallory"),
        "wrong_chain": tx(body, nonce=3, chain_id="another-chain"),
        "unknown_kind": tx(body, nonce=4, kind="vote"),
        "oversize": tx(body + bytes(20_000), nonce=5),
        "raw_identifier": tx(encode_value(raw_phone_body), nonce=6),
        "malformed": b"\xc1 not msgpack",
    }
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            runtime = cluster.runtime(0)
            results = await runtime.submit_batch(list(cases.values()))
            for (expected, _), result in zip(cases.items(), results, strict=True):
                assert not result.accepted
                assert result.code == expected, (expected, result)
                assert result.message
            first = await runtime.submit(tx(body, nonce=7))
            assert first.accepted
            await runtime.wait_committed(first.tx_id)
            other = encode_value(replace_observed(good_body, now - 2000))
            replayed = await runtime.submit(tx(other, nonce=7))
            assert replayed.code == "replay" and "nonce 7" in replayed.message
            store = cluster.store(0)
            assert store.tip()[0] == 1
            assert store.block(1) is not None and len(store.block(1).txs) == 1  # type: ignore[union-attr]
            await cluster.stop()
            nursery.cancel_scope.cancel()


def replace_observed(body: Report, observed_ms: int) -> Report:
    from dataclasses import replace

    return replace(body, observed_ms=observed_ms)


async def test_a_client_that_gives_up_waiting_leaves_nothing_behind(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            runtime = cluster.runtime(0)
            with trio.move_on_after(0.05):
                await runtime.wait_committed(bytes(32))  # never submitted
            assert not runtime._waiters and not runtime._waiting
            await cluster.stop()
            nursery.cancel_scope.cancel()


def flip_last_bit(data: bytes) -> bytes:
    """Always a different signature (overwriting a byte could write the same value)."""
    return data[:-1] + bytes([data[-1] ^ 1])


async def test_stranded_mempool_entries_expire(tmp_path: Path) -> None:
    import time

    cluster = make_cluster(tmp_path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            runtime = cluster.runtime(0)
            runtime.mempool_ttl_ms = 200
            now = int(time.time() * 1000)
            # As if a client went away between admission and the hand-over to consensus.
            assert runtime.mempool.add(bytes(32), "bank-1", b"x" * 100, now).accepted
            while len(runtime.mempool):  # noqa: ASYNC110 (the pool has no event to wait on)
                await trio.sleep(0.05)
            await cluster.stop()
            nursery.cancel_scope.cancel()


async def test_what_arrived_during_a_stall_is_seen_before_the_timers_then_due(
    tmp_path: Path,
) -> None:
    """A node back from a long stall (a slow fsync) must see the votes that came
    meanwhile before its REQUEST timer judges the primary: they carry the progress
    that keeps it from suspecting an honest primary for its own stall. (A full run once
    had two backups, two and one blocks behind, start a view change this way.)"""
    from consensus.events import MessageArrived, Timer, TimerFired
    from node.host.assemble import build_runtime, open_store

    cluster = make_cluster(tmp_path)
    store = open_store(cluster.data_dir(0), cluster.genesis)
    try:
        runtime = build_runtime(
            0, cluster.genesis, cluster.signers[0], store, cluster.hub.attach(0)
        )
        # Stand-ins for the votes: this step only orders events, it does not read them.
        arrived = [MessageArrived(1, f"vote {i}") for i in range(3)]  # type: ignore[arg-type]
        for event in arrived:
            runtime._events_in.send_nowait(event)
        runtime._timers[Timer.REQUEST] = trio.current_time() - 1.0  # overdue
        with trio.fail_after(5):
            events = await runtime._next_events()
        assert events[:3] == arrived
        assert events[3:] == [TimerFired(Timer.REQUEST)]
    finally:
        store.close()
