"""The simulation loop: a heap of timed events, replicas stepped one event at a time."""

from __future__ import annotations

import heapq
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from consensus.blocks import GENESIS_PARENT, Block, Certificate
from consensus.crypto import Signer, hash_bytes
from consensus.durable import DurableState, ViewRecord
from consensus.events import (
    Action,
    Broadcast,
    CancelTimer,
    CommitBlock,
    Event,
    MessageArrived,
    Persist,
    RejectRequest,
    ReportEquivocation,
    RequestArrived,
    Send,
    SetTimer,
    Start,
    Timer,
    TimerFired,
)
from consensus.membership import Membership
from consensus.messages import (
    BlockRequest,
    BlockResponse,
    CertifiedBatch,
    Message,
    Proposal,
)
from consensus.replica import Replica
from consensus.requests import request_id
from consensus.simulator.byzantine import BEHAVIOURS, Behaviour, client_of
from consensus.simulator.checker import Checker, Violation
from consensus.simulator.plan import TWINS_SPLIT_END_MS, FaultPlan, Partition
from consensus.simulator.trace import format_entry

CHAIN_ID = "sim"
# Far above any honest load (a few thousand steps per member per virtual second).
STORM_WINDOW_MS = 1_000
STORM_STEPS_PER_MEMBER = 25_000


class LoweredQuorum(Membership):
    """Test double for negative controls: replicas that count too few votes."""

    lowered_by: int = 0

    @property
    def quorum(self) -> int:
        return super().quorum - self.lowered_by


def sim_signer(member: int) -> Signer:
    return Signer(hash_bytes("sim-key", member.to_bytes(4, "big")))


@dataclass
class SimNode:
    instance: int
    member: int
    behaviour: Behaviour
    replica: Replica
    durable: DurableState = field(default_factory=DurableState)
    ledger: list[tuple[Block, Certificate]] = field(default_factory=list)
    up: bool = True
    incarnation: int = 0
    timer_gen: dict[Timer, int] = field(default_factory=dict)
    commit_times: list[int] = field(default_factory=list)
    # A slow member: until when it is busy, and the slots it was charged for proposing.
    busy_until: int = 0
    charged: set[tuple[int, int]] = field(default_factory=set)

    @property
    def height(self) -> int:
        return len(self.ledger)


@dataclass
class SimResult:
    plan: FaultPlan
    violation: Violation | None
    trace: list[str]
    heights: dict[int, int]
    honest_instances: list[int]
    virtual_ms: int
    steps: int
    view_changes: int
    max_view: int
    messages: Counter[str]
    latencies_ms: list[int]
    # The client of each request in ``latencies_ms``, in the same order.
    committed_clients: list[int]
    txs_committed: int
    evidence: list[tuple[int, str, int, int]]
    verifications: int
    requests_offered: int
    # Offered requests no honest replica committed by the end of the run.
    requests_uncommitted: int
    # The longest an honest replica went without executing a block (up to the first
    # suspicion, if any): what the request timer's lack-of-progress rule looks at.
    max_commit_gap_ms: int
    first_suspicion_ms: int | None

    @property
    def safe(self) -> bool:
        return self.violation is None


# Event kinds, ordered for determinism when two events share a time.
_DELIVER, _REQUEST, _TIMER, _INJECT, _CRASH, _RESTART, _RESUBMIT = range(7)

# With a finite load (``FaultPlan.requests``) every request must commit, so clients do
# what real ones do with a request a crash or a partition lost: submit it again, after
# this long without seeing it committed.
CLIENT_RETRY_MS = 5_000


