"""The signed transaction envelope, its canonical encoding, and admission rules.

A transaction is the canonical encoding of ``Transaction``: the body is itself the
canonical encoding of the kind's body type, so the envelope can be checked (size,
chain, member, key, signature) before the body is even parsed, and the tx id is a hash
of exactly the bytes that go into a block.

``validate_tx`` is a pure function of the bytes and a ``TxContext``: the clock reading
and the nonce history come in through the context, so every node decides the same way
on the same inputs, and tests need no clock. Every way to fail is a ``TxRejected``
with a stable code; nothing else escapes, whatever the bytes are.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from consensus.codec import MAX_UINT, DecodeError, decode_value, encode_value
from consensus.crypto import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    Signer,
    hash_bytes,
    signing_bytes,
    verify_signature,
)
from node.identifiers.screen import find_raw_identifier
from node.ledger.kinds import (
    BODY_TYPES,
    KIND_ROLES,
    Access,
    Body,
    Case,
    Link,
    PsiRun,
    Report,
    body_strings,
)

MAX_TX_BYTES = 16 * 1024
MAX_SKEW_MS = 5 * 60 * 1000
MAX_ATTRIBUTES = 32
MAX_SCOPE = 64
MAX_STRING_CHARS = 256
ATTRIBUTES_PATH = "report.attributes["


@dataclass(frozen=True)
class UnsignedTx:
    """The signed part of a transaction: everything but the signature."""

    chain_id: str
    member: str
    signer_key: bytes
    nonce: int
    time_ms: int
    kind: str
    body: bytes


@dataclass(frozen=True)
class Transaction:
    chain_id: str
    member: str
    signer_key: bytes
    nonce: int
    time_ms: int
    kind: str
    body: bytes
    signature: bytes

    def __post_init__(self) -> None:
        # Decoded integers are range-checked by the codec; this guards construction.
        for name in ("nonce", "time_ms"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_UINT:
                raise ValueError(f"{name} must be an unsigned 64-bit integer, got {value}")

    def unsigned(self) -> UnsignedTx:
        return UnsignedTx(
            self.chain_id,
            self.member,
            self.signer_key,
            self.nonce,
            self.time_ms,
            self.kind,
            self.body,
        )

    def tx_id(self) -> bytes:
        return tx_id(encode_tx(self))


def signed_message(unsigned: UnsignedTx) -> bytes:
    """The exact bytes the member signs; the kind is in the domain, too."""
    return signing_bytes(unsigned.chain_id, "tx/" + unsigned.kind, encode_value(unsigned))


def encode_tx(tx: Transaction) -> bytes:
    return encode_value(tx)


def decode_tx(data: bytes, max_bytes: int = MAX_TX_BYTES) -> Transaction:
    """Strict inverse of ``encode_tx``; raises ``DecodeError`` on any other input."""
    return decode_value(Transaction, data, max_bytes)


def tx_id(encoded: bytes) -> bytes:
    """The id of a transaction: a hash of its full encoding, signature included."""
    return hash_bytes("tx", encoded)


def sign_tx(
    signer: Signer,
    chain_id: str,
    member: str,
    kind: str,
    body: bytes,
    nonce: int,
    time_ms: int,
) -> Transaction:
    """Sign an envelope around already encoded body bytes (any kind, even unknown)."""
    unsigned = UnsignedTx(chain_id, member, signer.public_key, nonce, time_ms, kind, body)
    signature = signer.sign(signed_message(unsigned))
    return Transaction(chain_id, member, signer.public_key, nonce, time_ms, kind, body, signature)


def make_tx(
    signer: Signer,
    chain_id: str,
    member: str,
    kind: str,
    body: Body,
    nonce: int,
    time_ms: int,
) -> Transaction:
    if body.kind != kind:
        raise ValueError(f"a {type(body).__name__} body is kind {body.kind!r}, not {kind!r}")
    return sign_tx(signer, chain_id, member, kind, encode_value(body), nonce, time_ms)


# --- validation ---------------------------------------------------------------------


class RejectCode(enum.StrEnum):
    MALFORMED = "malformed"
    OVERSIZE = "oversize"
    WRONG_CHAIN = "wrong_chain"
    UNKNOWN_MEMBER = "unknown_member"
    WRONG_KEY = "wrong_key"
    BAD_SIGNATURE = "bad_signature"
    FORBIDDEN_KIND = "forbidden_kind"
    UNKNOWN_KIND = "unknown_kind"
    BAD_BODY = "bad_body"
    CLOCK_SKEW = "clock_skew"
    REPLAY = "replay"
    RAW_IDENTIFIER = "raw_identifier"


class TxRejected(Exception):
    """A transaction refused admission. Messages never quote identifier-like content."""

    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class MemberInfo:
    """What admission needs to know about one member.

    ``client_keys`` are further keys the member registered for its clients; the node
    key (``public_key``) is always accepted.
    """

    public_key: bytes
    roles: frozenset[str]
    client_keys: frozenset[bytes] = frozenset()

    def accepts_key(self, key: bytes) -> bool:
        return key == self.public_key or key in self.client_keys


class MemberLike(Protocol):
    """The fields of a genesis member that admission uses."""

    @property
    def name(self) -> str: ...

    @property
    def roles(self) -> Iterable[str]: ...

    @property
    def public_key(self) -> bytes: ...


def member_table(members: Iterable[MemberLike]) -> dict[str, MemberInfo]:
    """Build ``TxContext.members`` from genesis members (or anything shaped like one)."""
    return {m.name: MemberInfo(m.public_key, frozenset(m.roles)) for m in members}


@dataclass(frozen=True, kw_only=True)
class TxContext:
    chain_id: str
    members: Mapping[str, MemberInfo]
    now_ms: int
    # True when this member's nonce is already on the ledger or in the mempool.
    nonce_seen: Callable[[str, int], bool]
    max_skew_ms: int = MAX_SKEW_MS
    max_tx_bytes: int = MAX_TX_BYTES


@dataclass(frozen=True)
class ValidatedTx:
    tx: Transaction
    tx_id: bytes
    body: Body
    encoded: bytes


def decode_body(tx: Transaction) -> Body:
    """The typed body of ``tx``; raises ``TxRejected`` (unknown_kind or bad_body)."""
    cls = BODY_TYPES.get(tx.kind)
    if cls is None:
        raise TxRejected(RejectCode.UNKNOWN_KIND, f"unknown transaction kind {tx.kind!r}")
    try:
        return decode_value(cls, tx.body, max_bytes=max(len(tx.body), 1))
    except DecodeError as exc:
        raise TxRejected(RejectCode.BAD_BODY, f"{tx.kind} body: {exc}") from None


def validate_tx(tx_bytes: bytes, ctx: TxContext) -> ValidatedTx:
    """Admit a transaction or raise ``TxRejected``: envelope, then authority, then body.

    Cheap, unauthenticated checks come first; the signature is verified before any
    check whose answer depends on the member's rights or history.
    """
    data = bytes(tx_bytes)
    if len(data) > ctx.max_tx_bytes:
        raise TxRejected(
            RejectCode.OVERSIZE,
            f"transaction of {len(data)} bytes exceeds the limit of {ctx.max_tx_bytes}",
        )
    try:
        tx = decode_tx(data, ctx.max_tx_bytes)
    except DecodeError as exc:
        raise TxRejected(RejectCode.MALFORMED, str(exc)) from None
    if tx.chain_id != ctx.chain_id:
        raise TxRejected(
            RejectCode.WRONG_CHAIN,
            f"transaction is for chain {tx.chain_id!r}, not {ctx.chain_id!r}",
        )
    info = ctx.members.get(tx.member)
    if info is None:
        raise TxRejected(RejectCode.UNKNOWN_MEMBER, f"{tx.member!r} is not a member")
    if len(tx.signer_key) != PUBLIC_KEY_SIZE or not info.accepts_key(tx.signer_key):
        raise TxRejected(RejectCode.WRONG_KEY, f"signer key is not a key of member {tx.member!r}")
    if tx.kind not in BODY_TYPES:
        raise TxRejected(RejectCode.UNKNOWN_KIND, f"unknown transaction kind {tx.kind!r}")
    if len(tx.signature) != SIGNATURE_SIZE or not verify_signature(
        tx.signer_key, signed_message(tx.unsigned()), tx.signature
    ):
        raise TxRejected(RejectCode.BAD_SIGNATURE, f"signature by {tx.member!r} does not verify")
    if not KIND_ROLES[tx.kind] & info.roles:
        needed = " or ".join(sorted(KIND_ROLES[tx.kind]))
        raise TxRejected(
            RejectCode.FORBIDDEN_KIND,
            f"member {tx.member!r} may not submit {tx.kind} transactions (needs role {needed})",
        )
    check_clock(tx, ctx)
    if ctx.nonce_seen(tx.member, tx.nonce):
        raise TxRejected(
            RejectCode.REPLAY, f"nonce {tx.nonce} of member {tx.member!r} was already used"
        )
    body = decode_body(tx)
    _check_body(tx, body, ctx)
    return ValidatedTx(tx=tx, tx_id=tx_id(data), body=body, encoded=data)


def check_clock(tx: Transaction, ctx: TxContext) -> None:
    """The one admission rule that depends on the clock: the transaction's time is
    within ``max_skew_ms`` of ``now_ms``."""
    skew = tx.time_ms - ctx.now_ms
    if abs(skew) > ctx.max_skew_ms:
        raise TxRejected(
            RejectCode.CLOCK_SKEW,
            f"transaction time is {skew / 1000:+.1f} s from now; at most "
            f"{ctx.max_skew_ms / 1000:.0f} s either way is accepted",
        )


def _check_body(tx: Transaction, body: Body, ctx: TxContext) -> None:
    where = tx.kind
    if isinstance(body, Report) and len(body.attributes) > MAX_ATTRIBUTES:
        raise TxRejected(
            RejectCode.OVERSIZE,
            f"{where}.attributes has {len(body.attributes)} pairs, at most {MAX_ATTRIBUTES}",
        )
    if isinstance(body, Case) and len(body.scope) > MAX_SCOPE:
        raise TxRejected(
            RejectCode.OVERSIZE,
            f"{where}.scope has {len(body.scope)} entities, at most {MAX_SCOPE}",
        )
    strings = list(body_strings(body, where))
    for path, text in strings:
        if len(text) > MAX_STRING_CHARS:
            raise TxRejected(
                RejectCode.OVERSIZE,
                f"{path} has {len(text)} characters, at most {MAX_STRING_CHARS}",
            )
        # Control characters would let a submitter forge lines in logs and audits, and
        # invisible format characters (zero-width space) hide text from whoever reads it
        # (the raw-identifier screen drops them before it looks for digits).
        # isprintable() is False for every Cc and Cf character (and a few more), so
        # the common printable string skips the per-character look-up.
        if not text.isprintable() and any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
            raise TxRejected(RejectCode.BAD_BODY, f"{path} contains control characters")
    latest = tx.time_ms + ctx.max_skew_ms
    if isinstance(body, Report | Link) and body.observed_ms > latest:
        raise TxRejected(RejectCode.BAD_BODY, f"{where}.observed_ms is after the transaction")
    if isinstance(body, Access) and body.answered_ms > latest:
        raise TxRejected(RejectCode.BAD_BODY, f"{where}.answered_ms is after the transaction")
    if isinstance(body, Case) and body.expires_ms <= tx.time_ms:
        raise TxRejected(RejectCode.BAD_BODY, f"{where}.expires_ms is not in the future")
    if isinstance(body, PsiRun):
        _check_psi_run(tx, body, ctx, latest)
    for path, text in strings:
        # Attributes are typed values of a closed schema (``node.ledger.attributes``),
        # checked when the body decoded: they cannot hold free text. Every other string
        # that remains on the ledger (case ids above all) is screened.
        if path.startswith(ATTRIBUTES_PATH):
            continue
        found = find_raw_identifier(text, structured=path.endswith(".case_id"))
        if found is not None:
            raise TxRejected(
                RejectCode.RAW_IDENTIFIER,
                f"{path} seems to contain {found}: a raw identifier never enters a "
                "transaction; submit it as an entity reference (type, pseudonym)",
            )


def _check_psi_run(tx: Transaction, body: PsiRun, ctx: TxContext, latest: int) -> None:
    for role in ("initiator", "responder"):
        if getattr(body, role) not in ctx.members:
            raise TxRejected(RejectCode.BAD_BODY, f"psi.{role} is not a member")
    if tx.member not in (body.initiator, body.responder):
        raise TxRejected(
            RejectCode.BAD_BODY,
            f"member {tx.member!r} took no part in this run: only its initiator or its "
            "responder records it",
        )
    if body.finished_ms > latest:
        raise TxRejected(RejectCode.BAD_BODY, "psi.finished_ms is after the transaction")
