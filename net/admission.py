"""Who gets a handshake slot on the TCP listener, and who loses one.

A socket in the handshake cannot be told from a member until Noise XX message 3 names
its key, so the listener ranks what it can see instead: the source address, whether the
socket has sent its first handshake message, and for how long. A member dials, sends
message 1 (32 bytes) at once and answers message 2 within a round trip; a stranger that
holds a slot either says nothing or stops after message 1.

``HandshakePool`` keeps two lines, each of at most ``capacity``: sockets accepted that
have not sent message 1 yet (``waiting``), and handshakes under way (``started``: message
1 read, message 2 sent). Silent sockets cost a descriptor and nothing else, so among
them the newest win: a new socket takes the place of the oldest waiting one
(``displaced``). A waiting socket whose message 1 arrives moves to the started line; if
that is full, it takes the place of a handshake that started more than ``grace_s`` ago
and has not finished (``stalled``), a non-member address's first, then the oldest; if
there is none, it is closed (refused, ``handshake_slots``).

Addresses. The members' addresses (where the genesis says they listen, which is where
they dial from unless NAT says otherwise) come first. A socket from any other address is
refused outright when that address already holds ``per_address`` handshakes
(``per_address``), and only ever takes the place of another such address's socket; a
socket from a member's address that finds the started line full of young handshakes
takes the place of the oldest stranger's (``stranger``).

Other pressure. When the inbound cap is reached (``inbound``) or the process is short of
descriptors (``descriptors``), a new socket is admitted only in the place of the oldest
waiting one, else of a stalled one, else (from a member's address) of a stranger's, and
refused for that pressure otherwise.

So: a member that dials gets in past any number of silent sockets (its message 1 follows
its connection within a round trip, before ``capacity`` more strangers have come), and
once it has started it is never evicted within ``grace_s``; strangers' addresses can
never keep out, or cut short, a member dialling from its own. A member's handshake takes
one round trip after message 1 (1 to 7 ms over loopback on a loaded two-core machine,
under a storm of strangers), so a grace of a few times that keeps it safe while vetting
as many sockets that stall after message 1 as it can: ``capacity / grace_s`` a second.
Strangers on a member's own address (the one case address cannot settle: on 127.0.0.1
everybody shares it) that stall after message 1, or after a few bytes of it, faster
than that can still delay a member by its backoff; nothing before message 3 tells them
apart.

Whether a socket has sent anything is known from its handler (``start``); a waiting
socket younger than ``grace_s`` whose bytes are already there (a zero-timeout ``poll``
of its descriptor, ``socket_readiness``) is not displaced: its handler is about to read
them. Sans-I/O otherwise: the caller owns the sockets and the clock, and acts on each
``Decision``.
"""

from __future__ import annotations

import ipaddress
import select
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import trio

Readiness = Literal["data", "silent", "closed"]
RejectReason = Literal["handshake_slots", "inbound", "descriptors", "per_address"]
EvictReason = Literal["displaced", "stalled", "stranger"]
REJECT_REASONS: tuple[RejectReason, ...] = (
    "handshake_slots",
    "inbound",
    "descriptors",
    "per_address",
)
EVICT_REASONS: tuple[EvictReason, ...] = ("displaced", "stalled", "stranger")

_POLLRDHUP = getattr(select, "POLLRDHUP", 0)
_HANGUP = _POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


def socket_readiness(fd: int) -> Readiness:
    """Whether bytes wait on ``fd`` (``data``), the peer hung up (``closed``), or neither."""
    if fd < 0:
        return "closed"
    poller = select.poll()
    poller.register(fd, select.POLLIN | _POLLRDHUP)
    events = poller.poll(0)
    if not events:
        return "silent"
    mask = events[0][1]
    if mask & _HANGUP:
        return "closed"
    return "data"


