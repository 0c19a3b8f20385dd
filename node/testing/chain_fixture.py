"""A long certified chain written straight into members' stores, for catch-up tests and
benchmarks.

Committing 100,000 blocks through consensus takes far longer than the catch-up it is
meant to measure, so this writes what consensus would have left behind instead: blocks
of signed report transactions from every member, each block with a commit certificate
signed by a quorum of the members' real keys, indexed by the same ``Application`` a node
uses, and a stable checkpoint signed by the same quorum. A node that syncs these blocks
checks them exactly as it checks any others: nothing here is trusted by the receiver.

The stable checkpoint matters: a replica only accepts proposals within ``window`` of its
stable checkpoint, so without it the members holding the chain could never order the
next block.

``CatchupScenario`` runs the whole catch-up with real node processes on such a chain; the
catch-up benchmark and its test share it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.blocks import (
    COMMIT_KIND,
    GENESIS_PARENT,
    Batch,
    Block,
    Certificate,
    CommitSignature,
    commit_body,
)
from consensus.crypto import signing_bytes
from consensus.durable import RECORDS, StableRecord
from consensus.messages import Checkpoint, sign
from node.client.http import ApiClient, ApiClientError, api_url_of_home
from node.client.pseudonyms import author_for_home
from node.identifiers.pseudonym import EntityRef
from node.ledger.application import Application
from node.ledger.authoring import Author, PseudonymSource, load_author, sample_identifiers
from node.ledger.kinds import Report
from node.ledger.layout import BlockIndex
from node.ledger.store import LedgerStore
from node.ledger.transactions import encode_tx, make_tx
from node.ops import processes
from node.ops.ports import free_port_block
from node.setup.config import load_config
from node.setup.provision import make_testnet
from node.testing.dealer import KeyedPseudonyms, key_from_label, redeal_homes

# Blocks per write transaction: large enough that fsync is a small share of the cost.
WRITE_GROUP = 1000
# Distinct phone numbers reported on; fewer than the transactions, so entities repeat
# and the entity index holds real posting lists, as on a ledger in use.
ENTITY_POOL = 5000
# The pseudonym key the scenario's consortium is dealt (``node.testing.dealer``), so the
# chain written offline names entities as the running nodes evaluate them.
CHAIN_KEY = key_from_label("chain-fixture")


@dataclass(frozen=True)
class ChainSummary:
    blocks: int
    txs: int
    tip_hash: bytes
    stable_seq: int
    seconds: float


def data_dir_of(home: Path) -> Path:
    return load_config(home / "config.toml").node.data_dir


def build_chain(
    homes: Sequence[Path],
    holders: Sequence[int],
    blocks: int,
    *,
    min_txs: int = 1,
    max_txs: int = 5,
    seed: int = 1,
    progress: Callable[[int], None] | None = None,
    pseudonyms: PseudonymSource | None = None,
) -> ChainSummary:
    """Write ``blocks`` certified blocks into the (empty) stores of the members whose
    indexes are in ``holders``; ``homes`` are all members' homes, in member order (every
    member reports, and the certificates and checkpoint are signed by a quorum).

    ``pseudonyms`` names the reported entities; by default ``CHAIN_KEY``'s, which is the
    consortium's own once its homes were dealt that key (``redeal_homes``)."""
    if blocks < 1 or not 1 <= min_txs <= max_txs:
        raise ValueError("need at least one block and 1 <= min_txs <= max_txs")
    started = time.perf_counter()
    authors = [load_author(home) for home in homes]
    genesis = authors[0].genesis
    membership = genesis.membership()
    if not holders or not set(holders) <= set(range(membership.n)):
        raise ValueError(f"holders must be member indexes below {membership.n}")
    chain_id = genesis.chain_id
    # The holders sign when they are a quorum, as they would have; else the first members.
    quorum = membership.quorum
    signers = list(holders)[:quorum] if len(holders) >= quorum else list(range(quorum))
    rng = random.Random(seed)
    source = pseudonyms if pseudonyms is not None else KeyedPseudonyms(CHAIN_KEY)
    entities = source.refs(sample_identifiers(ENTITY_POOL))
    nonces = [0] * len(authors)
    # One block a second, ending now: timestamps look like a chain that ran for a while.
    start_ms = int(time.time() * 1000) - blocks * 1000
    params = genesis.consensus
    stable_seq = blocks - blocks % params.checkpoint_interval

    first, rest = holders[0], holders[1:]
    first_dir = data_dir_of(homes[first])
    txs_total = 0
    tip_hash = GENESIS_PARENT
    stable_hash = GENESIS_PARENT
    with LedgerStore.open(
        first_dir, chain_id=genesis.chain_id, genesis_hash=genesis.hash()
    ) as store:
        if store.tip()[0] != 0:
            raise ValueError(f"{first_dir} already holds blocks")
        app = Application(genesis, store)
        for group_start in range(1, blocks + 1, WRITE_GROUP):
            group: list[tuple[Block, Certificate]] = []
            for height in range(group_start, min(group_start + WRITE_GROUP, blocks + 1)):
                time_ms = start_ms + height * 1000
                txs = []
                for _ in range(rng.randint(min_txs, max_txs)):
                    who = rng.randrange(len(authors))
                    nonces[who] += 1
                    txs.append(
                        _report(authors[who], rng.choice(entities), nonces[who], time_ms - 500)
                    )
                batch = Batch(height, time_ms, tuple(txs))
                block = Block.from_batch(chain_id, batch, tip_hash)
                digest = batch.digest(chain_id)
                message = signing_bytes(chain_id, COMMIT_KIND, commit_body(0, height, digest))
                signatures = tuple(
                    CommitSignature(i, authors[i].signer.sign(message)) for i in signers
                )
                group.append((block, Certificate(0, height, digest, signatures)))
                tip_hash = block.hash()
                if height == stable_seq:
                    stable_hash = tip_hash
                txs_total += len(txs)
            indexes: list[BlockIndex] = app.index_blocks([b for b, _ in group])
            store.append_blocks(
                [(b, c, index) for (b, c), index in zip(group, indexes, strict=True)]
            )
            if progress is not None:
                progress(height)
        if stable_seq:
            proof = tuple(
                sign(
                    Checkpoint,
                    authors[i].signer,
                    chain_id,
                    seq=stable_seq,
                    block_hash=stable_hash,
                    sender=i,
                )
                for i in signers
            )
            store.append_consensus_records([RECORDS.encode(StableRecord(stable_seq, proof))])
    # The stores are byte-for-byte what each holder would have: copy the finished file
    # (LMDB makes its lock file anew) instead of writing every block again.
    for other in rest:
        target = data_dir_of(homes[other])
        if (target / "data.mdb").exists():
            raise ValueError(f"{target} already holds a store")
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(first_dir / "data.mdb", target / "data.mdb")
        os.chmod(target / "data.mdb", 0o600)
    return ChainSummary(
        blocks=blocks,
        txs=txs_total,
        tip_hash=tip_hash,
        stable_seq=stable_seq,
        seconds=time.perf_counter() - started,
    )