class Simulation:
    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        n = plan.nodes
        self.signers = [sim_signer(i) for i in range(n)]
        keys = tuple(s.public_key for s in self.signers)
        self.membership = Membership(CHAIN_ID, keys)
        replica_membership: Membership = self.membership
        if plan.lower_quorum_by:
            weak = LoweredQuorum(CHAIN_ID, keys)
            object.__setattr__(weak, "lowered_by", plan.lower_quorum_by)
            replica_membership = weak
        self.replica_membership = replica_membership
        kinds = {b.member: b.kind for b in plan.byzantine}
        self.honest = {
            m for m in range(n) if m not in kinds or BEHAVIOURS[kinds[m]].counts_as_honest
        }
        self.checker = Checker(self.membership, self.honest)
        self.nodes: list[SimNode] = []
        for member in range(n):
            self._add_instance(member, kinds.get(member, "honest"))
        twinned = [m for m, k in sorted(kinds.items()) if k == "twins"]
        for member in twinned:
            self._add_instance(member, "twins")
        self.instances_of: dict[int, list[int]] = {}
        for node in self.nodes:
            self.instances_of.setdefault(node.member, []).append(node.instance)
        self.partitions = list(plan.partitions)
        if twinned and plan.twins_split:
            self.partitions.append(self._twins_partition(twinned))
        self.queue: list[tuple[int, int, int, Any]] = []
        self.order = 0
        self.now = 0
        self.steps = 0
        self.messages: Counter[str] = Counter()
        # Raw entries, formatted only when a report needs them: formatting every
        # delivery would cost more than the consensus work being simulated.
        self.trace: deque[tuple[Any, ...]] = deque(maxlen=plan.trace_lines)
        self.injected: dict[bytes, int] = {}
        self.latencies: list[int] = []
        self.committed_clients: list[int] = []
        self.evidence: list[tuple[int, str, int, int]] = []
        self.request_no = 0
        self.faults_end = plan.faults_end_ms()
        self.views_entered: set[int] = set()
        # When an honest replica first left a view (suspected its primary, or followed
        # others who did).
        self.first_suspicion_ms: int | None = None
        self.storm_window = 0
        self.storm_steps = 0

    # ------------------------------------------------------------------ set-up

    def _new_replica(self, node_member: int, durable: DurableState, ledger: list[Any]) -> Replica:
        tip_hash = ledger[-1][0].hash() if ledger else GENESIS_PARENT
        return Replica(
            node_member,
            self.signers[node_member],
            self.replica_membership,
            self.plan.params,
            durable=durable,
            tip_height=len(ledger),
            tip_hash=tip_hash,
        )

    def _add_instance(self, member: int, kind: str) -> None:
        behaviour = BEHAVIOURS[kind](
            member,
            self.plan.nodes,
            self.signers[member],
            CHAIN_ID,
            random.Random(self.rng.random()),
        )
        node = SimNode(
            instance=len(self.nodes),
            member=member,
            behaviour=behaviour,
            replica=self._new_replica(member, DurableState(), []),
        )
        self.nodes.append(node)

    def _twins_partition(self, twinned: list[int]) -> Partition:
        """Originals with half the honest members, twins with the other half: with f+1
        twinned members both sides reach a quorum, which must break agreement."""
        honest = sorted(self.honest)
        half = (len(honest) + 1) // 2
        left = [*twinned, *honest[:half]]
        right = [n.instance for n in self.nodes if n.instance >= self.plan.nodes] + honest[half:]
        return Partition(0, TWINS_SPLIT_END_MS, (tuple(sorted(left)), tuple(sorted(right))))

    # ------------------------------------------------------------------ scheduling

    def _push(self, at: int, kind: int, data: Any) -> None:
        self.order += 1
        heapq.heappush(self.queue, (at, kind, self.order, data))

    def _connected(self, a: int, b: int) -> bool:
        for p in self.partitions:
            if p.start_ms <= self.now < p.end_ms:
                ga = next((i for i, g in enumerate(p.groups) if a in g), -1)
                gb = next((i for i, g in enumerate(p.groups) if b in g), -1)
                if ga != gb:
                    return False
        return True

    def _delay(self) -> int:
        plan = self.plan
        delay = self.rng.randint(plan.min_delay_ms, plan.max_delay_ms)
        if plan.reorder_rate and self.rng.random() < plan.reorder_rate:
            delay += self.rng.randint(plan.max_delay_ms, 5 * plan.max_delay_ms)
        return delay

    def _transmit(self, src: int, dst_member: int, message: Message) -> None:
        kind = type(message).__name__
        for dst in self.instances_of[dst_member]:
            if dst == src:
                continue
            self.messages[kind] += 1
            if not self._connected(src, dst):
                continue
            if self.plan.drop_rate and self.rng.random() < self.plan.drop_rate:
                continue
            self._push(self.now + self._delay(), _DELIVER, (dst, src, message))
            if self.plan.duplicate_rate and self.rng.random() < self.plan.duplicate_rate:
                self._push(self.now + self._delay(), _DELIVER, (dst, src, message))

    # ------------------------------------------------------------------ stepping

    def _step(self, node: SimNode, event: Event) -> None:
        if not node.up or not node.behaviour.runs:
            return
        self.steps += 1
        actions = node.replica.step(event, self.now)
        cost = self._processing_ms(node, actions)
        if not cost:
            for action in actions:
                self._carry_out(node, action)
            return
        # A slow member's step takes time: what it decided leaves when it is done, and
        # the events that arrive meanwhile wait (``_busy``).
        node.busy_until = self.now + cost
        now, self.now = self.now, node.busy_until
        for action in actions:
            self._carry_out(node, action)
        self.now = now

    def _processing_ms(self, node: SimNode, actions: list[Action]) -> int:
        """Time a slow member spends on a step: per request in each proposal it makes
        for the first time (a resent proposal costs nothing more)."""
        if not node.behaviour.slow:
            return 0
        requests = 0
        for action in actions:
            if isinstance(action, Broadcast) and isinstance(action.message, Proposal):
                pre_prepare = action.message.pre_prepare
                if (pre_prepare.view, pre_prepare.seq) not in node.charged:
                    node.charged.add((pre_prepare.view, pre_prepare.seq))
                    requests += len(action.message.batch.txs)
        return requests * self.plan.slow_cost_ms()

    def _busy(self, instance: int, kind: int, data: Any) -> bool:
        """Put an event for a slow member that is still busy back until it is free."""
        node = self.nodes[instance]
        if node.busy_until <= self.now:
            return False
        self._push(node.busy_until, kind, data)
        return True

    def _carry_out(self, node: SimNode, action: Action) -> None:
        match action:
            case Persist(records):
                node.durable.apply_all(records)
                views = [r for r in records if isinstance(r, ViewRecord)]
                if node.member in self.honest:
                    self.views_entered.update(r.view for r in views if r.active)
                    if self.first_suspicion_ms is None and any(not r.active for r in views):
                        self.first_suspicion_ms = self.now
                if views and self.plan.gossip_share < 1.0:
                    self._forward_pending(node, views[-1].view)
            case Send(to, message):
                self._send(node, to, message)
            case Broadcast(message):
                self._send(node, None, message)
            case CommitBlock(block, cert):
                self._commit(node, block, cert)
            case SetTimer(timer, delay):
                gen = node.timer_gen.get(timer, 0) + 1
                node.timer_gen[timer] = gen
                self._push(self.now + delay, _TIMER, (node.instance, node.incarnation, timer, gen))
            case CancelTimer(timer):
                node.timer_gen[timer] = node.timer_gen.get(timer, 0) + 1
            case ReportEquivocation(member, kind, view, seq):
                self.evidence.append((member, kind, view, seq))
            case RejectRequest():
                pass

    def _send(self, node: SimNode, to: int | None, message: Message) -> None:
        for dest, msg in node.behaviour.outgoing(to, message):
            self.checker.on_send(self.now, node.instance, node.member, msg)
            targets = range(self.plan.nodes) if dest is None else (dest,)
            for member in targets:
                if member != node.member or dest is not None:
                    self._transmit(node.instance, member, msg)

    def _commit(self, node: SimNode, block: Block, cert: Certificate) -> None:
        parent = node.ledger[-1][0].hash() if node.ledger else GENESIS_PARENT
        if block.header.height != node.height + 1:
            self.checker.fail(
                "monotone",
                self.now,
                f"n{node.instance} committed height {block.header.height} after {node.height}",
            )
            return
        self.checker.on_commit(self.now, node.instance, node.member, parent, block, cert)
        node.ledger.append((block, cert))
        node.commit_times.append(self.now)
        if node.member in self.honest:
            for tx in block.txs:
                started = self.injected.pop(request_id(tx), None)
                if started is not None:
                    self.latencies.append(self.now - started)
                    self.committed_clients.append(client_of(tx))
        if self.trace.maxlen:
            self.trace.append((self.now, node.instance, "commit", block, cert))

    def _deliver(self, dst: int, src: int, message: Message) -> None:
        node = self.nodes[dst]
        if not node.up:
            return
        if self.trace.maxlen:
            self.trace.append((self.now, dst, "deliver", src, message))
        node.behaviour.received(message)
        if isinstance(message, BlockRequest):
            self._serve_blocks(node, src, message)
            return
        self._step(node, MessageArrived(self.nodes[src].member, message))

    def _serve_blocks(self, node: SimNode, src: int, req: BlockRequest) -> None:
        if not node.behaviour.runs or not req.verify(self.membership):
            return
        last = min(req.to_height, req.from_height + self.plan.params.sync_batch_blocks - 1)
        entries = tuple(
            CertifiedBatch(b.to_batch(), c) for b, c in node.ledger[req.from_height - 1 : last]
        )
        self._send(node, self.nodes[src].member, BlockResponse(entries))

    def _inject(self) -> None:
        if self.plan.requests and self.request_no >= self.plan.requests:
            return  # the clients offered all they had
        self.request_no += 1
        payload = self.request_no.to_bytes(8, "big") + bytes(
            self.rng.getrandbits(8) for _ in range(self.plan.request_bytes - 8)
        )
        self.injected[request_id(payload)] = self.now
        weights = self.plan.entry_weights
        if weights:
            entry = self.rng.choices(range(len(weights)), weights)[0]
        else:
            entry = self.rng.randrange(len(self.nodes))
        gossip = self._gossip_targets(entry)
        self._submit(payload, entry, gossip)
        if self.plan.requests:
            self._push(self.now + CLIENT_RETRY_MS, _RESUBMIT, (payload, entry, gossip))
        self._push(self.now + self.plan.request_interval_ms, _INJECT, None)

    def _resubmit(self, payload: bytes, entry: int, gossip: frozenset[int] | None) -> None:
        """To the same member (the client's own bank), which passes it on as it did
        the first time. Passed on to members that had not got it before, an old request
        would reach them late, behind requests the primary holds after it, and look to
        them as if the primary had passed those over for it."""
        if request_id(payload) in self.injected:
            self._submit(payload, entry, gossip)
            self._push(self.now + CLIENT_RETRY_MS, _RESUBMIT, (payload, entry, gossip))

    def _gossip_targets(self, entry: int) -> frozenset[int] | None:
        """The instances, besides the entry and the primary, that the entry's host
        gossips a request to; None for all of them."""
        if self.plan.gossip_share >= 1.0:
            return None
        return frozenset(
            node.instance
            for node in self.nodes
            if node.instance != entry and self.rng.random() < self.plan.gossip_share
        )

    def _submit(self, payload: bytes, entry: int, gossip: frozenset[int] | None) -> None:
        """A client submits to one member, whose host gossips it (or forwards it)."""
        # The member the entry's host forwards to: the primary as its replica sees it.
        forwarded_to = self.nodes[entry].replica.primary
        for node in self.nodes:
            if not self._connected(entry, node.instance):
                continue
            chosen = node.instance == entry or node.member == forwarded_to
            if gossip is not None and not chosen and node.instance not in gossip:
                continue
            if self.plan.drop_rate and self.rng.random() < self.plan.drop_rate:
                continue
            self._push(self.now + self._delay(), _REQUEST, (node.instance, payload))

    def _forward_pending(self, node: SimNode, view: int) -> None:
        """Without full gossip, a host forwards what its member holds to the primary
        of each view its member asks for or enters, which may never have heard of it
        (it was cut off when the request came, or was not primary then)."""
        primary = self.membership.primary(view)
        for instance in self.instances_of[primary]:
            if instance == node.instance or not self._connected(node.instance, instance):
                continue
            for pending in node.replica.requests.pending.values():
                self._push(self.now + self._delay(), _REQUEST, (instance, pending.payload))

    # ------------------------------------------------------------------ the run

    def honest_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes if n.member in self.honest]

    def _done(self) -> bool:
        if self.plan.requests:
            if self.request_no < self.plan.requests or self.injected:
                return False
            heights = {node.height for node in self.honest_nodes()}
            # Committed everywhere, so every replica recovered from whatever faults
            # there were: with the load drained, no later block would come to show it.
            return len(heights) == 1 and min(heights) >= self.plan.blocks
        for node in self.honest_nodes():
            if node.height < self.plan.blocks:
                return False
            if self.faults_end and (
                not node.commit_times or node.commit_times[-1] < self.faults_end
            ):
                return False
        return True

    def _check_storm(self) -> None:
        """Messages that breed messages without virtual time moving: a storm would
        otherwise hang the run, since every liveness bound is in virtual time."""
        window = self.now // STORM_WINDOW_MS
        if window != self.storm_window:
            self.storm_window, self.storm_steps = window, self.steps
        elif self.steps - self.storm_steps > STORM_STEPS_PER_MEMBER * self.plan.nodes:
            self.checker.fail(
                "storm",
                self.now,
                f"more than {STORM_STEPS_PER_MEMBER * self.plan.nodes} replica steps within "
                f"{STORM_WINDOW_MS} ms of virtual time",
            )

    def _check_liveness(self) -> None:
        if self.faults_end and self.now > self.faults_end + self.plan.recovery_bound_ms:
            for node in self.honest_nodes():
                if not node.commit_times or node.commit_times[-1] < self.faults_end:
                    self.checker.fail(
                        "recovery",
                        self.now,
                        f"n{node.instance} committed nothing in the "
                        f"{self.plan.recovery_bound_ms} ms after the faults ended",
                    )
                    return
        if self.now > self.plan.max_time_ms:
            lowest = min(n.height for n in self.honest_nodes())
            detail = f"an honest replica reached only height {lowest} of {self.plan.blocks}"
            if lowest >= self.plan.blocks:
                detail = f"{len(self.injected)} offered requests never committed"
            self.checker.fail("liveness", self.now, detail)

    def run(self) -> SimResult:
        for node in self.nodes:
            self._step(node, Start())
        for crash in self.plan.crashes:
            self._push(crash.at_ms, _CRASH, crash.instance)
            self._push(crash.at_ms + crash.down_ms, _RESTART, crash.instance)
        self._push(0, _INJECT, None)
        while self.queue and self.checker.violation is None and not self._done():
            at, kind, _, data = heapq.heappop(self.queue)
            self.now = at
            if kind in (_DELIVER, _REQUEST, _TIMER) and self._busy(data[0], kind, data):
                continue
            if kind == _DELIVER:
                self._deliver(*data)
            elif kind == _REQUEST:
                node = self.nodes[data[0]]
                if node.behaviour.hears(data[1]):
                    self._step(node, RequestArrived(data[1]))
            elif kind == _TIMER:
                instance, incarnation, timer, gen = data
                node = self.nodes[instance]
                if node.incarnation == incarnation and node.timer_gen.get(timer) == gen:
                    self._step(node, TimerFired(timer))
            elif kind == _INJECT:
                self._inject()
            elif kind == _CRASH:
                self._crash(self.nodes[data])
            elif kind == _RESTART:
                self._restart(self.nodes[data])
            elif kind == _RESUBMIT:
                self._resubmit(*data)
            self._check_storm()
            self._check_liveness()
        return self._result()

    def _max_commit_gap(self, honest: list[SimNode]) -> int:
        """The longest an honest replica went without executing a block, from the
        start until its last commit, or until the first suspicion if there was one: a
        view change makes gaps of its own, which must not excuse it."""
        end = self.first_suspicion_ms
        gaps = []
        for node in honest:
            times = [t for t in node.commit_times if end is None or t <= end]
            if end is not None:
                times.append(end)
            gaps += [later - earlier for earlier, later in zip([0, *times], times, strict=False)]
        return max(gaps, default=0)

    def _crash(self, node: SimNode) -> None:
        node.up = False
        node.incarnation += 1
        if self.trace.maxlen:
            self.trace.append((self.now, node.instance, "crash", node.height))

    def _restart(self, node: SimNode) -> None:
        node.replica = self._new_replica(node.member, node.durable, node.ledger)
        node.up = True
        node.timer_gen = {}
        if self.trace.maxlen:
            self.trace.append((self.now, node.instance, "restart", node.durable.view, node.height))
        self._step(node, Start())

    def _result(self) -> SimResult:
        honest = self.honest_nodes()
        max_view = max((n.replica.view for n in honest), default=0)
        return SimResult(
            plan=self.plan,
            violation=self.checker.violation,
            trace=[format_entry(e) for e in self.trace],
            heights={n.instance: n.height for n in self.nodes},
            honest_instances=[n.instance for n in honest],
            virtual_ms=self.now,
            steps=self.steps,
            view_changes=len(self.views_entered),
            max_view=max_view,
            messages=self.messages,
            latencies_ms=self.latencies,
            committed_clients=self.committed_clients,
            txs_committed=sum(len(b.txs) for b, _ in max(honest, key=lambda n: n.height).ledger),
            evidence=self.evidence,
            verifications=sum(n.replica.verifier.verifications for n in self.nodes),
            requests_offered=self.request_no,
            requests_uncommitted=len(self.injected),
            max_commit_gap_ms=self._max_commit_gap(honest),
            first_suspicion_ms=self.first_suspicion_ms,
        )


def run_plan(plan: FaultPlan) -> SimResult:
    return Simulation(plan).run()