def normalise_address(host: str) -> str | None:
    """The canonical text of an IP address (IPv4-mapped IPv6 as IPv4, no zone), or None
    for what is not an IP address literal (a host name)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(eq=False)
class Handshake:
    """One inbound connection in the handshake. ``scope`` wraps its handshake, so
    cancelling it ends the handshake (an eviction); ``fd`` is polled for readiness."""

    fd: int
    address: str
    member_address: bool
    accepted_at: float
    started_at: float | None = None  # when its message 1 arrived
    evicted: EvictReason | None = None  # another connection took its place
    refused: bool = False  # its message 1 found no started slot
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass(frozen=True)
class Decision:
    """``admitted`` or not; ``pressure`` is what made room necessary (the refusal's
    reason when not admitted); ``evicted`` was removed from the pool to make it."""

    admitted: bool
    pressure: RejectReason | None = None
    evicted: Handshake | None = None


class HandshakePool:
    """The handshakes under way on one listener, and the policy above."""

    def __init__(
        self,
        capacity: int,
        *,
        per_address: int,
        grace_s: float,
        member_addresses: Iterable[str] = (),
        readiness: Callable[[int], Readiness] = socket_readiness,
    ) -> None:
        if capacity < 1 or per_address < 1:
            raise ValueError("handshake slots and the per-address limit must be positive")
        if grace_s <= 0:
            raise ValueError("grace_s must be positive")
        self.capacity = capacity
        self.per_address = per_address
        self.grace_s = grace_s
        self.member_addresses: set[str] = set(member_addresses)
        self._readiness = readiness
        # Insertion order is age order: the oldest first.
        self._waiting: dict[Handshake, None] = {}
        self._started: dict[Handshake, None] = {}
        self._by_address: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._started)

    def __iter__(self) -> Iterator[Handshake]:
        return iter([*self._waiting, *self._started])

    def waiting(self) -> int:
        """Sockets that have not sent message 1 yet."""
        return len(self._waiting)

    def is_member_address(self, address: str) -> bool:
        return address in self.member_addresses

    def strangers(self) -> int:
        """Handshakes from addresses that are no member's."""
        return sum(1 for h in self if not h.member_address)

    def remove(self, handshake: Handshake) -> None:
        """It left the handshake (finished, failed or evicted); removing twice is fine."""
        for line in (self._waiting, self._started):
            if handshake in line:
                del line[handshake]
                self._forget_address(handshake)

    def _forget_address(self, handshake: Handshake) -> None:
        self._by_address[handshake.address] -= 1
        if self._by_address[handshake.address] <= 0:
            del self._by_address[handshake.address]

    def admit(
        self,
        newcomer: Handshake,
        now: float,
        *,
        inbound_full: bool = False,
        descriptors_short: bool = False,
    ) -> Decision:
        """A socket was accepted: admit it to the waiting line (adding it) or not."""
        if not newcomer.member_address and self._by_address[newcomer.address] >= self.per_address:
            return Decision(False, "per_address")
        pressure: RejectReason | None = None
        victim: Handshake | None = None
        if len(self._waiting) >= self.capacity:
            pressure = "handshake_slots"
            victim = self._oldest_waiting(newcomer, now)
        elif inbound_full or descriptors_short:
            pressure = "inbound" if inbound_full else "descriptors"
            victim = (
                self._oldest_waiting(newcomer, now)
                or self._stalled(newcomer, now)
                or self._stranger(newcomer)
            )
        if pressure is not None:
            if victim is None:
                return Decision(False, pressure)
            self.remove(victim)
        self._waiting[newcomer] = None
        self._by_address[newcomer.address] += 1
        return Decision(True, pressure, victim)

    def start(self, handshake: Handshake, now: float) -> Decision:
        """Its message 1 arrived: move it to the started line, or refuse it (it is then
        out of the pool, and the caller closes it)."""
        if handshake not in self._waiting:
            return Decision(False, "handshake_slots")  # evicted meanwhile
        del self._waiting[handshake]
        handshake.started_at = now
        victim: Handshake | None = None
        if len(self._started) >= self.capacity:
            victim = self._stalled(handshake, now) or self._stranger(handshake)
            if victim is None:
                self._forget_address(handshake)
                handshake.refused = True
                return Decision(False, "handshake_slots")
            self.remove(victim)
        self._started[handshake] = None
        return Decision(True, None if victim is None else "handshake_slots", victim)

    # ------------------------------------------------------------ victims

    def _rivals(self, newcomer: Handshake, line: dict[Handshake, None]) -> list[Handshake]:
        """Those ``newcomer`` may take the place of: a stranger's only strangers'."""
        if newcomer.member_address:
            return list(line)
        return [h for h in line if not h.member_address]

    def _oldest_waiting(self, newcomer: Handshake, now: float) -> Handshake | None:
        for h in self._rivals(newcomer, self._waiting):
            if now - h.accepted_at < self.grace_s and self._readiness(h.fd) == "data":
                continue  # its message 1 is there; its handler is about to read it
            h.evicted = "displaced"
            return h
        return None

    def _stalled(self, newcomer: Handshake, now: float) -> Handshake | None:
        stalled = [
            h
            for h in self._rivals(newcomer, self._started)
            if h.started_at is not None and now - h.started_at >= self.grace_s
        ]
        if not stalled:
            return None
        victim = min(stalled, key=lambda h: (h.member_address, h.accepted_at))
        victim.evicted = "stalled"
        return victim

    def _stranger(self, newcomer: Handshake) -> Handshake | None:
        if not newcomer.member_address:
            return None
        for line in (self._waiting, self._started):
            for h in line:
                if not h.member_address:
                    h.evicted = "stranger"
                    return h
        return None
