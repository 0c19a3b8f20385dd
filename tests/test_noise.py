"""Noise: the published vectors, then the session the transport uses and its failures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from net.noise import (
    MAX_MESSAGE,
    MAX_NONCE,
    MAX_PLAINTEXT,
    BadKeyError,
    CipherState,
    DecryptError,
    HandshakeState,
    HandshakeStateError,
    KeyPair,
    MessageSizeError,
    NoiseError,
    NonceExhaustedError,
    parse_protocol_name,
)
from net.secure_session import (
    SecureSession,
    static_keypair_from_ed25519,
    x25519_private_from_ed25519,
    x25519_public_from_ed25519,
)

# The public cacophony vectors, copied into the repository (source and licence in
# tests/data/README.md).
VECTORS_PATH = Path(__file__).resolve().parent / "data" / "noise-vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())["vectors"]

SEED_A = bytes(range(32))
SEED_B = bytes(range(100, 132))


def test_the_vector_file_covers_every_supported_pattern() -> None:
    names = sorted(v["protocol_name"].split("_")[1] for v in VECTORS)
    assert names == ["IK", "KK", "NN", "XK", "XX", "XXpsk3"]


def _party(vector: dict[str, Any], prefix: str, initiator: bool) -> HandshakeState:
    def raw(key: str) -> bytes | None:
        value = vector.get(prefix + key)
        return None if value is None else bytes.fromhex(value)

    def pair(key: str) -> KeyPair | None:
        private = raw(key)
        return None if private is None else KeyPair.from_private(private)

    return HandshakeState(
        vector["protocol_name"],
        initiator,
        raw("prologue") or b"",
        s=pair("static"),
        e=pair("ephemeral"),
        rs=raw("remote_static"),
        psks=[bytes.fromhex(p) for p in vector.get(prefix + "psks", [])],
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[v["protocol_name"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    initiator = _party(vector, "init_", True)
    responder = _party(vector, "resp_", False)
    handshake_length = len(parse_protocol_name(vector["protocol_name"]).messages)
    assert len(vector["messages"]) > handshake_length  # transport messages are covered too
    for i, message in enumerate(vector["messages"]):
        payload, expected = bytes.fromhex(message["payload"]), bytes.fromhex(message["ciphertext"])
        sender, receiver = (initiator, responder) if i % 2 == 0 else (responder, initiator)
        if i < handshake_length:
            ciphertext = sender.write_message(payload)
            assert ciphertext == expected, f"message {i}"
            assert receiver.read_message(ciphertext) == payload
        else:
            ciphertext = sender.ciphers[0].encrypt_with_ad(b"", payload)
            assert ciphertext == expected, f"message {i}"
            assert receiver.ciphers[1].decrypt_with_ad(b"", ciphertext) == payload
        if i == handshake_length - 1:
            assert initiator.complete and responder.complete
            assert initiator.handshake_hash == bytes.fromhex(vector["handshake_hash"])
            assert responder.handshake_hash == initiator.handshake_hash


# --- keys ---


def test_static_keys_derive_from_ed25519_node_keys() -> None:
    signing = SigningKey(SEED_A)
    pair = static_keypair_from_ed25519(SEED_A)
    # The public half is computable from the genesis Ed25519 public key alone.
    assert pair.public == x25519_public_from_ed25519(bytes(signing.verify_key))
    assert pair.public == x25519_public_from_ed25519(signing.verify_key)
    # Seed, SigningKey and the 64-byte libsodium secret key agree, and agree with PyNaCl.
    secret64 = SEED_A + bytes(signing.verify_key)
    assert x25519_private_from_ed25519(signing) == pair.private
    assert x25519_private_from_ed25519(secret64) == pair.private
    assert bytes(signing.to_curve25519_private_key()) == pair.private
    assert pair.private.hex() not in repr(pair)


def test_bad_keys_are_noise_errors() -> None:
    with pytest.raises(BadKeyError, match="32 bytes"):
        x25519_private_from_ed25519(b"short")
    with pytest.raises(BadKeyError, match="32 bytes"):
        x25519_public_from_ed25519(b"\x01" * 31)
    with pytest.raises(BadKeyError, match="not a valid Ed25519"):
        x25519_public_from_ed25519(b"\xff" * 32)


def test_handshake_state_checks_its_inputs() -> None:
    s = KeyPair.generate()
    with pytest.raises(NoiseError, match="unsupported"):
        HandshakeState("Noise_XX_448_AESGCM_SHA512", True)
    with pytest.raises(NoiseError, match="invalid psk"):
        HandshakeState("Noise_XXpsk9_25519_ChaChaPoly_BLAKE2b", True, s=s)
    with pytest.raises(BadKeyError, match="needs 1 psks"):
        HandshakeState("Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", True, s=s)
    with pytest.raises(BadKeyError, match="remote static key in advance"):
        HandshakeState("Noise_IK_25519_ChaChaPoly_BLAKE2b", True, s=s)
    with pytest.raises(BadKeyError, match="local static key"):
        HandshakeState("Noise_XX_25519_ChaChaPoly_BLAKE2b", True)


def test_psk_modifiers_place_the_token() -> None:
    pattern = parse_protocol_name("Noise_XXpsk0+psk3_25519_ChaChaPoly_BLAKE2b")
    assert pattern.messages == (("psk", "e"), ("e", "ee", "s", "es"), ("s", "se", "psk"))


# --- SecureSession ---


def _pair(**options: Any) -> tuple[SecureSession, SecureSession]:
    initiator = SecureSession.initiator(SEED_A, b"crosstrace/test", **options)
    responder = SecureSession.responder(SigningKey(SEED_B), b"crosstrace/test", **options)
    assert responder.read_handshake(initiator.write_handshake(b"hello")) == b"hello"
    assert initiator.read_handshake(responder.write_handshake(b"from B")) == b"from B"
    assert responder.read_handshake(initiator.write_handshake(b"from A")) == b"from A"
    return initiator, responder


def test_xx_round_trip_between_members() -> None:
    a, b = _pair()
    assert a.handshake_complete and b.handshake_complete
    assert a.remote_static == x25519_public_from_ed25519(SigningKey(SEED_B).verify_key)
    assert b.remote_static == x25519_public_from_ed25519(SigningKey(SEED_A).verify_key)
    assert a.handshake_hash == b.handshake_hash and a.handshake_hash is not None
    for i in range(50):
        assert b.decrypt(a.encrypt(b"ping %d" % i)) == b"ping %d" % i
        assert a.decrypt(b.encrypt(b"pong %d" % i)) == b"pong %d" % i
    sent = [a.encrypt(b"x" * n) for n in (0, 1, MAX_PLAINTEXT)]
    assert len(sent[-1]) == MAX_MESSAGE
    assert [b.decrypt(c) for c in sent] == [b"", b"x", b"x" * MAX_PLAINTEXT]


def test_remote_static_is_known_when_the_caller_must_check_it() -> None:
    a = SecureSession.initiator(SEED_A)
    b = SecureSession.responder(SEED_B)
    b.read_handshake(a.write_handshake())
    assert b.remote_static is None
    a.read_handshake(b.write_handshake())
    assert a.remote_static == static_keypair_from_ed25519(SEED_B).public
    assert not a.handshake_complete
    b.read_handshake(a.write_handshake())
    assert b.remote_static == static_keypair_from_ed25519(SEED_A).public


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=30))
def test_any_conversation_round_trips(conversation: list[tuple[bool, bytes]]) -> None:
    a, b = _pair(rekey_interval=3)
    for a_speaks, payload in conversation:
        sender, receiver = (a, b) if a_speaks else (b, a)
        assert receiver.decrypt(sender.encrypt(payload)) == payload


def test_every_byte_and_bit_flip_is_rejected() -> None:
    a, b = _pair()
    message = a.encrypt(b"commit vote for height 7")
    for position in range(len(message)):
        for mask in (*(1 << bit for bit in range(8)), 0xFF):
            tampered = bytearray(message)
            tampered[position] ^= mask
            receiver = copy.deepcopy(b)
            with pytest.raises(DecryptError, match="tampered, replayed or out-of-order"):
                receiver.decrypt(bytes(tampered))
    assert b.decrypt(message) == b"commit vote for height 7"


def test_replayed_message_is_rejected_and_kills_the_session() -> None:
    a, b = _pair()
    first = a.encrypt(b"one")
    assert b.decrypt(first) == b"one"
    with pytest.raises(DecryptError):
        b.decrypt(first)
    with pytest.raises(HandshakeStateError, match="session unusable"):
        b.decrypt(a.encrypt(b"two"))


def test_reordered_messages_are_rejected() -> None:
    a, b = _pair()
    _first, second = a.encrypt(b"one"), a.encrypt(b"two")
    with pytest.raises(DecryptError):
        b.decrypt(second)


def test_every_truncation_is_rejected() -> None:
    a, b = _pair()
    message = a.encrypt(b"prepare")
    for length in range(len(message)):
        with pytest.raises(DecryptError):
            copy.deepcopy(b).decrypt(message[:length])


def test_size_limits() -> None:
    a, b = _pair()
    with pytest.raises(MessageSizeError):
        a.encrypt(b"x" * (MAX_PLAINTEXT + 1))
    assert b.decrypt(a.encrypt(b"still fine")) == b"still fine"  # refusing changed nothing
    with pytest.raises(MessageSizeError):
        b.decrypt(b"x" * (MAX_MESSAGE + 1))
    hs = HandshakeState("Noise_NN_25519_ChaChaPoly_BLAKE2b", True)
    with pytest.raises(MessageSizeError):
        hs.write_message(b"x" * (MAX_MESSAGE - 31))
    assert len(hs.write_message(b"x" * (MAX_MESSAGE - 32))) == MAX_MESSAGE


def test_nonce_exhaustion_is_refused() -> None:
    key = bytes(range(32))
    sender, receiver = CipherState(key), CipherState(key)
    sender.set_nonce(MAX_NONCE - 1)
    receiver.set_nonce(MAX_NONCE - 1)
    assert receiver.decrypt_with_ad(b"", sender.encrypt_with_ad(b"", b"last")) == b"last"
    assert sender.n == MAX_NONCE
    with pytest.raises(NonceExhaustedError, match="2\\*\\*64-1"):
        sender.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(NonceExhaustedError):
        receiver.decrypt_with_ad(b"", bytes(32))
    with pytest.raises(NonceExhaustedError):
        sender.set_nonce(MAX_NONCE + 1)

    a, _ = _pair()
    a._send.set_nonce(MAX_NONCE)  # type: ignore[union-attr]
    with pytest.raises(NonceExhaustedError):
        a.encrypt(b"x")


def test_rekey_follows_the_spec() -> None:
    cipher = CipherState(bytes(range(32)))
    cipher.set_nonce(5)
    old = cipher.k
    cipher.rekey()
    assert cipher.k != old and cipher.k is not None and len(cipher.k) == 32
    assert cipher.n == 5  # rekey leaves the nonce alone (section 11.3)
    # REKEY(k) = ENCRYPT(k, 2**64-1, "", zeros)[:32]; same key, same result.
    again = CipherState(old)
    again.rekey()
    assert again.k == cipher.k


def test_both_sides_rekey_in_lockstep() -> None:
    interval = 4
    a, b = _pair(rekey_interval=interval)
    keys = []
    for i in range(3 * interval + 1):
        before = a._send.k  # type: ignore[union-attr]
        assert b.decrypt(a.encrypt(b"m%d" % i)) == b"m%d" % i
        assert a.decrypt(b.encrypt(b"r%d" % i)) == b"r%d" % i
        if a._send.k != before:  # type: ignore[union-attr]
            keys.append(i)
        assert a._send.k == b._recv.k and b._send.k == a._recv.k  # type: ignore[union-attr]
    assert keys == [3, 7, 11]  # after the 4th, 8th and 12th message

    # A receiver that does not rekey can no longer read: the rekey really happened.
    a, b = _pair(rekey_interval=interval)
    c = copy.deepcopy(b)
    c.rekey_interval = 1000
    for i in range(interval):
        c.decrypt(a.encrypt(b"%d" % i))
    with pytest.raises(DecryptError):
        c.decrypt(a.encrypt(b"after the rekey"))


def test_handshake_messages_in_the_wrong_order_are_rejected() -> None:
    a = SecureSession.initiator(SEED_A)
    b = SecureSession.responder(SEED_B)
    with pytest.raises(HandshakeStateError, match="wrong handshake state"):
        a.read_handshake(bytes(32))  # the initiator speaks first
    with pytest.raises(HandshakeStateError, match="wrong handshake state"):
        b.write_handshake()
    first = a.write_handshake()
    with pytest.raises(HandshakeStateError, match="wrong handshake state"):
        a.write_handshake()  # must wait for message 2
    with pytest.raises(HandshakeStateError, match="not complete"):
        a.encrypt(b"too early")
    b.read_handshake(first)
    with pytest.raises(HandshakeStateError, match="wrong handshake state"):
        b.read_handshake(first)  # message 1 again, where message 3 is not even due
    # Message 1 reflected back at the initiator, where message 2 is due: too short.
    with pytest.raises(MessageSizeError, match="too short"):
        a.read_handshake(first)
    with pytest.raises(HandshakeStateError, match="session unusable"):
        a.read_handshake(b.write_handshake())


def test_no_handshake_after_completion() -> None:
    a, b = _pair()
    with pytest.raises(HandshakeStateError, match="wrong handshake state"):
        a.write_handshake()
    with pytest.raises(HandshakeStateError, match="wrong handshake state"):
        b.read_handshake(bytes(100))


def test_short_or_tampered_handshake_messages() -> None:
    a = SecureSession.initiator(SEED_A)
    b = SecureSession.responder(SEED_B)
    with pytest.raises(MessageSizeError, match="handshake message too short"):
        b.read_handshake(a.write_handshake()[:31])

    a = SecureSession.initiator(SEED_A)
    b = SecureSession.responder(SEED_B)
    b.read_handshake(a.write_handshake())
    second = bytearray(b.write_handshake())
    second[40] ^= 1  # inside the encrypted static key
    with pytest.raises(DecryptError):
        a.read_handshake(bytes(second))
    assert a.remote_static is None


def test_prologues_must_match() -> None:
    a = SecureSession.initiator(SEED_A, b"chain-1")
    b = SecureSession.responder(SEED_B, b"chain-2")
    b.read_handshake(a.write_handshake())
    with pytest.raises(DecryptError):
        a.read_handshake(b.write_handshake())


def test_low_order_ephemeral_is_refused() -> None:
    b = SecureSession.responder(SEED_B)
    b.read_handshake(bytes(32))  # an all-zero "ephemeral key" is only hashed here
    with pytest.raises(BadKeyError, match="low-order"):
        b.write_handshake()  # ee would be all zeros
    with pytest.raises(HandshakeStateError, match="session unusable"):
        b.write_handshake()
