"""Hostile peers against real node processes: a 4 GiB length prefix, garbage before the
handshake, stalled handshakes, floods of badly signed votes and of badly signed gossiped
transactions from an authenticated member, and a connection storm. Through all of it
the node processes must stay up and the honest members must keep committing what
clients submit; at the end the real member 3 joins and all four agree.

The consortium has four members. The honest ones (0, 1, 2) run as ``crosstrace start``
processes; the test holds member 3's key. n = 4 tolerates f = 1, so the honest three
commit on their own and member 3 is free to misbehave. The lower member dials the
higher, so the honest nodes dial member 3: the test listens where the genesis says
member 3 does and answers Noise XX with member 3's key (``Member3``), which gives it an
authenticated session with each honest node to abuse. Raw sockets play the anonymous
attackers.

Real processes, real clock: every test has a timeout. A background client (``Load``)
submits transactions through the API all along, so "keeps committing" is measured while
an attack is on, not only after it. The tests share one consortium (starting three
processes per test would cost more than the attacks) but each one checks its own
attack's effects, so any of them can run alone.

The machinery lives beside this file: member 3's stand-in, the raw-socket attackers
and what they send in ``hostile_peer.py``; the consortium, the load and the log and
metrics readers in ``e2e_cluster.py``. This file holds the fixture and the attacks.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Iterator
from functools import partial

import httpx
import pytest
from cli_helpers import HomeTokens
from e2e_cluster import (
    BYZANTINE,
    COMMIT_WAIT_S,
    HONEST,
    MAX_UNAUTHENTICATED,
    Consortium,
    Load,
    configure,
    eventually,
    peak_rss_bytes,
    stop_processes,
)
from hostile_peer import (
    FOUR_GIB,
    HANDSHAKE_TIMEOUT_S,
    LOCAL,
    MIB,
    Member3,
    Watch,
    churn,
    dial,
    equivocations,
    forged_votes,
    garbage_openings,
    lifetime,
    local_port,
    noise_frame,
    send_quietly,
    signed_nonsense,
    start_handshake,
)

from consensus.codec import MAX_MESSAGE_BYTES
from net.wire import Frame, TxGossip
from node.client.http import ApiClient
from node.ledger.authoring import load_author
from node.ops.ports import free_port_block
from node.ops.processes import NodeProcess, spawn
from node.setup.keys import load_key
from node.setup.provision import make_testnet
from node.testing.dealer import TEST_KEY, KeyedPseudonyms, redeal_homes

VOTE_FLOOD_FRAMES = 6000  # per honest node
VOTE_FLOOD_S = 4.0
GOSSIP_FLOOD_S = 4.0
RECEIVED = "crosstrace_messages_received_total"
EQUIVOCATIONS = "crosstrace_equivocations_total"
MALFORMED = "crosstrace_messages_malformed_total"


# ------------------------------------------------------------------ the consortium


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    root = tmp_path_factory.mktemp("hostile") / "net"
    base = free_port_block(8)
    _, members = make_testnet(root, 4, p2p_base_port=base, api_base_port=base + 4)
    homes = [m.path for m in members]
    # Load is signed offline, on a key the members are dealt by the test-only dealer,
    # so its pseudonyms are the ones the honest members would evaluate together.
    genesis, _ = redeal_homes(homes, TEST_KEY)
    for i in HONEST:
        configure(homes[i])
    seed = load_key(homes[BYZANTINE] / "node_key.json", None).seed
    pids: dict[int, int] = {}
    member3 = Member3(seed, genesis, base + BYZANTINE)
    http = httpx.Client(timeout=10, auth=HomeTokens(homes))
    load: Load | None = None
    try:
        for i in HONEST:
            pids[i] = spawn(NodeProcess(homes[i]))
        c = Consortium(
            genesis=genesis,
            homes=homes,
            p2p_ports=[base + i for i in range(4)],
            api_urls=[f"http://{LOCAL}:{base + 4 + i}" for i in range(4)],
            pids=pids,
            member3=member3,
            load=Load(
                load_author(homes[1], pseudonyms=KeyedPseudonyms(TEST_KEY)),
                [f"http://{LOCAL}:{base + 4 + i}" for i in HONEST],
            ),
            author=load_author(homes[2], pseudonyms=KeyedPseudonyms(TEST_KEY)),
            http=http,
        )
        load = c.load

        def meshed(i: int) -> bool:
            try:
                peers = c.status(i)["peers"]
            except httpx.HTTPError:
                return False
            return all(p["connected"] for p in peers)

        for i in HONEST:
            c.assert_alive([i])
            eventually(partial(meshed, i), 30, f"node{i} connected to every member")
        c.load.start()
        yield c
    finally:
        # Processes first: nothing below may keep them alive if it fails or hangs.
        stop_processes(pids.values(), grace_s=10)
        if load is not None:
            load.stop()
        member3.stop()
        http.close()


# ------------------------------------------------------------------ the attacks


@pytest.mark.timeout(60)
def test_a_4_gib_length_prefix_closes_that_connection_and_nothing_else(
    consortium: Consortium,
) -> None:
    c = consortium
    started = time.monotonic()
    mark = c.log_mark()
    peak_before = {i: peak_rss_bytes(c.pids[i]) for i in HONEST}
    for i in HONEST:
        port = c.p2p_ports[i]

        # Before the handshake: the very first four bytes, with more behind them.
        with dial(port) as sock:
            opened, where = time.monotonic(), local_port(sock)
            send_quietly(sock, FOUR_GIB + bytes(64 * 1024))
            lasted = lifetime(sock, opened, 3 * HANDSHAKE_TIMEOUT_S)
        # Refused for the prefix, not left to the handshake deadline.
        assert lasted < HANDSHAKE_TIMEOUT_S / 2
        c.wait_log(
            i,
            f"handshake with {LOCAL}:{where} failed: before the handshake: frame length "
            "4294967295 announced, the limit is 65535 bytes",
            mark,
        )

        # Inside the handshake: in place of message 3, after the node's message 2.
        with dial(port) as sock:
            opened, where = time.monotonic(), local_port(sock)
            start_handshake(sock, c.member3.seed, c.chain_id)
            send_quietly(sock, FOUR_GIB)
            lasted = lifetime(sock, opened, 3 * HANDSHAKE_TIMEOUT_S)
        assert lasted < HANDSHAKE_TIMEOUT_S / 2
        c.wait_log(i, f"handshake with {LOCAL}:{where} failed: before the handshake: frame", mark)

        # After the handshake, on member 3's authenticated session: as a frame prefix, then
        # as the length of a message announced inside an encrypted piece.
        sessions = c.member3.sessions[i]
        c.member3.link(i, sessions).send_raw(FOUR_GIB)
        c.wait_log(
            i,
            f"member {i}: dropping member 3: frame length 4294967295 announced, "
            "the limit is 65535 bytes",
            mark,
        )
        # The node calls member 3 again (its reconnect backoff), and the new session
        # is as exposed as the first.
        c.member3.link(i, sessions + 1).send_piece(FOUR_GIB + b"x")
        c.wait_log(
            i,
            f"member {i}: dropping member 3: message of 4294967295 bytes announced, "
            f"the limit is {MAX_MESSAGE_BYTES} bytes",
            mark,
        )
        c.member3.link(i, sessions + 2)
    c.commit_on_every_node()
    c.assert_alive()
    for i in HONEST:
        # Nothing was allocated for the announced size.
        assert peak_rss_bytes(c.pids[i]) - peak_before[i] < 64 * MIB
    c.check_load(started)


@pytest.mark.timeout(60)
def test_garbage_before_the_handshake_closes_that_connection_and_nothing_else(
    consortium: Consortium,
) -> None:
    c = consortium
    started = time.monotonic()
    mark = c.log_mark()
    openings = garbage_openings(c.member3.seed, c.chain_id)
    for k, (name, opening) in enumerate(openings.items()):
        i = HONEST[k % len(HONEST)]
        with dial(c.p2p_ports[i]) as sock:
            opened, where = time.monotonic(), local_port(sock)
            opening(sock)
            lasted = lifetime(sock, opened, 3 * HANDSHAKE_TIMEOUT_S)
        # Refused for what it sent, not left to the handshake deadline.
        assert lasted < HANDSHAKE_TIMEOUT_S / 2, name
        c.wait_log(i, f"handshake with {LOCAL}:{where} failed: ", mark)
    c.commit_on_every_node()
    c.assert_alive()
    c.check_load(started)


@pytest.mark.timeout(60)
def test_a_stalled_handshake_is_dropped_at_the_deadline(consortium: Consortium) -> None:
    c = consortium
    started = time.monotonic()
    mark = c.log_mark()
    i = 0  # the primary of view 0: stalls must not slow what it orders
    port = c.p2p_ports[i]
    names: dict[socket.socket, str] = {}
    ports: dict[socket.socket, int] = {}
    watch = Watch()
    try:
        for name, opening in (
            ("silent", b""),
            ("half a length prefix", b"\x00\x00"),
            ("half a frame", b"\x00\x00\x00\x64" + bytes(10)),
            ("after message 2", None),
        ):
            sock = dial(port)
            opened, names[sock], ports[sock] = time.monotonic(), name, local_port(sock)
            if opening is None:
                start_handshake(sock, c.member3.seed, c.chain_id)
            else:
                sock.sendall(opening)
            watch.add(sock, opened)
        # While they hang, the cluster commits.
        c.commit_on_every_node()
        watch.finish(3 * HANDSHAKE_TIMEOUT_S)
    finally:
        watch.abort()
        for sock in names:
            sock.close()
    assert len(watch.lifetimes) == len(names), "a stalled handshake was never dropped"
    for sock, seconds in watch.lifetimes.items():
        print(f"stalled handshake ({names[sock]}) dropped after {seconds:.3f} s")
        assert HANDSHAKE_TIMEOUT_S - 0.05 <= seconds <= HANDSHAKE_TIMEOUT_S + 1.5, names[sock]
        c.wait_log(
            i,
            f"handshake with {LOCAL}:{ports[sock]} not done in "
            f"{HANDSHAKE_TIMEOUT_S:.1f} s; dropped",
            mark,
        )
    first_drop = min(watch.opened[s] + t for s, t in watch.lifetimes.items())
    assert c.load.committed_during(started, first_drop) >= 1
    c.assert_alive()
    c.check_load(started)


@pytest.mark.timeout(90)
def test_a_connection_storm_leaves_members_connected_and_the_cap_holds(
    consortium: Consortium,
) -> None:
    c = consortium
    started = time.monotonic()
    mark = c.log_mark()
    target = 2  # it accepts members 0 and 1: the node with the most to lose
    sessions_before = {p["index"]: p["sessions"] for p in c.status(target)["peers"]}
    ports: dict[socket.socket, int] = {}
    churned: list[socket.socket] = []
    watch = Watch()
    try:
        # Wave 1: 240 connections to one node that never finish the handshake (nothing
        # sent, or half a length prefix). At most MAX_UNAUTHENTICATED hold a handshake slot
        # at a time: the rest are refused at once, or take the slot of one that ranks
        # below them (``net.admission``) and lose it in turn to a later one.
        for k in range(240):
            sock = dial(c.p2p_ports[target])
            opened, ports[sock] = time.monotonic(), local_port(sock)
            if k % 2:
                send_quietly(sock, b"\x00\x00")
            watch.add(sock, opened)
        # Wave 2, while the slots are taken: 180 more of every kind, over all three.
        for k in range(180):
            sock_or_none = churn(c.p2p_ports[HONEST[k % 3]], k // 3, c.chain_id)
            if sock_or_none is not None:
                churned.append(sock_or_none)
        # Members keep ordering while the handshake slots are taken.
        c.commit_on_every_node()
        watch.finish(3 * HANDSHAKE_TIMEOUT_S)
        storm_ended = time.monotonic()  # wave 2's churned sockets are still open until now
    finally:
        watch.abort()
        for sock in churned:
            sock.close()
        for sock in ports:
            sock.close()
    held = watch.opened
    assert len(watch.lifetimes) == len(held), "the node left storm connections open"
    # One that kept a handshake slot is dropped at the deadline; one refused for the cap,
    # or evicted for a newer one, is closed well before.
    granted = [s for s, t in watch.lifetimes.items() if t >= HANDSHAKE_TIMEOUT_S * 0.75]
    early = [t for t in watch.lifetimes.values() if t < HANDSHAKE_TIMEOUT_S * 0.75]
    assert early, "no storm connection was refused"
    print(
        f"storm: {len(held)} held connections to node{target}: {len(granted)} kept a "
        f"handshake slot to the deadline, {len(early)} were refused or evicted before "
        f"(the slowest after {max(early):.3f} s)"
    )
    assert len(granted) <= MAX_UNAUTHENTICATED
    assert all(watch.lifetimes[s] <= HANDSHAKE_TIMEOUT_S + 1.5 for s in granted)
    assert c.load.committed_during(started, storm_ended) >= 1
    for sock in granted:
        c.wait_log(
            target,
            f"handshake with {LOCAL}:{ports[sock]} not done in "
            f"{HANDSHAKE_TIMEOUT_S:.1f} s; dropped",
            mark,
        )
    # The members' sessions with the node rode it out, not a single reconnection.
    for peer in c.status(target)["peers"]:
        if peer["index"] in HONEST:
            assert peer["connected"], peer
            assert peer["sessions"] == sessions_before[peer["index"]], peer
    c.assert_alive()

    # Afterwards, member 3 gets in again: each honest node calls member 3 anew once its
    # session is cut, and the stormed node completes a handshake with member 3's key
    # (then refuses the call by the rule that the lower member dials).
    for i in HONEST:
        sessions = c.member3.sessions[i]
        c.member3.link(i, sessions).shut()
        c.member3.link(i, sessions + 1)
    with dial(c.p2p_ports[target]) as sock:
        session = start_handshake(sock, c.member3.seed, c.chain_id)
        sock.sendall(noise_frame(session.write_handshake()))
        assert session.handshake_complete
    c.wait_log(target, f"member 3 dialled member {target}; the lower dials: refused", mark)
    c.commit_on_every_node()
    c.check_load(started)


@pytest.mark.timeout(90)
def test_a_flood_of_badly_signed_votes_from_a_member_does_not_stop_the_others(
    consortium: Consortium,
) -> None:
    c = consortium
    started = time.monotonic()
    mark = c.log_mark()
    rng = random.Random(3)
    received_before = {i: c.metric(i, RECEIVED) for i in HONEST}
    evidence_before = {i: c.metric(i, EQUIVOCATIONS) for i in HONEST}
    malformed_before = {i: c.metric(i, MALFORMED) for i in HONEST}
    floods: dict[int, list[Frame]] = {}
    for i in HONEST:
        status = c.status(i)
        view, low = status["view"], status["stable_checkpoint"]
        seqs = list(range(low + 1, low + 21))  # the window of the genesis' consensus params
        frames = list(forged_votes(VOTE_FLOOD_FRAMES, view, seqs, rng))
        nonsense = list(signed_nonsense(c.member3.signer, c.chain_id, view, low, seqs, rng))
        # Spread the signed ones through the forged ones.
        step = len(frames) // len(nonsense)
        for k, frame in enumerate(nonsense):
            frames.insert(k * (step + 1), frame)
        # Equivocation first, in the upper half of the window: the slots are then sure to
        # be live when it arrives, however long the rest takes and however far the
        # cluster moves meanwhile.
        frames[:0] = equivocations(c.member3.signer, c.chain_id, view, seqs[10:], rng)
        floods[i] = frames
    # Spread over a fixed time, so that "commits meanwhile" means the same on a fast
    # machine as on a slow one.
    bursts = 12
    flood_started = time.monotonic()
    sent = dict.fromkeys(HONEST, 0)
    for burst in range(bursts):
        for i in HONEST:
            size = -(-len(floods[i]) // bursts)
            part = floods[i][burst * size : (burst + 1) * size]
            sent[i] += c.member3.link(i).send_frames(part)
        time.sleep(max(0.0, flood_started + (burst + 1) * VOTE_FLOOD_S / bursts - time.monotonic()))
    flood_ended = time.monotonic()
    committed = c.load.committed_during(flood_started, flood_ended)
    for i in HONEST:
        read_all = partial(c.grew, i, RECEIVED, received_before[i], sent[i])
        eventually(read_all, 30, f"node{i} read the {sent[i]} frames")
    for i in HONEST:
        noticed = partial(c.grew, i, EQUIVOCATIONS, evidence_before[i])
        eventually(noticed, 10, f"node{i} reports member 3's equivocation")
        c.wait_log(i, "equivocation evidence: ReportEquivocation(member=3", mark)
    lured = [i for i in HONEST if c.member3.received[(i, "BlockRequest")]]
    print(
        f"vote flood: {sent} frames in {flood_ended - flood_started:.1f} s; {committed} load "
        f"submissions committed meanwhile; nodes that asked member 3 for blocks: {lured}"
    )
    # Every forged vote costs a signature check and waits in one line with the honest
    # members' votes: commits slow down when the nodes cannot keep up, but must go on.
    assert committed >= 2
    c.commit_on_every_node()

    # Last, a frame that is not msgpack: that session ends, and only that one.
    for i in HONEST:
        sessions = c.member3.sessions[i]
        c.member3.link(i, sessions).send_messages([b"\xc1 is never msgpack"])
        c.wait_log(i, f"member {i}: dropping member 3: malformed frame", mark)
        counted = partial(c.grew, i, MALFORMED, malformed_before[i])
        eventually(counted, 10, f"node{i} counts the malformed frame")
        c.member3.link(i, sessions + 1)
    c.commit_on_every_node()
    c.assert_alive()
    assert c.member3.errors == []
    c.check_load(started)


@pytest.mark.timeout(90)
def test_a_flood_of_badly_signed_transactions_in_gossip_does_not_stop_the_others(
    consortium: Consortium,
) -> None:
    """Gossip is how the primary learns of transactions submitted at other members, and
    admitting it means checking every transaction's signature: a gossip frame costs a
    node hundreds of times what a vote does, so it is the cheapest way to tie it up."""
    c = consortium
    byzantine = load_author(c.homes[BYZANTINE], pseudonyms=KeyedPseudonyms(TEST_KEY))
    signed = list(byzantine.sample_reports(256))
    # Only the signature is wrong, so each one is refused at the costliest check.
    forged = TxGossip(tuple(tx[:-1] + bytes([tx[-1] ^ 1]) for tx in signed))
    views_before = {i: c.status(i)["view"] for i in HONEST}
    started = time.monotonic()
    frames = 0
    while time.monotonic() < started + GOSSIP_FLOOD_S:
        for i in HONEST:
            frames += c.member3.link(i).send_frames([forged] * 20)
        time.sleep(0.25)
    ended = time.monotonic()
    committed = c.load.committed_during(started, ended)
    views = {i: c.status(i)["view"] for i in HONEST}
    print(
        f"gossip flood: {frames} frames of 256 forged transactions in {ended - started:.1f} s; "
        f"{committed} load submissions committed meanwhile; views {views_before} -> {views}"
    )
    assert committed >= 3
    c.commit_on_every_node()
    c.assert_alive()
    c.check_load(started)


@pytest.mark.timeout(90)
def test_after_all_that_member_3_joins_as_a_process_and_all_four_agree(
    consortium: Consortium,
) -> None:
    c = consortium
    started = time.monotonic()
    c.assert_alive()
    # Nothing has held member 3's API port since the consortium was made, and other tests
    # on this machine pick ports at random too: take one that is free now.
    config = c.homes[BYZANTINE] / "config.toml"
    api_port = free_port_block(1)
    old_listen = f'listen = "{c.api_urls[BYZANTINE].removeprefix("http://")}"'
    assert old_listen in config.read_text()
    config.write_text(config.read_text().replace(old_listen, f'listen = "{LOCAL}:{api_port}"'))
    c.api_urls[BYZANTINE] = f"http://{LOCAL}:{api_port}"
    c.http.auth = HomeTokens(c.homes)  # member 3's token, at its new port
    # The real member 3 takes over its p2p address from the test's stand-in.
    c.member3.stop()
    c.pids[BYZANTINE] = spawn(NodeProcess(c.homes[BYZANTINE]))

    def joined() -> bool:
        c.assert_alive([BYZANTINE])
        try:
            status = c.status(BYZANTINE)
        except httpx.HTTPError:
            return False
        return all(p["connected"] for p in status["peers"])

    def situation() -> str:
        views = {
            i: [(p["index"], p["connected"], p["last_error"]) for p in c.status(i)["peers"]]
            for i in HONEST
        }
        return f"honest nodes' peers: {views}; node3's log ends:\n{c.tail(BYZANTINE)}"

    eventually(joined, 30, "member 3 connected to the honest members", situation)
    eventually(
        lambda: c.status(BYZANTINE)["height"] >= c.status(0)["height"] - 1,
        30,
        "member 3 caught up",
    )
    with ApiClient(c.api_urls[BYZANTINE], timeout_s=5.0) as client:
        txs = list(c.author.sample_reports(3, first=random.randrange(10**8)))
        code, body = client.submit(txs, wait=True, timeout_s=COMMIT_WAIT_S)
    assert code == 200, body
    c.check_load(started)
    c.load.stop()

    everyone = (*HONEST, BYZANTINE)

    def agreed() -> bool:
        tips = {(s["height"], s["tip_hash"]) for s in map(c.status, everyone)}
        return len(tips) == 1

    eventually(agreed, 20, "all four at the same height with the same tip")
    c.assert_alive(everyone)
    for i in everyone:
        problems = [line for line in c.log(i) if line["level"] not in {"debug", "info", "warning"}]
        assert problems == [], f"node{i}: {problems[:3]}"
        assert "Traceback" not in (c.homes[i] / "node.log").read_text()

    # And they still stop cleanly.
    for i in everyone:
        os.kill(c.pids[i], signal.SIGTERM)
    for i in everyone:
        deadline = time.monotonic() + 20
        while True:
            pid, status = os.waitpid(c.pids[i], os.WNOHANG)
            if pid or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert pid == c.pids[i], f"node{i} did not stop within 20 s of SIGTERM"
        assert os.waitstatus_to_exitcode(status) == 0, f"node{i}: {c.tail(i)}"
        assert c.log(i)[-1]["message"].startswith("stopped cleanly at height ")
