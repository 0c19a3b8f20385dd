"""Hashing and Ed25519 signatures over domain-separated bytes.

PyNaCl is a pure computation here (no I/O, no clock); randomness for key generation
comes from the caller, so the simulator stays deterministic.
"""

from __future__ import annotations

import hashlib

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

DOMAIN = b"crosstrace/v1/"
DIGEST_SIZE = 32
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32


def hash_bytes(domain: str, data: bytes) -> bytes:
    """BLAKE2b-256 of ``data`` under a named domain, so no two uses can collide."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    tag = DOMAIN + domain.encode()
    h.update(len(tag).to_bytes(2, "big"))
    h.update(tag)
    h.update(data)
    return h.digest()


def signing_bytes(chain_id: str, kind: str, body: bytes) -> bytes:
    """The exact bytes a member signs: domain, chain id and message kind, then the body."""
    chain = chain_id.encode()
    label = DOMAIN + b"sig/" + kind.encode()
    return len(label).to_bytes(2, "big") + label + len(chain).to_bytes(2, "big") + chain + body


class Signer:
    """A member's node key."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True
