"""The two-member PSI exchange: its messages and, per member, a pure state machine that
checks every message the other member sends.

A run, between the initiator I (set X) and the responder R (set Y), each with a fresh
secret scalar (a for I, b for R) and H the hash to the group (``node.psi.crypto``):

1. I -> R ``Hello``: case (id and exact case transaction), entity type, |X|, chunk size.
2. R -> I ``Accept`` (|Y|, chunk size) or ``Refuse`` (a code and why), after checking its
   own copy of the ledger and its policy (``node.psi.service``).
3. Both at once, each about its own set, shuffled: ``Points`` chunks of H(x)^a (from I)
   and H(y)^b (from R).
4. Both at once, each about the other's points, in the other's order: ``Tags`` chunks,
   t(H(x)^ab) from R and t(H(y)^ab) from I, where t is a 16-byte keyed hash.
5. Each member's intersection: its own elements whose returned tag is among the tags it
   computed itself. Both learn the intersection and the other's set size, nothing else
   (semi-honest model: a member that lies in its tags can make the other learn a smaller
   or wrong intersection, and that cannot be detected; it cannot learn more).

Every message travels in a ``net.wire.PsiFrame`` carrying the run id, 16 random bytes
the initiator draws per run. The state machine belongs to one run: a message from an
earlier run never reaches it (the service routes by run id and drops what matches no
run), and inside a run every chunk carries its sequence number, checked against the
next one expected, so a replayed or reordered chunk ends the run.

What ends a run, as ``ProtocolError.code`` (the failure outcomes recorded on the
ledger): ``wrong_count`` (a chunk of the wrong length, or more chunks than announced),
``out_of_order`` (a chunk again, or ahead of its turn), ``invalid_point`` (a point the
group refuses: found by the service, which does the arithmetic), ``duplicate`` (two equal
points or two equal returned tags: an honest member never sends either),
``unexpected`` (a message the protocol has no place for at this step), ``malformed``
(a body that does not decode), ``aborted`` (the other member gave up and said why),
``timeout``, and ``failed`` (this member's own trouble: disconnected, stopped, the
record not committed).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import NoReturn

from consensus.codec import DecodeError, Registry
from net.wire import MAX_PSI_BODY
from node.identifiers.normalize import EntityType
from node.ledger.kinds import PSI_OUTCOMES, Close
from node.psi.crypto import POINT_SIZE, RUN_ID_SIZE, TAG_SIZE

DEFAULT_CHUNK = 4096  # 128 KiB of points per frame: about half a second of work
MAX_CHUNK = 16384  # 512 KiB of points, well inside MAX_PSI_BODY
MAX_SET = 10_000_000
MAX_TEXT = 500

REFUSALS = (
    "not_answering",  # the responder's policy does not answer automatically
    "no_answer_set",  # it has no set of this entity type (or is still loading it)
    "no_case",
    "case_not_active",
    "wrong_case",  # the case id belongs to another case transaction on its ledger
    "not_named",  # the case does not name both members
    "forbidden_role",  # a member without a role that may sign the record
    "too_large",
    "busy",
    "replayed_run",  # a run id it has seen before
)
FAILURES = PSI_OUTCOMES[1:]  # the ledger's vocabulary, "completed" aside

PSI_MESSAGES = Registry("psi message")


def _check_text(code: str, codes: tuple[str, ...], message: str) -> None:
    if code not in codes:
        raise ValueError(f"code must be one of {', '.join(codes)}")
    if len(message) > MAX_TEXT:
        raise ValueError(f"message has {len(message)} characters, at most {MAX_TEXT}")


def _check_plan(count: int, chunk: int) -> None:
    if not 1 <= count <= MAX_SET:
        raise ValueError(f"count must be 1 to {MAX_SET}, got {count}")
    if not 1 <= chunk <= MAX_CHUNK:
        raise ValueError(f"chunk must be 1 to {MAX_CHUNK}, got {chunk}")


@PSI_MESSAGES.register(1)
@dataclass(frozen=True)
class Hello:
    case_id: str
    case_tx: bytes
    entity_type: str
    count: int
    chunk: int

    def __post_init__(self) -> None:
        Close(self.case_id, self.case_tx)  # the one rule for case ids and case tx sizes
        if self.entity_type not in {t.value for t in EntityType}:
            raise ValueError("entity_type is not an entity type")
        _check_plan(self.count, self.chunk)


@PSI_MESSAGES.register(2)
@dataclass(frozen=True)
class Accept:
    count: int
    chunk: int

    def __post_init__(self) -> None:
        _check_plan(self.count, self.chunk)


@PSI_MESSAGES.register(3)
@dataclass(frozen=True)
class Refuse:
    code: str
    message: str

    def __post_init__(self) -> None:
        _check_text(self.code, REFUSALS, self.message)


@PSI_MESSAGES.register(4)
@dataclass(frozen=True)
class Points:
    seq: int
    points: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.points) <= MAX_CHUNK:
            raise ValueError(f"a chunk holds 1 to {MAX_CHUNK} points")
        if any(len(p) != POINT_SIZE for p in self.points):
            raise ValueError(f"every point is {POINT_SIZE} bytes")


@PSI_MESSAGES.register(5)
@dataclass(frozen=True)
class Tags:
    seq: int
    tags: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.tags) <= MAX_CHUNK:
            raise ValueError(f"a chunk holds 1 to {MAX_CHUNK} tags")
        if any(len(t) != TAG_SIZE for t in self.tags):
            raise ValueError(f"every tag is {TAG_SIZE} bytes")


@PSI_MESSAGES.register(6)
@dataclass(frozen=True)
class Abort:
    code: str
    message: str

    def __post_init__(self) -> None:
        _check_text(self.code, FAILURES, self.message)


PsiMessage = Hello | Accept | Refuse | Points | Tags | Abort


def encode_message(message: PsiMessage) -> bytes:
    return PSI_MESSAGES.encode(message)


def decode_message(data: bytes) -> PsiMessage:
    """Strict; raises ``ProtocolError('malformed', ...)``."""
    try:
        message: PsiMessage = PSI_MESSAGES.decode(data, MAX_PSI_BODY)
    except DecodeError as exc:
        raise ProtocolError("malformed", f"a message that does not decode: {exc}") from None
    return message


class ProtocolError(Exception):
    """The run cannot go on; ``code`` is one of ``FAILURES``."""

    def __init__(self, code: str, message: str) -> None:
        assert code in FAILURES, code
        super().__init__(message)
        self.code = code
        self.message = message


class Role(enum.StrEnum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


@dataclass(frozen=True)
class Plan:
    """How one member's set is cut into chunks: all full but the last."""

    count: int
    chunk: int

    def __post_init__(self) -> None:
        _check_plan(self.count, self.chunk)

    @property
    def chunks(self) -> int:
        return math.ceil(self.count / self.chunk)

    def size(self, seq: int) -> int:
        return min(self.chunk, self.count - seq * self.chunk)

    def offset(self, seq: int) -> int:
        return seq * self.chunk


