"""The Noise Protocol Framework (revision 34), sans-I/O, on PyNaCl primitives.

Only the suite members use is implemented, ``25519_ChaChaPoly_BLAKE2b``, but the
``HandshakeState`` is generic over patterns (NN, KK, XK, IK, XX, psk modifiers) so that
every published test vector for the suite can be checked: the vectors are the evidence
that this matches the specification. ``net.secure_session`` builds the members'
channel on it. No sockets, clocks or tasks; the only side effect is drawing ephemeral
keys from the OS random source (tests inject them).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.bindings as sodium
import nacl.utils
from nacl.exceptions import CryptoError

DHLEN = 32
HASHLEN = 64
BLOCKLEN = 128  # BLAKE2b's, which hashlib.blake2b reports to hmac as block_size
KEYLEN = 32
TAGLEN = 16
MAX_MESSAGE = 65535
MAX_PLAINTEXT = MAX_MESSAGE - TAGLEN
MAX_NONCE = 2**64 - 1
# Rekeying bounds how much traffic one key protects and gives forward secrecy inside a
# long-lived connection; every 2**20 messages costs one extra AEAD call per million.
REKEY_INTERVAL = 2**20
SUITE = "25519_ChaChaPoly_BLAKE2b"
XX_PROTOCOL = "Noise_XX_" + SUITE


class NoiseError(Exception):
    """Anything wrong in a handshake or transport message; drop the connection."""


class HandshakeStateError(NoiseError):
    """Not allowed now: wrong turn, handshake not done, session already failed."""


class MessageSizeError(NoiseError):
    """Too short for its pattern, or longer than the 65535 bytes Noise allows."""


class DecryptError(NoiseError):
    """Authentication failed: altered, replayed, reordered or truncated bytes."""


class NonceExhaustedError(NoiseError):
    """Nonce 2**64-1 is reserved (rekey uses it, and the counter would wrap)."""


class BadKeyError(NoiseError):
    """Wrong size, or rejected by libsodium (e.g. a low-order point)."""


# --- the suite's primitives (spec sections 4.1-4.3) ---


@dataclass(frozen=True)
class KeyPair:
    private: bytes = field(repr=False)  # never in logs or tracebacks
    public: bytes

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        if len(private) != DHLEN:
            raise BadKeyError(f"an X25519 private key is {DHLEN} bytes, got {len(private)}")
        return cls(private, sodium.crypto_scalarmult_base(private))

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_private(nacl.utils.random(DHLEN))


def dh(keypair: KeyPair, public: bytes) -> bytes:
    if len(public) != DHLEN:
        raise BadKeyError(f"an X25519 public key is {DHLEN} bytes, got {len(public)}")
    try:
        return sodium.crypto_scalarmult(keypair.private, public)
    except CryptoError:
        # libsodium refuses low-order points (all-zero output); Noise allows either
        # behaviour, and refusing is the safer one.
        raise BadKeyError("Diffie-Hellman rejected the peer's key (low-order point)") from None


def _nonce(n: int) -> bytes:
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASHLEN).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2b).digest()


def hkdf(chaining_key: bytes, ikm: bytes, num_outputs: int) -> tuple[bytes, ...]:
    temp_key = _hmac(chaining_key, ikm)
    out1 = _hmac(temp_key, b"\x01")
    out2 = _hmac(temp_key, out1 + b"\x02")
    if num_outputs == 2:
        return out1, out2
    return out1, out2, _hmac(temp_key, out2 + b"\x03")


# --- CipherState and SymmetricState (sections 5.1, 5.2) ---


class CipherState:
    def __init__(self, key: bytes | None = None) -> None:
        self.k: bytes | None = None
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        if len(key) != KEYLEN:
            raise BadKeyError(f"a cipher key is {KEYLEN} bytes, got {len(key)}")
        self.k, self.n = key, 0

    def has_key(self) -> bool:
        return self.k is not None

    def set_nonce(self, n: int) -> None:
        if not 0 <= n <= MAX_NONCE:
            raise NonceExhaustedError(f"nonce {n} outside 0..2**64-1")
        self.n = n

    def _key_and_nonce(self) -> tuple[bytes, bytes]:
        assert self.k is not None
        if self.n >= MAX_NONCE:
            raise NonceExhaustedError("nonce 2**64-1 reached: this cipher key is used up")
        return self.k, _nonce(self.n)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.k is None:
            return plaintext
        key, nonce = self._key_and_nonce()
        ct = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key)
        self.n += 1
        return ct

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self.k is None:
            return ciphertext
        key, nonce = self._key_and_nonce()
        error = DecryptError("decryption failed: tampered, replayed or out-of-order frame")
        if len(ciphertext) < TAGLEN:
            raise error  # PyNaCl raises a bare ValueError for these
        try:
            pt = sodium.crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key)
        except CryptoError:
            raise error from None  # n is not advanced, as the spec requires
        self.n += 1
        return pt

    def rekey(self) -> None:
        """Section 4.2 REKEY: the first 32 bytes of encrypting 32 zero bytes under nonce
        2**64-1. The nonce counter is left alone (section 11.3)."""
        if self.k is None:
            raise HandshakeStateError("cannot rekey a cipher that has no key")
        ct = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
            bytes(KEYLEN), b"", _nonce(MAX_NONCE), self.k
        )
        self.k = ct[:KEYLEN]


class SymmetricState:
    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher.initialize_key(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher.initialize_key(temp_k[:KEYLEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ct = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ct)
        return ct

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        pt = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return pt

    def split(self) -> tuple[CipherState, CipherState]:
        temp_k1, temp_k2 = hkdf(self.ck, b"", 2)
        return CipherState(temp_k1[:KEYLEN]), CipherState(temp_k2[:KEYLEN])


# --- handshake patterns (section 7) and modifiers (section 9) ---


@dataclass(frozen=True)
class HandshakePattern:
    initiator_pre: tuple[str, ...]
    responder_pre: tuple[str, ...]
    # Message i is written by the initiator when i is even, by the responder when odd.
    messages: tuple[tuple[str, ...], ...]


# Only the patterns the stored test vectors cover: an untested entry would be a claim
# nobody checked. Adding one is a line here plus its vector.
PATTERNS: dict[str, HandshakePattern] = {
    "NN": HandshakePattern((), (), (("e",), ("e", "ee"))),
    "KK": HandshakePattern(("s",), ("s",), (("e", "es", "ss"), ("e", "ee", "se"))),
    "XK": HandshakePattern((), ("s",), (("e", "es"), ("e", "ee"), ("s", "se"))),
    "IK": HandshakePattern((), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "XX": HandshakePattern((), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
}

_NAME = re.compile(r"Noise_([NKXI]{2})((?:psk\d+)(?:\+psk\d+)*)?_" + SUITE)


def parse_protocol_name(name: str) -> HandshakePattern:
    """The pattern for a full protocol name, psk modifiers applied (section 9.2)."""
    m = _NAME.fullmatch(name)
    if m is None or m.group(1) not in PATTERNS:
        raise NoiseError(f"unsupported Noise protocol {name!r}")
    base = PATTERNS[m.group(1)]
    messages = [list(msg) for msg in base.messages]
    seen: set[int] = set()
    for modifier in filter(None, (m.group(2) or "").split("+")):
        index = int(modifier[3:])
        if index in seen or index > len(messages) or modifier != f"psk{index}":
            raise NoiseError(f"invalid psk modifier {modifier!r} in {name!r}")
        seen.add(index)
        if index == 0:
            messages[0].insert(0, "psk")
        else:
            messages[index - 1].append("psk")
    return HandshakePattern(base.initiator_pre, base.responder_pre, tuple(map(tuple, messages)))


# --- HandshakeState (section 5.3) ---


class HandshakeState:
    """One party's side of a handshake. Any error part-way through a message leaves it
    failed for good: the half-applied message cannot be undone."""

    def __init__(
        self,
        protocol_name: str,
        initiator: bool,
        prologue: bytes = b"",
        *,
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        rs: bytes | None = None,
        psks: Sequence[bytes] = (),
    ) -> None:
        self.pattern = parse_protocol_name(protocol_name)
        self.initiator = initiator
        self.s, self.e, self.rs = s, e, rs
        self.re: bytes | None = None
        self._psks = list(psks)
        tokens = [t for msg in self.pattern.messages for t in msg]
        self._psk_mode = "psk" in tokens
        if len(self._psks) != tokens.count("psk") or any(len(p) != 32 for p in self._psks):
            raise BadKeyError(f"{protocol_name} needs {tokens.count('psk')} psks of 32 bytes")
        if rs is not None and len(rs) != DHLEN:
            raise BadKeyError(f"a remote static key is {DHLEN} bytes, got {len(rs)}")
        writes_s = any("s" in m for m in self.pattern.messages[0 if initiator else 1 :: 2])
        pres = {initiator: self.pattern.initiator_pre, not initiator: self.pattern.responder_pre}
        if (writes_s or "s" in pres[True]) and s is None:
            raise BadKeyError(f"{protocol_name} needs a local static key")
        if "s" in pres[False] and rs is None:
            raise BadKeyError(f"{protocol_name} needs the remote static key in advance")

        self.ss = SymmetricState(protocol_name.encode("ascii"))
        self.ss.mix_hash(prologue)
        # Pre-messages are hashed initiator's first, whatever our role (section 7.1). The
        # supported table only has "s" pre-messages, whose keys were checked above.
        for ours in (initiator, not initiator):
            for _token in pres[ours]:
                key = s.public if ours and s is not None else rs
                assert key is not None
                self.ss.mix_hash(key)
        self._index = 0
        self.failed = False
        self._result: tuple[CipherState, CipherState] | None = None
        self.handshake_hash: bytes | None = None  # h at the end: a channel binding

    @property
    def complete(self) -> bool:
        return self._result is not None

    @property
    def ciphers(self) -> tuple[CipherState, CipherState]:
        """(send, receive) for this party once the handshake is complete."""
        if self._result is None:
            raise HandshakeStateError("handshake not complete")
        c1, c2 = self._result
        return (c1, c2) if self.initiator else (c2, c1)

    def _start(self, writing: bool) -> tuple[str, ...]:
        if self.failed:
            raise HandshakeStateError("handshake already failed; start a new connection")
        role = "initiator" if self.initiator else "responder"
        if self._result is not None or writing != ((self._index % 2 == 0) == self.initiator):
            raise HandshakeStateError(
                f"message received in the wrong handshake state: the {role} cannot "
                f"{'write' if writing else 'read'} message {self._index + 1}"
            )
        return self.pattern.messages[self._index]

    def _overhead(self, tokens: tuple[str, ...]) -> int:
        """Bytes a message adds to its payload, known before any state changes, so
        size errors are found while the state is still intact."""
        keyed = self.ss.cipher.has_key()
        size = 0
        for t in tokens:
            if t == "e":
                size += DHLEN
                keyed = keyed or self._psk_mode
            elif t == "s":
                size += DHLEN + (TAGLEN if keyed else 0)
            else:
                keyed = True
        return size + (TAGLEN if keyed else 0)

    def _mix_e(self, public: bytes) -> None:
        self.ss.mix_hash(public)
        if self._psk_mode:  # section 9.2: e also keys the cipher in psk handshakes
            self.ss.mix_key(public)

    def _dh_token(self, token: str) -> None:
        # "es" is the initiator's e with the responder's s, whoever computes it.
        local, remote = (token[0], token[1]) if self.initiator else (token[1], token[0])
        pair = self.e if local == "e" else self.s
        public = self.re if remote == "e" else self.rs
        if pair is None or public is None:
            raise HandshakeStateError(f"token {token!r} needs a key that is not known")
        self.ss.mix_key(dh(pair, public))

    def _finish(self) -> None:
        self._index += 1
        if self._index == len(self.pattern.messages):
            self.handshake_hash = self.ss.h
            self._result = self.ss.split()

    def write_message(self, payload: bytes = b"") -> bytes:
        tokens = self._start(writing=True)
        if self._overhead(tokens) + len(payload) > MAX_MESSAGE:
            raise MessageSizeError(f"handshake payload of {len(payload)} bytes too large")
        try:
            out = bytearray()
            for t in tokens:
                if t == "e":
                    if self.e is None:  # tests inject a fixed ephemeral instead
                        self.e = KeyPair.generate()
                    out += self.e.public
                    self._mix_e(self.e.public)
                elif t == "s":
                    assert self.s is not None  # checked in __init__
                    out += self.ss.encrypt_and_hash(self.s.public)
                elif t == "psk":
                    self.ss.mix_key_and_hash(self._psks.pop(0))
                else:
                    self._dh_token(t)
            out += self.ss.encrypt_and_hash(payload)
        except BaseException:
            self.failed = True
            raise
        self._finish()
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        tokens = self._start(writing=False)
        need = self._overhead(tokens)
        if not need <= len(message) <= MAX_MESSAGE:
            self.failed = True
            raise MessageSizeError(
                f"handshake message too {'short' if len(message) < need else 'long'}: "
                f"{len(message)} bytes, message {self._index + 1} takes {need}..{MAX_MESSAGE}"
            )
        try:
            view = memoryview(message)
            for t in tokens:
                if t == "e":
                    self.re, view = bytes(view[:DHLEN]), view[DHLEN:]
                    self._mix_e(self.re)
                elif t == "s":
                    size = DHLEN + (TAGLEN if self.ss.cipher.has_key() else 0)
                    self.rs = self.ss.decrypt_and_hash(bytes(view[:size]))
                    view = view[size:]
                elif t == "psk":
                    self.ss.mix_key_and_hash(self._psks.pop(0))
                else:
                    self._dh_token(t)
            payload = self.ss.decrypt_and_hash(bytes(view))
        except BaseException:
            self.failed = True
            raise
        self._finish()
        return payload
