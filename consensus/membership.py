"""The member list of one chain, and the quorum arithmetic of PBFT.

``n`` and ``f`` keep the paper's names (Castro and Liskov, section 4: n = |R| = 3f + 1
replicas, at most f of them faulty). The paper's quorum is 2f + 1 of 3f + 1; for an n
that is not 3f + 1 the quorum here is ceil((n + f + 1) / 2), which keeps the property
the proofs need: any two quorums share at least one honest member.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.crypto import PUBLIC_KEY_SIZE, signing_bytes, verify_signature

MIN_MEMBERS = 4
MAX_MEMBERS = 128


@dataclass(frozen=True)
class Membership:
    """Members are numbered by their position in the genesis list."""

    chain_id: str
    public_keys: tuple[bytes, ...]
    _index: dict[bytes, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.chain_id:
            raise ValueError("chain id must not be empty")
        n = len(self.public_keys)
        if not MIN_MEMBERS <= n <= MAX_MEMBERS:
            raise ValueError(f"PBFT needs {MIN_MEMBERS} to {MAX_MEMBERS} members, got {n}")
        for i, key in enumerate(self.public_keys):
            if len(key) != PUBLIC_KEY_SIZE:
                raise ValueError(f"member {i}: public key must be {PUBLIC_KEY_SIZE} bytes")
        if len(set(self.public_keys)) != n:
            raise ValueError("two members share one public key")
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(self.public_keys)})

    @property
    def n(self) -> int:
        """The number of members (the paper's |R|)."""
        return len(self.public_keys)

    @property
    def f(self) -> int:
        """The number of Byzantine members tolerated."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """ceil((n+f+1)/2): any two quorums share at least one honest member."""
        return (self.n + self.f + 2) // 2

    @property
    def weak_quorum(self) -> int:
        """f+1: at least one honest member is among any f+1 distinct members."""
        return self.f + 1

    def primary(self, view: int) -> int:
        """The primary of ``view``: p = v mod |R| (section 4), so at most f consecutive
        views can have a faulty primary."""
        return view % self.n

    def is_member(self, index: int) -> bool:
        return 0 <= index < self.n

    def index_of(self, public_key: bytes) -> int | None:
        return self._index.get(public_key)

    def verify(self, member: int, kind: str, body: bytes, signature: bytes) -> bool:
        if not self.is_member(member):
            return False
        message = signing_bytes(self.chain_id, kind, body)
        return verify_signature(self.public_keys[member], message, signature)