@dataclass(frozen=True)
class PeerPoints:
    """A chunk of the other member's points, checked: raise them and return the tags."""

    seq: int
    offset: int
    points: tuple[bytes, ...]


@dataclass(frozen=True)
class PeerTags:
    seq: int


@dataclass
class Progress:
    own_sent: int = 0  # our blinded points sent
    peer_received: int = 0  # the other member's points received
    peer_tagged: int = 0  # of those, raised and their tags sent back
    tags_received: int = 0  # tags returned for our points

    def done(self) -> int:
        return self.own_sent + self.peer_tagged + self.tags_received


@dataclass
class PsiSession:
    """One member's side of one run. Feed it every message the other member sends
    (``receive``) and every chunk this member is about to send (``own_points``,
    ``peer_tags``); it raises ``ProtocolError`` at the first thing out of place."""

    role: Role
    run_id: bytes
    own: Plan
    peer: Plan | None = None
    progress: Progress = field(default_factory=Progress)
    _points_sent: int = 0
    _tags_sent: int = 0
    _next_points: int = 0
    _next_tags: int = 0
    _returned: list[tuple[bytes, ...]] = field(default_factory=list)
    _computed: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        if len(self.run_id) != RUN_ID_SIZE:
            raise ValueError(f"run_id must be {RUN_ID_SIZE} bytes")

    # ------------------------------------------------------------ opening

    def hello(self, case_id: str, case_tx: bytes, entity_type: str) -> Hello:
        assert self.role is Role.INITIATOR
        return Hello(case_id, case_tx, entity_type, self.own.count, self.own.chunk)

    @classmethod
    def answering(cls, hello: Hello, run_id: bytes, count: int, chunk: int) -> PsiSession:
        """The responder's side, once its policy accepts ``hello``."""
        return cls(Role.RESPONDER, run_id, Plan(count, chunk), Plan(hello.count, hello.chunk))

    def accept(self) -> Accept:
        assert self.role is Role.RESPONDER
        return Accept(self.own.count, self.own.chunk)

    def accepted(self, message: PsiMessage) -> None:
        """The initiator's first answer: ``Accept`` starts the exchange; anything else
        ends the run (a refusal is not a failure of the protocol, but it is the end)."""
        assert self.role is Role.INITIATOR
        if isinstance(message, Accept):
            if self.peer is not None:
                raise ProtocolError("unexpected", "a second Accept")
            self.peer = Plan(message.count, message.chunk)
            return
        self._unexpected(message, "the answer to Hello")

    # ------------------------------------------------------------ what we send

    def own_points(self, seq: int, points: tuple[bytes, ...]) -> Points:
        if seq != self._points_sent or len(points) != self.own.size(seq):
            raise ValueError(f"our own chunk {seq} is out of plan")  # a bug on our side
        self._points_sent += 1
        self.progress.own_sent += len(points)
        return Points(seq, points)

    def peer_tags(self, seq: int, tags: tuple[bytes, ...]) -> Tags:
        """Tags we computed for the other member's chunk ``seq``, to send back."""
        peer = self._peer()
        if seq != self._tags_sent or len(tags) != peer.size(seq) or seq >= self._next_points:
            raise ValueError(f"tags for chunk {seq} are out of plan")  # a bug on our side
        before = len(self._computed)
        self._computed.update(tags)
        if len(self._computed) != before + len(tags):
            # Equal tags mean equal points: an honest member's elements are distinct.
            raise ProtocolError(
                "duplicate", f"the other member sent the same point twice (chunk {seq})"
            )
        self._tags_sent += 1
        self.progress.peer_tagged += len(tags)
        return Tags(seq, tags)

    # ------------------------------------------------------------ what we receive

    def receive(self, message: PsiMessage) -> PeerPoints | PeerTags:
        if isinstance(message, Points):
            return self._points(message)
        if isinstance(message, Tags):
            return self._tags(message)
        return self._unexpected(message, "the exchange")

    def _points(self, message: Points) -> PeerPoints:
        peer = self._peer()
        seq = message.seq
        if seq >= peer.chunks:
            raise ProtocolError(
                "wrong_count",
                f"points chunk {seq}, but {peer.count:,} points were announced in "
                f"{peer.chunks} chunks of {peer.chunk}",
            )
        if seq != self._next_points:
            raise ProtocolError(
                "out_of_order", f"points chunk {seq} where chunk {self._next_points} was due"
            )
        if len(message.points) != peer.size(seq):
            raise ProtocolError(
                "wrong_count",
                f"points chunk {seq} holds {len(message.points):,} points, not {peer.size(seq):,}",
            )
        self._next_points += 1
        self.progress.peer_received += len(message.points)
        return PeerPoints(seq, peer.offset(seq), message.points)

    def _tags(self, message: Tags) -> PeerTags:
        self._peer()
        seq = message.seq
        if seq >= self.own.chunks:
            raise ProtocolError(
                "wrong_count",
                f"tags chunk {seq}, but we sent {self.own.count:,} points "
                f"in {self.own.chunks} chunks",
            )
        if seq != self._next_tags:
            raise ProtocolError(
                "out_of_order", f"tags chunk {seq} where chunk {self._next_tags} was due"
            )
        if seq >= self._points_sent:
            raise ProtocolError("unexpected", f"tags for points chunk {seq}, which we did not send")
        if len(message.tags) != self.own.size(seq):
            raise ProtocolError(
                "wrong_count",
                f"tags chunk {seq} holds {len(message.tags):,} tags, not {self.own.size(seq):,}",
            )
        self._next_tags += 1
        self._returned.append(message.tags)
        self.progress.tags_received += len(message.tags)
        return PeerTags(seq)

    def _unexpected(self, message: PsiMessage, where: str) -> NoReturn:
        if isinstance(message, Abort):
            raise ProtocolError(
                "aborted", f"the other member ended the run: {message.code}: {message.message}"
            )
        if isinstance(message, Refuse):
            raise ProtocolError("aborted", f"refused: {message.code}: {message.message}")
        raise ProtocolError("unexpected", f"{type(message).__name__} during {where}")

    def _peer(self) -> Plan:
        if self.peer is None:
            raise ProtocolError("unexpected", "points or tags before the run was accepted")
        return self.peer

    # ------------------------------------------------------------ the end

    @property
    def total_work(self) -> int:
        peer = 0 if self.peer is None else self.peer.count
        return 2 * self.own.count + peer

    @property
    def complete(self) -> bool:
        return (
            self.peer is not None
            and self._points_sent == self.own.chunks
            and self._tags_sent == self.peer.chunks
            and self._next_tags == self.own.chunks
        )

    def discard(self) -> None:
        """Drop the tags once the run has ended: only the result is kept."""
        self._returned, self._computed = [], set()

    def matches(self) -> list[int]:
        """Positions, in the order we sent our points, of our elements in the
        intersection."""
        if not self.complete:
            raise ValueError("the run is not complete")
        returned = [t for chunk in self._returned for t in chunk]
        if len(set(returned)) != len(returned):
            # Distinct elements blind to distinct points, and so to distinct tags.
            raise ProtocolError("duplicate", "the other member returned the same tag twice")
        computed = self._computed
        return [i for i, t in enumerate(returned) if t in computed]
