"""Private details: hash on the ledger, data off it.

A report (or a link) may come with details that must not be on every member's disk:
the victim's name, the raw number, a case officer's note. The submitter keeps them off
the ledger and puts a commitment in the transaction instead (``Report.details_commitment``,
``Link.evidence_commitment``); the details travel over the Noise channel to the members
entitled to them only (``node.details.service``), and each recipient can show that what
it holds is what the submitter committed to.

A case is the same: its purpose on the ledger is a category, and the opener's written
justification (``justification_details``: one field, ``justification``, at most
``MAX_JUSTIFICATION_CHARS`` characters) is a private detail committed to by
``Case.justification_commitment`` and sent to the members that approve cases
(``case_recipients``), so an approver reads what it approves and can check it against
the ledger.

Details. A small map of text fields (``Details``): keys are lower-case identifiers,
values are free text, raw identifiers included (that is what they are for), sorted by
key so one map has one encoding. Sizes are bounded (``MAX_FIELDS``, ``MAX_KEY_CHARS``,
``MAX_VALUE_CHARS``, and ``MAX_DETAILS_BYTES`` for the whole encoding), so a details frame
is small whatever the sender puts in it. The bytes that are committed, sent and stored
are the canonical encoding (``encode_details``); ``decode_details`` accepts nothing else.

Commitment. ``commitment(salt, details) = BLAKE2b-256`` keyed with a fresh random 32-byte
salt, over a length-prefixed domain tag followed by the canonical details bytes.
Keyed BLAKE2b is a PRF, so without the salt the commitment reveals nothing about the
details, however guessable they are ("victim: yes"); collision resistance makes it
binding: no other (salt, details) pair gives the same value. The salt travels with the
details and is stored with them, never on the ledger. The domain tag keeps these
commitments apart from every other BLAKE2b use in the system.

Checking a delivery (``check_delivery``) is a pure function of the committed
transaction, the sending member and the bytes received: the sender must be the member
who signed the transaction, and the commitment of the received salt and details must
equal the one in the transaction's body. Every node decides the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consensus.codec import DecodeError, decode_value, encode_value
from consensus.crypto import DIGEST_SIZE
from net.wire import MAX_DETAILS_BYTES, SALT_SIZE
from node.ledger.cases import APPROVER_ROLE
from node.ledger.kinds import Case, Link, Report
from node.ledger.transactions import decode_body, decode_tx
from node.setup.genesis import Genesis

__all__ = [
    "MAX_DETAILS_BYTES",
    "SALT_SIZE",
    "DetailField",
    "Details",
    "case_recipients",
    "check_delivery",
    "commitment",
    "committed_commitment",
    "decode_details",
    "default_recipients",
    "encode_details",
    "justification_details",
    "justification_of",
    "new_salt",
]

MAX_FIELDS = 64
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 4096
DOMAIN = b"crosstrace/private-details/v1"
# The investigators follow every case; by default they get the details of each report.
DEFAULT_ROLE = "investigator"

_KEY = re.compile(r"[a-z][a-z0-9_]*")
# A case's written justification: the one field of its details.
JUSTIFICATION = "justification"
MAX_JUSTIFICATION_CHARS = 2000
# Control and format characters, and line and paragraph separators: only "\n" breaks lines.
_NOT_IN_TEXT = frozenset({"Cc", "Cf", "Zl", "Zp"})


@dataclass(frozen=True)
class DetailField:
    key: str
    value: str

    def __post_init__(self) -> None:
        if not (len(self.key) <= MAX_KEY_CHARS and _KEY.fullmatch(self.key)):
            raise ValueError(
                f"detail keys are lower-case [a-z][a-z0-9_]*, at most {MAX_KEY_CHARS} characters"
            )
        if len(self.value) > MAX_VALUE_CHARS:
            raise ValueError(f"detail {self.key!r} is longer than {MAX_VALUE_CHARS} characters")


@dataclass(frozen=True)
class Details:
    fields: tuple[DetailField, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.fields) <= MAX_FIELDS:
            raise ValueError(f"details hold 1 to {MAX_FIELDS} fields, got {len(self.fields)}")
        keys = [f.key for f in self.fields]
        # One order per map, so equal details encode (and commit) equally.
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise ValueError("detail keys must be unique and sorted")

    @classmethod
    def of(cls, pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> Details:
        """From a map or (key, value) pairs; a key given twice is an error, not a
        silent overwrite (the operator would lose a value without noticing)."""
        items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"detail key given twice: {', '.join(twice)}")
        return cls(tuple(DetailField(k, v) for k, v in sorted(items)))

    def as_dict(self) -> dict[str, str]:
        return {f.key: f.value for f in self.fields}


def encode_details(details: Details) -> bytes:
    data = encode_value(details)
    if len(data) > MAX_DETAILS_BYTES:
        raise ValueError(f"the details take {len(data)} bytes; at most {MAX_DETAILS_BYTES}")
    return data


def decode_details(data: bytes) -> Details:
    """Strict: only the canonical encoding of valid details; else ``DecodeError``."""
    return decode_value(Details, data, MAX_DETAILS_BYTES)


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_SIZE)


def commitment(salt: bytes, details: bytes) -> bytes:
    """The commitment a transaction carries for ``details`` (canonical bytes)."""
    if len(salt) != SALT_SIZE:
        raise ValueError(f"the salt must be {SALT_SIZE} bytes, got {len(salt)}")
    h = hashlib.blake2b(digest_size=DIGEST_SIZE, key=salt)
    h.update(len(DOMAIN).to_bytes(2, "big"))
    h.update(DOMAIN)
    h.update(details)
    return h.digest()


def matches(salt: bytes, details: bytes, committed: bytes | None) -> bool:
    if committed is None or len(salt) != SALT_SIZE:
        return False
    return hmac.compare_digest(commitment(salt, details), committed)


def committed_commitment(tx_bytes: bytes) -> tuple[str, bytes | None]:
    """The signing member of a stored transaction and the commitment its body carries
    (None for kinds without one, or a body that commits to nothing)."""
    tx = decode_tx(tx_bytes)
    body = decode_body(tx)
    if isinstance(body, Report):
        return tx.member, body.details_commitment
    if isinstance(body, Link):
        return tx.member, body.evidence_commitment
    if isinstance(body, Case):
        return tx.member, body.justification_commitment
    return tx.member, None


def check_delivery(tx_bytes: bytes, sender: str, salt: bytes, details: bytes) -> str:
    """``"stored"`` when ``details`` from member ``sender`` may be kept for the committed
    transaction ``tx_bytes``, else why not: ``"not_signer"``, ``"no_commitment"`` or
    ``"mismatch"`` (the statuses of ``net.wire.DetailsAck``)."""
    member, committed = committed_commitment(tx_bytes)
    if member != sender:
        return "not_signer"
    if committed is None:
        return "no_commitment"
    if not matches(salt, details, committed):
        return "mismatch"
    try:
        decode_details(details)
    except DecodeError:
        # Only a signer that committed to malformed bytes gets here; they match, but
        # nobody could read them.
        return "mismatch"
    return "stored"


def justification_problem(text: object) -> str | None:
    """Why ``text`` cannot be a case's justification, or None. It is free text (names
    and numbers included: it never goes on the ledger), but bounded, not blank, and
    without control characters other than line breaks, which would let it forge lines
    on an approver's terminal."""
    if not isinstance(text, str):
        return "the justification must be a string"
    if not text.strip():
        return "the justification must not be empty: approvers need to read why"
    if len(text) > MAX_JUSTIFICATION_CHARS:
        return f"the justification has {len(text)} characters, at most {MAX_JUSTIFICATION_CHARS}"
    if any(unicodedata.category(c) in _NOT_IN_TEXT and c != "\n" for c in text):
        return "the justification contains control characters (line breaks are fine)"
    return None


