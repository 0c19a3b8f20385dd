"""Byzantine behaviours: what a faulty member does to its honest replica's output.

Each one runs the honest replica and rewrites what leaves it, so the faulty member is
as capable as an honest one (it has the key) and as nasty as the kind allows.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace

from consensus.blocks import Batch
from consensus.crypto import Signer
from consensus.messages import (
    Commit,
    Message,
    Prepare,
    PrePrepare,
    Proposal,
    sign,
)

# Outgoing: (destination member or None for everyone but the sender, message).
Outgoing = list[tuple[int | None, Message]]

# Simulated requests come from this many clients, in turn: request number k (the first
# eight bytes of its payload) is client k mod CLIENTS's.
CLIENTS = 5


def client_of(payload: bytes) -> int:
    return int.from_bytes(payload[:8], "big") % CLIENTS


class Behaviour:
    """Honest: pass everything through."""

    kind = "honest"
    delivers_requests = True
    runs = True
    # Whether the checker holds the member to the honest invariants (agreement,
    # certified commits, no equivocation) and the run waits for it to commit.
    counts_as_honest = False
    # Whether the runner makes each new proposal cost the member processing time.
    slow = False

    def __init__(
        self, member: int, n: int, signer: Signer, chain_id: str, rng: random.Random
    ) -> None:
        self.member = member
        self.n = n
        self.signer = signer
        self.chain_id = chain_id
        self.rng = rng

    def outgoing(self, to: int | None, message: Message) -> Outgoing:
        return [(to, message)]

    def received(self, message: Message) -> None:
        return None

    def hears(self, payload: bytes) -> bool:
        """Whether a client's request reaches the member's replica."""
        return self.delivers_requests


class Silent(Behaviour):
    kind = "silent"
    runs = False

    def outgoing(self, to: int | None, message: Message) -> Outgoing:
        return []


class Censor(Behaviour):
    """Never hears clients: as primary it proposes nothing at all."""

    kind = "censor"
    delivers_requests = False


class CensorOne(Behaviour):
    """Hears every client but one: as primary it commits the others' requests and
    leaves that client's out forever."""

    kind = "censor-one"

    def hears(self, payload: bytes) -> bool:
        return client_of(payload) != 0


class Slow(Behaviour):
    """Honest code on a slow machine (the runner charges it time for every proposal it
    makes): as primary it commits blocks steadily, more slowly than clients offer
    requests. Not faulty, so the checker holds it to every honest invariant."""

    kind = "slow"
    counts_as_honest = True
    slow = True


class Equivocate(Behaviour):
    """As primary, sends one batch to half the members and another to the rest."""

    kind = "equivocate"

    def outgoing(self, to: int | None, message: Message) -> Outgoing:
        if to is not None or not isinstance(message, Proposal):
            return [(to, message)]
        pp, batch = message.pre_prepare, message.batch
        other = Batch(batch.height, batch.timestamp_ms + 1, tuple(reversed(batch.txs))[1:])
        alt_pp = sign(
            PrePrepare,
            self.signer,
            self.chain_id,
            view=pp.view,
            seq=pp.seq,
            digest=other.digest(self.chain_id),
            sender=self.member,
        )
        alt = Proposal(alt_pp, other)
        out: Outgoing = []
        for member in range(self.n):
            if member != self.member:
                out.append((member, message if member % 2 == 0 else alt))
        return out


class Forge(Behaviour):
    """Also sends votes in other members' names and votes with broken signatures."""

    kind = "forge"

    def outgoing(self, to: int | None, message: Message) -> Outgoing:
        out: Outgoing = [(to, message)]
        if isinstance(message, Prepare | Commit):
            victim = self.rng.randrange(self.n)
            digest = bytes(self.rng.getrandbits(8) for _ in range(32))
            stolen = replace(message, digest=digest, sender=victim)
            broken = replace(message, signature=bytes(64))
            out += [(None, stolen), (None, broken)]
        return out


class Replay(Behaviour):
    """Re-sends old messages it received from others, long after the fact."""

    kind = "replay"

    def __init__(
        self, member: int, n: int, signer: Signer, chain_id: str, rng: random.Random
    ) -> None:
        super().__init__(member, n, signer, chain_id, rng)
        self.seen: deque[Message] = deque(maxlen=500)

    def received(self, message: Message) -> None:
        self.seen.append(message)

    def outgoing(self, to: int | None, message: Message) -> Outgoing:
        out: Outgoing = [(to, message)]
        if self.seen and self.rng.random() < 0.3:
            out.append((None, self.seen[self.rng.randrange(len(self.seen))]))
        return out


BEHAVIOURS: dict[str, type[Behaviour]] = {
    "honest": Behaviour,
    "silent": Silent,
    "censor": Censor,
    "censor-one": CensorOne,
    "slow": Slow,
    "equivocate": Equivocate,
    "forge": Forge,
    "replay": Replay,
    # Twins run honest code twice under one key; the runner adds the second copy.
    "twins": Behaviour,
}
