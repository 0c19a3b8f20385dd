"""The files of the pseudonym key ceremony: what each holds, their JSON form, reading and
writing. The checks that need the draft (signatures, indexes, shares) are in
``node.setup.ceremony``; here a file is refused only when it is not well formed.

Every file is a JSON object with ``"kind"`` and ``"version"``; bytes are lowercase hex.
Deals, complaints and answers carry their author's Ed25519 signature over the
canonical encoding of the rest (``signed_message``), bound to the draft's hash.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from consensus.codec import encode_value
from consensus.crypto import SIGNATURE_SIZE, hash_bytes, signing_bytes
from node.setup.keys import reject_duplicate_keys

FILE_VERSION = 1
DEAL_KIND = "crosstrace-dkg-deal"
DEALS_KIND = "crosstrace-dkg-deals"
COMPLAINTS_KIND = "crosstrace-dkg-complaints"
ANSWER_KIND = "crosstrace-dkg-answer"
HASH_SIZE = 32
# A deal for 128 members is about 40 KB; a bundle of 128 of them about 5 MB.
_MAX_FILE_BYTES = 16 * 1024 * 1024


class CeremonyError(ValueError):
    """A ceremony file or step refused; the message names the file, the member and why."""


@dataclass(frozen=True)
class Deal:
    """Dealer's commitments and, for each member in genesis order, its share sealed to
    that member alone (``nonce || crypto_box``)."""

    draft_hash: bytes
    dealer: str
    commitments: tuple[bytes, ...]
    ciphertexts: tuple[bytes, ...]
    signature: bytes = b""


@dataclass(frozen=True)
class DealBundle:
    """Every member's deal, in genesis order, as the assembler collected them."""

    draft_hash: bytes
    deals: tuple[Deal, ...]

    def hash(self) -> bytes:
        return hash_bytes("dkg-deals", encode_value(self))

    def deal_of(self, dealer: str) -> Deal | None:
        return next((d for d in self.deals if d.dealer == dealer), None)


@dataclass(frozen=True)
class Complaints:
    """The dealers whose share to ``member`` failed its check or did not decrypt."""

    draft_hash: bytes
    deals_hash: bytes
    member: str
    against: tuple[str, ...]
    signature: bytes = b""


@dataclass(frozen=True)
class RevealedShare:
    recipient: str
    share: bytes


@dataclass(frozen=True)
class Answer:
    """A dealer's reply to the complaints against it: the shares, revealed in the clear."""

    draft_hash: bytes
    deals_hash: bytes
    dealer: str
    revealed: tuple[RevealedShare, ...]
    signature: bytes = b""


Signed = Deal | Complaints | Answer
_KINDS: dict[type, str] = {Deal: DEAL_KIND, Complaints: COMPLAINTS_KIND, Answer: ANSWER_KIND}


def signed_message(chain_id: str, item: Signed) -> bytes:
    """The bytes the author signs: the item without its signature, under its kind."""
    unsigned = dataclasses.replace(item, signature=b"")
    return signing_bytes(chain_id, _KINDS[type(item)], encode_value(unsigned))


# ---- JSON form -------------------------------------------------------------------------


