"""Keyed pseudonyms: the only form in which an identifier reaches the ledger.

pseudonym = BLAKE2b-256(key = consortium pseudonym key, person = "ct1/" + entity type,
data = normalised value). The key is shared by members out of band and never goes on
the ledger, so anyone holding only the ledger cannot test guesses: phone numbers and
ID numbers are small spaces that an unkeyed hash would give away by brute force. The
entity type in the personalisation keeps equal strings of different types (a 15-digit
IMEI and a 15-digit account number) apart.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from consensus.crypto import hash_bytes
from node.identifiers.normalize import EntityType, NormalizationError, as_entity_type, normalize

KEY_SIZE = 32
PSEUDONYM_SIZE = 32
_PERSON_PREFIX = b"ct1/"
_MAX_KEY_FILE_BYTES = 4096
_TYPE_NAMES = frozenset(t.value for t in EntityType)


def personalization(entity_type: EntityType | str) -> bytes:
    label = _PERSON_PREFIX + as_entity_type(entity_type).value.encode()
    assert len(label) <= hashlib.blake2b.PERSON_SIZE
    return label


def pseudonym(key: bytes, entity_type: EntityType | str, normalized: str) -> bytes:
    """Keyed BLAKE2b-256 of an already normalised value.

    Refuses a value that is not in normal form: hashing a raw spelling would give a
    pseudonym nobody else can ever match, and nothing would reveal the mistake.
    """
    if len(key) != KEY_SIZE:
        raise ValueError(f"a pseudonym key is {KEY_SIZE} bytes, got {len(key)}")
    et = as_entity_type(entity_type)
    if normalize(et, normalized) != normalized:
        raise NormalizationError(f"{et}: value is not in normal form; normalize it first")
    h = hashlib.blake2b(digest_size=PSEUDONYM_SIZE, key=key, person=personalization(et))
    h.update(normalized.encode("utf-8"))
    return h.digest()


@dataclass(frozen=True)
class EntityRef:
    """How a transaction names an entity: its type and keyed pseudonym."""

    type: str
    pseudonym: bytes

    def __post_init__(self) -> None:
        # Runs on decode too, so a malformed reference never leaves the codec.
        if self.type not in _TYPE_NAMES:
            raise ValueError(f"unknown entity type {self.type!r}")
        # An EntityType member is a str subclass; store the plain string so equality,
        # hashing and encoding never depend on which of the two a caller passed.
        object.__setattr__(self, "type", str(self.type))
        if len(self.pseudonym) != PSEUDONYM_SIZE:
            raise ValueError(f"a pseudonym is {PSEUDONYM_SIZE} bytes, got {len(self.pseudonym)}")

    @property
    def entity_type(self) -> EntityType:
        return EntityType(self.type)


class PseudonymKeyError(ValueError):
    """A pseudonym key file that is missing, malformed or readable by others."""


@dataclass(frozen=True)
class PseudonymKey:
    """The consortium pseudonym key. Its repr never shows the secret."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_SIZE:
            raise ValueError(f"a pseudonym key is {KEY_SIZE} bytes, got {len(self.secret)}")

    @classmethod
    def generate(cls) -> PseudonymKey:
        return cls(secrets.token_bytes(KEY_SIZE))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PseudonymKey:
        """Read 64 hex digits from a regular file that only its owner can access."""
        p = Path(path)
        try:
            # O_NOFOLLOW: a symlink would let the checked file differ from the read one.
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise PseudonymKeyError(f"{p}: cannot open the pseudonym key: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PseudonymKeyError(f"{p}: the pseudonym key must be a regular file")
            if st.st_mode & 0o077:
                raise PseudonymKeyError(
                    f"{p}: the pseudonym key is accessible to others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600"
                )
            if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
                raise PseudonymKeyError(f"{p}: the pseudonym key belongs to another user")
            data = os.read(fd, _MAX_KEY_FILE_BYTES + 1)
        finally:
            os.close(fd)
        text = data.decode("ascii", errors="replace").strip()
        if len(data) > _MAX_KEY_FILE_BYTES or len(text) != 2 * KEY_SIZE:
            raise PseudonymKeyError(f"{p}: expected {2 * KEY_SIZE} hex digits")
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise PseudonymKeyError(f"{p}: expected {2 * KEY_SIZE} hex digits") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key to a new owner-only file; never overwrites an existing one."""
        p = Path(path)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise PseudonymKeyError(f"{p}: already exists; refusing to overwrite a key") from None
        with os.fdopen(fd, "w") as f:
            f.write(self.secret.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def fingerprint(self) -> str:
        """A short public digest, so members can confirm out of band they hold one key."""
        return hash_bytes("pseudonym-key-fingerprint", self.secret)[:8].hex()

    def ref(self, entity_type: EntityType | str, raw: str, default_region: str = "CN") -> EntityRef:
        return entity_ref(self.secret, entity_type, raw, default_region)


def entity_ref(
    key: bytes | PseudonymKey,
    entity_type: EntityType | str,
    raw: str,
    default_region: str = "CN",
) -> EntityRef:
    """Normalise ``raw`` and pseudonymise it; raises ``NormalizationError``."""
    secret = key.secret if isinstance(key, PseudonymKey) else key
    et = as_entity_type(entity_type)
    value = normalize(et, raw, default_region)
    return EntityRef(et.value, pseudonym(secret, et, value))