def _report(author: Author, subject: EntityRef, nonce: int, time_ms: int) -> bytes:
    body = Report(
        subject=subject,
        category="fraud_call",
        attributes=(),
        case_id=None,
        observed_ms=time_ms - 60_000,
        details_commitment=None,
    )
    tx = make_tx(
        author.signer, author.genesis.chain_id, author.member, "report", body, nonce, time_ms
    )
    return encode_tx(tx)


# ---------------------------------------------------------------------- the scenario


class ScenarioError(AssertionError):
    """The catch-up scenario did not go as it must; the message says which step."""


@dataclass
class CatchupResult:
    blocks: int
    txs: int
    generation_s: float
    # From spawning the empty member until its API answered, and until its ledger
    # held the whole generated chain.
    api_ready_s: float
    catchup_s: float
    peak_rss_bytes: int
    # Resident memory of member 3 at the tip that is its own (VmHWM above also counts
    # the LMDB file pages it touched, which the page cache shares and can reclaim).
    anon_rss_bytes: int
    server_peak_rss_bytes: int
    # Member 3's stable checkpoint on reaching the tip (0: it could not vote yet).
    stable_at_tip: int
    # Committing without member 2, which needs member 3's votes; the view it took.
    without_member_2_s: float
    view_after: int
    final_height: int
    compared_heights: list[int]


