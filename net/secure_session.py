"""The secure channel between two members: Noise_XX with static keys derived from the
members' Ed25519 node keys, so a peer's Noise key is computable from its genesis entry.
Sans-I/O like ``net.noise``: bytes in, bytes out."""

from __future__ import annotations

from typing import TypedDict, Unpack

import nacl.bindings as sodium
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from net.noise import (
    MAX_MESSAGE,
    MAX_PLAINTEXT,
    REKEY_INTERVAL,
    XX_PROTOCOL,
    BadKeyError,
    CipherState,
    HandshakeState,
    HandshakeStateError,
    KeyPair,
    MessageSizeError,
    NoiseError,
)

# --- static keys from members' Ed25519 node keys ---


def x25519_private_from_ed25519(key: bytes | SigningKey) -> bytes:
    """The X25519 private key for an Ed25519 seed (32 bytes), libsodium secret key (64)
    or ``SigningKey``: one key per member means one secret to protect and distribute."""
    if isinstance(key, SigningKey):
        key = bytes(key)  # the 32-byte seed
    if len(key) == 32:
        _, key = sodium.crypto_sign_seed_keypair(key)
    if len(key) != 64:
        raise BadKeyError(f"an Ed25519 seed is 32 bytes (secret key 64), got {len(key)}")
    return sodium.crypto_sign_ed25519_sk_to_curve25519(key)


def x25519_public_from_ed25519(public_key: bytes | VerifyKey) -> bytes:
    """A member's Noise static public key, from its genesis Ed25519 public key."""
    raw = bytes(public_key)
    if len(raw) != 32:
        raise BadKeyError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    try:
        return sodium.crypto_sign_ed25519_pk_to_curve25519(raw)
    except CryptoError:
        raise BadKeyError("not a valid Ed25519 public key") from None


def static_keypair_from_ed25519(key: bytes | SigningKey) -> KeyPair:
    return KeyPair.from_private(x25519_private_from_ed25519(key))


# --- the session the transport uses ---


class SessionOptions(TypedDict, total=False):
    rekey_interval: int
    ephemeral: KeyPair  # tests only: a fixed ephemeral key


class SecureSession:
    """``Noise_XX`` between two members, then transport encryption.

    Handshake: the initiator writes, reads, writes; the responder reads, writes, reads.
    The initiator knows ``remote_static`` after its read, the responder after its last
    read; the caller must check it against the genesis members right then and drop the
    connection if it is unknown. The first message's payload travels in clear.

    Transport: one ``encrypt`` output is one Noise message; the stream below must keep
    message boundaries and order (``net.framing``). Each direction rekeys after every
    ``rekey_interval`` messages; both sides count the same nonces, so they rekey in
    lockstep without signalling. Any error on received bytes kills the session: the
    peer is faulty or under attack, and the connection must be closed.
    """

    def __init__(
        self,
        static_seed: bytes | SigningKey,
        prologue: bytes = b"",
        *,
        initiator: bool,
        rekey_interval: int = REKEY_INTERVAL,
        ephemeral: KeyPair | None = None,
    ) -> None:
        if rekey_interval < 1:
            raise ValueError("rekey_interval must be at least 1")
        s = static_keypair_from_ed25519(static_seed)
        self._hs: HandshakeState | None = HandshakeState(
            XX_PROTOCOL, initiator, prologue, s=s, e=ephemeral
        )
        self.is_initiator = initiator
        self.rekey_interval = rekey_interval
        self.remote_static: bytes | None = None
        self.handshake_hash: bytes | None = None
        self._send: CipherState | None = None
        self._recv: CipherState | None = None
        self._broken: str | None = None

    @classmethod
    def initiator(
        cls, static_seed: bytes | SigningKey, prologue: bytes = b"", **opts: Unpack[SessionOptions]
    ) -> SecureSession:
        return cls(static_seed, prologue, initiator=True, **opts)

    @classmethod
    def responder(
        cls, static_seed: bytes | SigningKey, prologue: bytes = b"", **opts: Unpack[SessionOptions]
    ) -> SecureSession:
        return cls(static_seed, prologue, initiator=False, **opts)

    @property
    def handshake_complete(self) -> bool:
        return self._send is not None

    def write_handshake(self, payload: bytes = b"") -> bytes:
        """The next handshake message to send, carrying ``payload``."""
        return self._handshake_step(True, payload)

    def read_handshake(self, data: bytes) -> bytes:
        """Process a received handshake message; returns its payload."""
        return self._handshake_step(False, data)

    def _handshake_step(self, writing: bool, data: bytes) -> bytes:
        if self._broken is not None:
            raise HandshakeStateError(f"session unusable: {self._broken}")
        hs = self._hs
        if hs is None:
            raise HandshakeStateError("message received in the wrong handshake state: done")
        try:
            out = hs.write_message(data) if writing else hs.read_message(data)
        except NoiseError as exc:
            # A wrong turn or an oversized payload to send leaves the state intact;
            # anything that got part-way through a message does not.
            if hs.failed:
                self._broken = str(exc)
            raise
        self.remote_static = hs.rs
        if hs.complete:
            self._send, self._recv = hs.ciphers
            self.handshake_hash = hs.handshake_hash
            self._hs = None  # the ephemeral keys go with it
        return out

    def _ready(self) -> tuple[CipherState, CipherState]:
        if self._broken is not None:
            raise HandshakeStateError(f"session unusable: {self._broken}")
        if self._send is None or self._recv is None:
            raise HandshakeStateError("handshake not complete: no transport messages yet")
        return self._send, self._recv

    def encrypt(self, plaintext: bytes) -> bytes:
        send, _ = self._ready()
        if len(plaintext) > MAX_PLAINTEXT:
            raise MessageSizeError(f"plaintext of {len(plaintext)} bytes over {MAX_PLAINTEXT}")
        ct = send.encrypt_with_ad(b"", plaintext)
        if send.n % self.rekey_interval == 0:
            send.rekey()
        return ct

    def decrypt(self, ciphertext: bytes) -> bytes:
        _, recv = self._ready()
        try:
            if len(ciphertext) > MAX_MESSAGE:
                raise MessageSizeError(f"message of {len(ciphertext)} bytes over {MAX_MESSAGE}")
            pt = recv.decrypt_with_ad(b"", ciphertext)
        except NoiseError as exc:
            self._broken = str(exc)
            raise
        if recv.n % self.rekey_interval == 0:
            recv.rekey()
        return pt
