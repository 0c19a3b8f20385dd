"""How much a node takes in: a moving estimate of how fast it commits, and the
admission bound derived from it, so that overload is refused at the door instead of
absorbed into a backlog that grows until latency is measured in tens of seconds.

Pure and synchronous: no I/O, no clock. The runtime passes the time in (trio's clock,
in seconds) and the holdings (the mempool's counts).

The estimate
    ``CommitRate`` counts transactions committed (the host sees every executed block)
    and folds the count into an exponentially weighted moving average once per
    ``tick_s``, with weight ``1 - 2 ** (-elapsed / half_life_s)``, so a tick that came
    late weighs what its length is worth, and an idle node's estimate decays to zero.
    The first tick with commits sets the estimate outright: before it the rate is
    unknown, not zero.

The bound
    ``bound = min(cap, max(floor, ceil(rate * horizon)))``: what commits within about
    ``horizon_s`` at the current rate, never below ``floor`` (an idle or just started
    node has no rate yet and must still take a burst), never above ``cap`` (the
    mempool's count limit). Every member's share is ``max(1, bound // members)``.

The decision for a client (``decide``), for ``count`` transactions of one member
    1. ``capacity``: refused if the pool would pass ``cap`` (the mempool's own limit).
    2. admitted if the member stays within its share, whatever the others hold: a
       member under its share is never refused while another is over it. Also
       admitted if the member holds nothing: one request larger than a share (up to
       1,000 transactions) must get through some time.
    3. admitted if the node stays within its bound: idle capacity may be borrowed.
    4. otherwise ``share``: refused; the member is past its share and the node at its
       bound, so the members over their shares are the ones refused.
    Since rule 2 admits past the bound only into shares (or one request per member),
    the pool never holds more than about twice the bound (``bound`` borrowed, plus
    every share filled), and never more than ``cap``.

Gossip (``decide_gossip``), transactions a peer already accepted, is kept while the
pool is within ``cap`` and the member holds at most ``gossip_slack`` bounds here;
dropped (and counted) past that, never queued.

``Retry-After`` is how long the excess takes to commit at the estimated rate
(``ceil(excess / rate)``, at least 1 s, at most ``max_retry_after_s``). ``Admission``
takes the rate as at least ``floor / horizon``: a node that has not committed yet (or
for a while) has no rate to go by, and an idle node commits its floor in a horizon;
a refusal costs the node little, so a client asked back too early costs little too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_HORIZON_S = 1.0
# Four idle nodes each lend this much at once before gossip shows them each other's
# load, and it must commit within a view timeout on two shared cores: with 2,000 per
# node every burst measured started view changes, with 500 most did not (see the
# README's Benchmarks).
DEFAULT_FLOOR_TXS = 500
DEFAULT_HALF_LIFE_S = 2.0
DEFAULT_TICK_S = 0.25
# Transactions a peer already promised its client are dropped here only well past the
# bound: the peer admitted them under its own, nearly identical, view of the load, and
# a transaction missing at the primary waits until some other member proposes it.
DEFAULT_GOSSIP_SLACK = 2.0
MAX_RETRY_AFTER_S = 30
# Peers' gossip waiting for this node's check past which its own clients wait too: see
# ``Admission.decide``. About one worker-thread trip of gossip (``GOSSIP_BATCH``).
DEFAULT_LAG_LIMIT_TXS = 256


class RefuseReason(StrEnum):
    """Why admission refused; the values are the metric labels and refusal codes."""

    SHARE = "share"  # the node is at its bound and this member past its share
    CAPACITY = "capacity"  # the mempool's own limit would be passed
    LAGGING = "lagging"  # peers' gossip waits for this node's check


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    horizon_s: float = DEFAULT_HORIZON_S
    floor_txs: int = DEFAULT_FLOOR_TXS
    half_life_s: float = DEFAULT_HALF_LIFE_S
    gossip_slack: float = DEFAULT_GOSSIP_SLACK
    max_retry_after_s: int = MAX_RETRY_AFTER_S
    lag_limit_txs: int = DEFAULT_LAG_LIMIT_TXS

    def __post_init__(self) -> None:
        if not self.horizon_s > 0:
            raise ValueError("horizon_s must be positive")
        if self.floor_txs < 1:
            raise ValueError("floor_txs must be at least 1")
        if not self.half_life_s > 0:
            raise ValueError("half_life_s must be positive")
        if self.gossip_slack < 1:
            raise ValueError("gossip_slack must be at least 1")
        if self.max_retry_after_s < 1:
            raise ValueError("max_retry_after_s must be at least 1")
        if self.lag_limit_txs < 0:
            raise ValueError("lag_limit_txs must not be negative")


class CommitRate:
    """An exponentially weighted moving average of transactions committed per second."""

    def __init__(
        self,
        now_s: float,
        *,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        tick_s: float = DEFAULT_TICK_S,
    ) -> None:
        if not half_life_s > 0 or not tick_s > 0:
            raise ValueError("half_life_s and tick_s must be positive")
        self.half_life_s = half_life_s
        self.tick_s = tick_s
        self._rate = 0.0
        self._seeded = False
        self._count = 0
        self._since = now_s

    def observe(self, txs: int, now_s: float) -> None:
        """``txs`` transactions committed at ``now_s``."""
        self._fold(now_s)
        self._count += txs

    def per_second(self, now_s: float) -> float:
        self._fold(now_s)
        return self._rate

    def _fold(self, now_s: float) -> None:
        elapsed = now_s - self._since
        if elapsed < self.tick_s:
            return  # also when the clock went backwards: never a negative interval
        sample = self._count / elapsed
        if not self._seeded and self._count:
            # The first commits seen: until then the rate was unknown, not zero, and
            # ramping up from zero would answer a node's first burst with Retry-After
            # values ten times too long.
            self._rate, self._seeded = sample, True
        else:
            weight = 1.0 - 2.0 ** (-elapsed / self.half_life_s)
            self._rate += weight * (sample - self._rate)
        self._count = 0
        self._since = now_s


@dataclass(frozen=True, slots=True)
class Decision:
    """Admitted when ``reason`` is None; otherwise why not and when to come back."""

    reason: RefuseReason | None = None
    retry_after_s: int = 0

    @property
    def admitted(self) -> bool:
        return self.reason is None


ADMITTED = Decision()


def admission_bound(rate: float, policy: AdmissionPolicy, cap: int) -> int:
    """Transactions the node holds at most before it refuses members past their share."""
    return min(cap, max(policy.floor_txs, math.ceil(rate * policy.horizon_s)))


def member_share(bound: int, members: int) -> int:
    return max(1, bound // max(1, members))


def decide(
    *,
    held_member: int,
    held_total: int,
    count: int,
    bound: int,
    members: int,
    cap: int,
    rate: float,
    max_retry_after_s: int = MAX_RETRY_AFTER_S,
) -> Decision:
    """Whether ``count`` more transactions of a member holding ``held_member`` (of
    ``held_total`` held) are taken; see the module docstring for the rules."""
    if held_total + count > cap:
        excess = held_total + count - cap
        return Decision(RefuseReason.CAPACITY, retry_after(excess, rate, max_retry_after_s))
    share = member_share(bound, members)
    if held_member + count <= share or held_member == 0 or held_total + count <= bound:
        return ADMITTED
    # Coming back is worth it once the node is back under its bound or the member under
    # its share; the smaller of the two excesses is what must commit first.
    excess = min(held_total + count - bound, held_member + count - share)
    return Decision(RefuseReason.SHARE, retry_after(excess, rate, max_retry_after_s))


def decide_gossip(
    *, held_member: int, held_total: int, count: int, limit: int, cap: int
) -> Decision:
    """Whether a peer's gossip of ``count`` transactions of one member is kept: within
    the mempool's ``cap``, and while that member holds at most ``limit`` here. The peer
    already told its client "accepted", and its own bound let that member hold about
    one bound at most, so ``limit`` (a multiple of this node's bound) stops only a peer
    that does not bound its clients; the total is not weighed, since every member's
    node lends idle capacity on its own view of the pool, which gossip reaches late."""
    if held_total + count > cap:
        return Decision(RefuseReason.CAPACITY)
    if held_member + count > limit:
        return Decision(RefuseReason.SHARE)
    return ADMITTED


def retry_after(excess: int, rate: float, max_retry_after_s: int = MAX_RETRY_AFTER_S) -> int:
    """Whole seconds for ``excess`` transactions to commit at ``rate``, in [1, max]."""
    seconds = max(0, excess) / rate if rate > 0 else math.inf
    if seconds >= max_retry_after_s:  # also a rate so small the quotient is infinite
        return max_retry_after_s
    return max(1, math.ceil(seconds))


class Admission:
    """One node's admission state: its commit rate and its policy. The holdings are
    the mempool's, passed in at each decision."""

    def __init__(self, policy: AdmissionPolicy, members: int, cap: int, now_s: float) -> None:
        if members < 1 or cap < 1:
            raise ValueError("members and cap must be at least 1")
        self.policy = policy
        self.members = members
        self.cap = cap
        self.rate = CommitRate(now_s, half_life_s=policy.half_life_s)
        self.refused: dict[RefuseReason, int] = dict.fromkeys(RefuseReason, 0)
        self.gossip_dropped = 0

    def committed(self, txs: int, now_s: float) -> None:
        self.rate.observe(txs, now_s)

    def bound(self, now_s: float) -> int:
        return admission_bound(self.rate.per_second(now_s), self.policy, self.cap)

    def retry_after_s(self, excess: int, now_s: float) -> int:
        return retry_after(excess, self._retry_rate(now_s), self.policy.max_retry_after_s)

    def _retry_rate(self, now_s: float) -> float:
        policy = self.policy
        return max(self.rate.per_second(now_s), policy.floor_txs / policy.horizon_s)

    def decide(
        self,
        held_member: int,
        held_total: int,
        count: int,
        now_s: float,
        *,
        gossip: bool = False,
        unchecked_gossip: int = 0,
    ) -> Decision:
        """The decision for ``count`` transactions; ``gossip`` ones (a peer already
        accepted them) get ``policy.gossip_slack`` times the bound. Refusals are counted:
        client ones in ``refused``, gossip in ``gossip_dropped``.

        A client is refused (``lagging``) while more than ``policy.lag_limit_txs`` of
        the peers' gossip waits for this node's check, whatever its share: a node that
        took its own clients' transactions ahead of what the others accepted earlier
        would propose, as primary, later requests before earlier ones, which the
        backups take for censorship (``consensus.liveness``), and its clients' work
        would only queue behind the gossip anyway."""
        if not gossip and unchecked_gossip > self.policy.lag_limit_txs:
            self.refused[RefuseReason.LAGGING] += 1
            return Decision(RefuseReason.LAGGING, self.retry_after_s(unchecked_gossip, now_s))
        rate = self.rate.per_second(now_s)
        bound = admission_bound(rate, self.policy, self.cap)
        if gossip:
            decision = decide_gossip(
                held_member=held_member,
                held_total=held_total,
                count=count,
                limit=math.ceil(bound * self.policy.gossip_slack),
                cap=self.cap,
            )
            if decision.reason is not None:
                self.gossip_dropped += count
            return decision
        decision = decide(
            held_member=held_member,
            held_total=held_total,
            count=count,
            bound=bound,
            members=self.members,
            cap=self.cap,
            rate=self._retry_rate(now_s),
            max_retry_after_s=self.policy.max_retry_after_s,
        )
        if decision.reason is not None:
            self.refused[decision.reason] += 1
        return decision