class _Reader:
    """Strict field access on a decoded object; every refusal names ``where``."""

    def __init__(self, where: str, doc: object, fields: Sequence[str], prefix: str = "") -> None:
        self.where = where
        self.prefix = prefix
        if not isinstance(doc, dict):
            raise CeremonyError(f"{where}: {prefix or 'the file'}: expected a JSON object")
        missing = [f for f in fields if f not in doc]
        unknown = [f for f in doc if f not in fields]
        if missing:
            raise CeremonyError(f"{where}: missing field {prefix}{missing[0]}")
        if unknown:
            raise CeremonyError(f"{where}: unknown field {prefix}{unknown[0]}")
        self.doc: dict[str, Any] = doc

    def fail(self, name: str, problem: str) -> CeremonyError:
        return CeremonyError(f"{self.where}: {self.prefix}{name}: {problem}")

    def string(self, name: str) -> str:
        value = self.doc[name]
        if not isinstance(value, str) or not value:
            raise self.fail(name, "expected a non-empty string")
        return value

    def hex(self, name: str, size: int | None = None) -> bytes:
        return self.hex_value(name, self.doc[name], size)

    def hex_value(self, name: str, value: object, size: int | None) -> bytes:
        if not isinstance(value, str) or (size is not None and len(value) != 2 * size):
            shown = f"{2 * size} " if size is not None else ""
            raise self.fail(name, f"expected {shown}hex characters")
        if not all(c in "0123456789abcdef" for c in value):
            raise self.fail(name, "expected lowercase hex characters")
        return bytes.fromhex(value)

    def array(self, name: str) -> list[Any]:
        value = self.doc[name]
        if not isinstance(value, list):
            raise self.fail(name, "expected an array")
        return value

    def hex_array(self, name: str) -> tuple[bytes, ...]:
        return tuple(
            self.hex_value(f"{name}[{i}]", v, None) for i, v in enumerate(self.array(name))
        )

    def strings(self, name: str) -> tuple[str, ...]:
        values = self.array(name)
        if not all(isinstance(v, str) and v for v in values):
            raise self.fail(name, "expected an array of member names")
        return tuple(values)


def _header(where: str, doc: object, kind: str, fields: Sequence[str]) -> _Reader:
    if isinstance(doc, dict) and doc.get("kind") != kind:
        raise CeremonyError(f"{where}: expected a {kind} file, got kind {doc.get('kind')!r}")
    reader = _Reader(where, doc, ("kind", "version", *fields))
    version = reader.doc["version"]
    if type(version) is not int or version != FILE_VERSION:
        raise CeremonyError(
            f"{where}: unsupported version {version!r} (this program reads {FILE_VERSION})"
        )
    return reader


_DEAL_FIELDS = ("draft_hash", "dealer", "commitments", "ciphertexts", "signature")


def parse_deal(doc: object, where: str) -> Deal:
    r = _header(where, doc, DEAL_KIND, _DEAL_FIELDS)
    return Deal(
        draft_hash=r.hex("draft_hash", HASH_SIZE),
        dealer=r.string("dealer"),
        commitments=r.hex_array("commitments"),
        ciphertexts=r.hex_array("ciphertexts"),
        signature=r.hex("signature", SIGNATURE_SIZE),
    )


def deal_to_dict(deal: Deal) -> dict[str, Any]:
    return {
        "kind": DEAL_KIND,
        "version": FILE_VERSION,
        "draft_hash": deal.draft_hash.hex(),
        "dealer": deal.dealer,
        "commitments": [c.hex() for c in deal.commitments],
        "ciphertexts": [c.hex() for c in deal.ciphertexts],
        "signature": deal.signature.hex(),
    }


def parse_bundle(doc: object, where: str) -> DealBundle:
    r = _header(where, doc, DEALS_KIND, ("draft_hash", "deals"))
    deals = tuple(parse_deal(d, f"{where}: deals[{i}]") for i, d in enumerate(r.array("deals")))
    return DealBundle(draft_hash=r.hex("draft_hash", HASH_SIZE), deals=deals)


def bundle_to_dict(bundle: DealBundle) -> dict[str, Any]:
    return {
        "kind": DEALS_KIND,
        "version": FILE_VERSION,
        "draft_hash": bundle.draft_hash.hex(),
        "deals": [deal_to_dict(d) for d in bundle.deals],
    }


_COMPLAINT_FIELDS = ("draft_hash", "deals_hash", "member", "against", "signature")


def parse_complaints(doc: object, where: str) -> Complaints:
    r = _header(where, doc, COMPLAINTS_KIND, _COMPLAINT_FIELDS)
    return Complaints(
        draft_hash=r.hex("draft_hash", HASH_SIZE),
        deals_hash=r.hex("deals_hash", HASH_SIZE),
        member=r.string("member"),
        against=r.strings("against"),
        signature=r.hex("signature", SIGNATURE_SIZE),
    )