def memory_bytes(pid: int, field: str = "VmHWM") -> int:
    """A memory figure of a process from /proc (VmHWM: peak resident set; VmRSS: now),
    0 if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class CatchupScenario:
    """Four members as real ``crosstrace start`` processes: members 0-2 hold a generated
    chain, member 3 starts with an empty store and must reach the tip by itself, then
    take part in consensus (it has to: the scenario stops member 2 at the end)."""

    def __init__(
        self,
        base: Path,
        blocks: int,
        *,
        seed: int = 1,
        poll_s: float = 0.2,
        profile: Path | None = None,
        report: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.base = base
        self.profile = profile
        self.blocks = blocks
        self.seed = seed
        self.poll_s = poll_s
        self.report = report
        self.homes: list[Path] = []
        self.urls: list[str] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    # -------------------------------------------------------------- processes

    def start(self, index: int, command: list[str] | None = None) -> int:
        home = self.homes[index]
        argv = command if command is not None else processes.node_command(home)
        with (home / processes.LOG_FILE).open("ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        self.procs[index] = proc
        return proc.pid

    def alive(self, index: int) -> bool:
        return self.procs[index].poll() is None

    def stop_all(self) -> None:
        """SIGTERM every node this scenario started, SIGKILL those still up after a
        grace period; never raises, so it can run in a ``finally``."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + processes.STOP_TIMEOUT_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def kill(self, index: int) -> None:
        proc = self.procs.pop(index)
        proc.kill()
        proc.wait()

    def log_tail(self, index: int) -> str:
        return processes.last_log_line(processes.NodeProcess(self.homes[index]))

    def status(self, index: int) -> dict[str, Any] | None:
        try:
            with ApiClient(self.urls[index], timeout_s=5.0) as client:
                return client.status()
        except ApiClientError:
            return None

    def wait_height(self, index: int, height: int, deadline: float) -> dict[str, Any]:
        while True:
            if not self.alive(index):
                raise ScenarioError(f"member {index} exited; its log ends: {self.log_tail(index)}")
            status = self.status(index)
            if status is not None and status["height"] >= height:
                return status
            if time.monotonic() > deadline:
                seen = None if status is None else status["height"]
                raise ScenarioError(
                    f"member {index} is at height {seen}, not {height}; log: {self.log_tail(index)}"
                )
            time.sleep(self.poll_s)

    # -------------------------------------------------------------- the run

    def run(self, timeout_s: float) -> CatchupResult:
        deadline = time.monotonic() + timeout_s
        rng = random.Random(f"{self.seed}/{os.getpid()}/{time.time_ns()}")
        base = free_port_block(4, offsets=(0, 4), rng=rng)
        p2p, api = base, base + 4
        _, homes = make_testnet(self.base, 4, p2p_base_port=p2p, api_base_port=api)
        self.homes = [h.path for h in homes]
        # The chain is written offline with CHAIN_KEY's pseudonyms: deal the members
        # that key before any node starts.
        redeal_homes(self.homes, CHAIN_KEY)
        self.urls = [api_url_of_home(h) for h in self.homes]

        step = max(self.blocks // 20, WRITE_GROUP)
        shown = [0]

        def generated(height: int) -> None:
            if height - shown[0] >= step or height == self.blocks:
                shown[0] = height
                self.report(f"generated {height:,} blocks ({time.perf_counter() - t0:.1f} s)")

        t0 = time.perf_counter()
        chain = build_chain(self.homes, [0, 1, 2], self.blocks, seed=self.seed, progress=generated)
        self.report(
            f"chain: {chain.blocks:,} blocks, {chain.txs:,} transactions, stable checkpoint "
            f"{chain.stable_seq:,}, generated in {chain.seconds:.1f} s"
        )
        for i in (0, 1, 2):
            self.start(i)
        for i in (0, 1, 2):
            self.wait_height(i, self.blocks, deadline)
        self.report("members 0-2 are up at the tip; starting member 3 with an empty store")

        started = time.perf_counter()
        command = None
        if self.profile is not None:
            # cProfile writes the file when the node exits cleanly (on SIGTERM).
            command = [sys.executable, "-m", "cProfile", "-o", str(self.profile), "-m", "cli"]
            command += ["start", "--home", str(self.homes[3])]
        pid = self.start(3, command)
        api_ready = None
        stable_at_tip = 0
        last_report = started
        while True:
            if not self.alive(3):
                raise ScenarioError(f"member 3 exited; its log ends: {self.log_tail(3)}")
            status = self.status(3)
            now = time.perf_counter()
            if status is not None and api_ready is None:
                api_ready = now - started
            height = 0 if status is None else int(status["height"])
            if status is not None and height >= self.blocks:
                stable_at_tip = int(status["stable_checkpoint"])
                break
            if now - last_report >= 5.0:
                last_report = now
                rss = memory_bytes(pid, "VmRSS")
                self.report(
                    f"member 3 at {height:,}/{self.blocks:,} after {now - started:.1f} s "
                    f"({height / (now - started):,.0f} blocks/s, RSS {rss / 2**20:.0f} MiB)"
                )
            if time.monotonic() > deadline:
                raise ScenarioError(
                    f"member 3 reached only height {height} of {self.blocks} in time; "
                    f"its log ends: {self.log_tail(3)}"
                )
            time.sleep(self.poll_s)
        catchup_s = time.perf_counter() - started
        peak = memory_bytes(pid)
        anon = memory_bytes(pid, "RssAnon")
        server_peak = max(memory_bytes(self.procs[i].pid) for i in (0, 1, 2))
        self.report(
            f"member 3 reached {self.blocks:,} in {catchup_s:.1f} s "
            f"({self.blocks / catchup_s:,.0f} blocks/s), peak RSS {peak / 2**20:.0f} MiB "
            f"({anon / 2**20:.0f} MiB anonymous at the tip), stable checkpoint {stable_at_tip:,}"
        )

        # Pseudonyms from member 1's node: evaluated by the running members together.
        author = author_for_home(self.homes[1])
        # Through member 3's API: it must gossip them on and then store the blocks.
        self._commit(3, list(author.sample_reports(10, first=1_000_000)))
        tip = self._agree([0, 1, 2, 3], deadline)
        self.report(f"new transactions committed; all four members at height {tip:,}")
        # Without member 2, no quorum forms unless member 3 votes: proof that it is a
        # working member again, not only a follower of the others' blocks.
        self.kill(2)
        before = time.perf_counter()
        self._commit(0, list(author.sample_reports(10, first=2_000_000)))
        without_2 = time.perf_counter() - before
        final = self._agree([0, 1, 3], deadline)
        view = max(int((self.status(i) or {"view": -1})["view"]) for i in (0, 1, 3))
        self.report(
            f"with member 2 stopped, members 0, 1 and 3 committed up to {final:,} "
            f"in {without_2:.1f} s (view {view})"
        )
        compared = self._compare(final, rng)
        self.report(f"block hashes equal on every running member at {len(compared)} heights")
        return CatchupResult(
            blocks=self.blocks,
            txs=chain.txs,
            generation_s=chain.seconds,
            api_ready_s=api_ready if api_ready is not None else catchup_s,
            catchup_s=catchup_s,
            peak_rss_bytes=peak,
            anon_rss_bytes=anon,
            server_peak_rss_bytes=server_peak,
            stable_at_tip=stable_at_tip,
            without_member_2_s=without_2,
            view_after=view,
            final_height=final,
            compared_heights=compared,
        )

    def _commit(self, via: int, txs: list[bytes]) -> None:
        with ApiClient(self.urls[via], timeout_s=10.0) as client:
            code, answer = client.submit(txs, wait=True, timeout_s=30.0)
        if code != 200:
            raise ScenarioError(f"member {via} did not commit the transactions: {code} {answer}")

    def _agree(self, members: list[int], deadline: float) -> int:
        """Wait until ``members`` stand at one height, and return it."""
        while True:
            heights = []
            for i in members:
                status = self.status(i)
                heights.append(-1 if status is None else int(status["height"]))
            if len(set(heights)) == 1 and heights[0] > self.blocks:
                return heights[0]
            if time.monotonic() > deadline:
                raise ScenarioError(f"members {members} stay at heights {heights}")
            time.sleep(self.poll_s)

    def _compare(self, tip: int, rng: random.Random) -> list[int]:
        heights = sorted(
            {1, self.blocks // 2, self.blocks, *range(self.blocks + 1, tip + 1)}
            | set(rng.sample(range(1, self.blocks + 1), min(20, self.blocks)))
        )
        running = sorted(self.procs)
        clients = [ApiClient(self.urls[i], timeout_s=10.0) for i in running]
        try:
            for height in heights:
                views = [client.block(height) for client in clients]
                hashes = {(v["hash"], tuple(v["tx_ids"])) for v in views}
                if len(hashes) != 1:
                    raise ScenarioError(f"members {running} disagree on block {height}: {views}")
        finally:
            for client in clients:
                client.close()
        return heights