def justification_details(text: str) -> Details:
    """A case's justification as the details its commitment covers; ``ValueError``
    (with ``justification_problem``'s words) if it cannot be one."""
    problem = justification_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return Details.of({JUSTIFICATION: text})


def justification_of(details: Mapping[str, str]) -> str | None:
    """The justification in a case's details, None if they hold none."""
    return details.get(JUSTIFICATION)


def case_recipients(genesis: Genesis, opener: str) -> tuple[str, ...]:
    """Who receives a case's justification: the members that approve cases, and the
    opener, in genesis order."""
    return tuple(m.name for m in genesis.members if APPROVER_ROLE in m.roles or m.name == opener)


def default_recipients(genesis: Genesis, submitter: str) -> tuple[str, ...]:
    """The members holding the investigator role, and the submitter itself."""
    return tuple(m.name for m in genesis.members if DEFAULT_ROLE in m.roles or m.name == submitter)


class UnknownMembers(ValueError):
    def __init__(self, unknown: list[str], genesis: Genesis) -> None:
        names = ", ".join(m.name for m in genesis.members)
        which = ", ".join(repr(u) for u in unknown)
        super().__init__(
            f"no member of chain {genesis.chain_id!r} is named {which}; the members are {names}"
        )
        self.unknown = unknown


def resolve_recipients(
    genesis: Genesis, submitter: str, names: Iterable[str] | None
) -> tuple[str, ...]:
    """The recipients in genesis order, the submitter always among them; ``None`` gives
    ``default_recipients``. Unknown names raise ``UnknownMembers``."""
    if names is None:
        return default_recipients(genesis, submitter)
    wanted = {n.strip() for n in names if n.strip()}
    known = {m.name for m in genesis.members}
    unknown = sorted(wanted - known)
    if unknown:
        raise UnknownMembers(unknown, genesis)
    wanted.add(submitter)
    return tuple(m.name for m in genesis.members if m.name in wanted)