def complaints_to_dict(complaints: Complaints) -> dict[str, Any]:
    return {
        "kind": COMPLAINTS_KIND,
        "version": FILE_VERSION,
        "draft_hash": complaints.draft_hash.hex(),
        "deals_hash": complaints.deals_hash.hex(),
        "member": complaints.member,
        "against": list(complaints.against),
        "signature": complaints.signature.hex(),
    }


_ANSWER_FIELDS = ("draft_hash", "deals_hash", "dealer", "revealed", "signature")


def parse_answer(doc: object, where: str) -> Answer:
    r = _header(where, doc, ANSWER_KIND, _ANSWER_FIELDS)
    revealed = []
    for i, item in enumerate(r.array("revealed")):
        ir = _Reader(where, item, ("recipient", "share"), f"revealed[{i}].")
        revealed.append(RevealedShare(ir.string("recipient"), ir.hex("share", 32)))
    return Answer(
        draft_hash=r.hex("draft_hash", HASH_SIZE),
        deals_hash=r.hex("deals_hash", HASH_SIZE),
        dealer=r.string("dealer"),
        revealed=tuple(revealed),
        signature=r.hex("signature", SIGNATURE_SIZE),
    )


def answer_to_dict(answer: Answer) -> dict[str, Any]:
    return {
        "kind": ANSWER_KIND,
        "version": FILE_VERSION,
        "draft_hash": answer.draft_hash.hex(),
        "deals_hash": answer.deals_hash.hex(),
        "dealer": answer.dealer,
        "revealed": [{"recipient": r.recipient, "share": r.share.hex()} for r in answer.revealed],
        "signature": answer.signature.hex(),
    }


# ---- files -----------------------------------------------------------------------------

T = TypeVar("T")


def _load(path: Path | str, parse: Callable[[object, str], T]) -> T:
    path = Path(path)
    where = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CeremonyError(f"{where}: cannot read: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise CeremonyError(f"{where}: larger than {_MAX_FILE_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=reject_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CeremonyError(f"{where}: invalid JSON: {exc}") from None
    return parse(doc, where)


def load_deal(path: Path | str) -> Deal:
    return _load(path, parse_deal)


def load_bundle(path: Path | str) -> DealBundle:
    return _load(path, parse_bundle)


def load_complaints(path: Path | str) -> Complaints:
    return _load(path, parse_complaints)


def load_answer(path: Path | str) -> Answer:
    return _load(path, parse_answer)


def load_any(path: Path | str) -> Deal | DealBundle | Complaints | Answer:
    """A ceremony file of whichever kind it says it is."""

    def parse(doc: object, where: str) -> Deal | DealBundle | Complaints | Answer:
        kind = doc.get("kind") if isinstance(doc, dict) else None
        parsers: dict[object, Callable[[object, str], Deal | DealBundle | Complaints | Answer]]
        parsers = {
            DEAL_KIND: parse_deal,
            DEALS_KIND: parse_bundle,
            COMPLAINTS_KIND: parse_complaints,
            ANSWER_KIND: parse_answer,
        }
        if kind not in parsers:
            raise CeremonyError(f"{where}: not a ceremony file (kind {kind!r})")
        return parsers[kind](doc, where)

    return _load(path, parse)


def to_dict(item: Deal | DealBundle | Complaints | Answer) -> dict[str, Any]:
    if isinstance(item, Deal):
        return deal_to_dict(item)
    if isinstance(item, DealBundle):
        return bundle_to_dict(item)
    if isinstance(item, Complaints):
        return complaints_to_dict(item)
    return answer_to_dict(item)


def save_ceremony_file(path: Path | str, item: Deal | DealBundle | Complaints | Answer) -> None:
    """Create ``path`` with ``item``; never replaces a file, so a step run twice cannot
    silently swap a deal that others already checked."""
    path = Path(path)
    data = (json.dumps(to_dict(item), indent=2) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise CeremonyError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise CeremonyError(f"{path}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
