from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import nacl.pwhash.argon2id as argon2id
import pytest

from consensus.crypto import verify_signature
from node.setup.keys import (
    KeyFileError,
    NodeKey,
    atomic_write,
    generate_key,
    key_file_is_encrypted,
    load_key,
    read_public_key,
    save_key,
)


def save_fast(path: Path, key: NodeKey, passphrase: str | None, overwrite: bool = False) -> None:
    # Minimum argon2id limits keep the suite fast; production uses the defaults.
    save_key(
        path,
        key,
        passphrase,
        overwrite=overwrite,
        opslimit=argon2id.OPSLIMIT_MIN,
        memlimit=argon2id.MEMLIMIT_MIN,
    )


def write_doc(path: Path, doc: Any, mode: int = 0o600) -> None:
    atomic_write(path, json.dumps(doc).encode(), mode)


def read_doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def key() -> NodeKey:
    return NodeKey.from_seed(bytes(range(32)))


# ---- NodeKey -------------------------------------------------------------------------


def test_generate_key_is_random_and_consistent() -> None:
    a, b = generate_key(), generate_key()
    assert a.seed != b.seed
    assert a.signer().public_key == a.public_key


def test_repr_hides_seed(key: NodeKey) -> None:
    for text in (repr(key), str(key)):
        assert key.seed.hex() not in text
        assert "seed" not in text
        assert key.public_key.hex() in text or "public_key" in text


def test_signer_signs_verifiably(key: NodeKey) -> None:
    sig = key.signer().sign(b"hello")
    assert verify_signature(key.public_key, b"hello", sig)


def test_nodekey_rejects_mismatched_public_key(key: NodeKey) -> None:
    other = generate_key()
    with pytest.raises(ValueError, match="does not belong to the seed"):
        NodeKey(seed=key.seed, public_key=other.public_key)
    with pytest.raises(ValueError, match="32 bytes"):
        NodeKey(seed=b"short", public_key=key.public_key)


# ---- round trips -----------------------------------------------------------------------


def test_plaintext_round_trip(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "node_key.json"
    save_fast(path, key, None)
    assert mode_of(path) == 0o600
    assert load_key(path, None) == key
    doc = read_doc(path)
    assert doc == {
        "version": 1,
        "type": "ed25519",
        "public_key": key.public_key.hex(),
        "seed": key.seed.hex(),
    }
    assert not key_file_is_encrypted(path)
    assert read_public_key(path) == key.public_key


def test_plaintext_file_ignores_passphrase(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, None)
    assert load_key(path, "unused") == key


def test_encrypted_round_trip(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "node_key.json"
    save_fast(path, key, "correct horse")
    assert mode_of(path) == 0o600
    text = path.read_text()
    assert key.seed.hex() not in text
    assert key.public_key.hex() in text
    assert key_file_is_encrypted(path)
    assert read_public_key(path) == key.public_key
    assert load_key(path, "correct horse") == key
    enc = read_doc(path)["encrypted_seed"]
    assert enc["kdf"] == "argon2id"
    assert enc["opslimit"] == argon2id.OPSLIMIT_MIN
    assert enc["memlimit"] == argon2id.MEMLIMIT_MIN
    assert len(bytes.fromhex(enc["salt"])) == argon2id.SALTBYTES


def test_each_save_uses_fresh_salt_and_nonce(tmp_path: Path, key: NodeKey) -> None:
    save_fast(tmp_path / "a", key, "pw")
    save_fast(tmp_path / "b", key, "pw")
    a, b = read_doc(tmp_path / "a")["encrypted_seed"], read_doc(tmp_path / "b")["encrypted_seed"]
    assert a["salt"] != b["salt"]
    assert a["nonce"] != b["nonce"]


def test_passphrase_is_unicode_normalised(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, "caf\u00e9")  # composed e-acute
    assert load_key(path, "cafe\u0301") == key  # decomposed


def test_default_limits_are_at_least_moderate(tmp_path: Path) -> None:
    from node.setup import keys

    assert keys.DEFAULT_OPSLIMIT >= argon2id.OPSLIMIT_MODERATE
    assert keys.DEFAULT_MEMLIMIT >= argon2id.MEMLIMIT_MODERATE


def test_empty_passphrase_rejected(tmp_path: Path, key: NodeKey) -> None:
    with pytest.raises(ValueError, match="passphrase must not be empty"):
        save_fast(tmp_path / "k.json", key, "")
    assert not (tmp_path / "k.json").exists()


# ---- writing ---------------------------------------------------------------------------


def test_mode_0600_even_with_permissive_umask(tmp_path: Path, key: NodeKey) -> None:
    old = os.umask(0)
    try:
        save_fast(tmp_path / "k.json", key, None)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "k.json") == 0o600


def test_refuses_to_overwrite_unless_asked(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, None)
    other = generate_key()
    with pytest.raises(KeyFileError, match=f"key file {path} already exists; refusing"):
        save_fast(path, other, None)
    assert load_key(path, None) == key
    save_fast(path, other, None, overwrite=True)
    assert load_key(path, None) == other


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    atomic_write(tmp_path / "f", b"one")
    atomic_write(tmp_path / "f", b"two")
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
    assert (tmp_path / "f").read_bytes() == b"two"


def test_atomic_write_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    (target / "x").write_text("occupied")  # renaming a file over a non-empty dir fails
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


# ---- refusing to load ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_group_or_other_readable(tmp_path: Path, key: NodeKey, mode: int) -> None:
    path = tmp_path / "node_key.json"
    save_fast(path, key, None)
    path.chmod(mode)
    expected = (
        f"key file {path} has permissions {mode:04o}; it must be readable by its owner "
        f"only (chmod 600 {path})"
    )
    with pytest.raises(KeyFileError) as info:
        load_key(path, None)
    assert str(info.value) == expected


def test_owner_read_only_is_fine(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, None)
    path.chmod(0o400)
    assert load_key(path, None) == key


def test_encrypted_without_passphrase(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, "pw")
    with pytest.raises(KeyFileError, match="is encrypted; a passphrase is required"):
        load_key(path, None)


def test_wrong_passphrase(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, "right")
    with pytest.raises(KeyFileError) as info:
        load_key(path, "wrong")
    assert str(info.value) == f"key file {path}: wrong passphrase or corrupted key file"


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "salt"])
def test_tampered_encrypted_blob(tmp_path: Path, key: NodeKey, field: str) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, "pw")
    doc = read_doc(path)
    raw = bytearray(bytes.fromhex(doc["encrypted_seed"][field]))
    raw[0] ^= 1
    doc["encrypted_seed"][field] = raw.hex()
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match="wrong passphrase or corrupted key file"):
        load_key(path, "pw")


def test_public_key_not_matching_seed(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, None)
    doc = read_doc(path)
    doc["public_key"] = generate_key().public_key.hex()
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match="public_key does not match the seed"):
        load_key(path, None)


def test_encrypted_public_key_not_matching_seed(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, "pw")
    doc = read_doc(path)
    doc["public_key"] = generate_key().public_key.hex()
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match="public_key does not match the seed"):
        load_key(path, "pw")


def _plain(key: NodeKey) -> dict[str, Any]:
    return {
        "version": 1,
        "type": "ed25519",
        "public_key": key.public_key.hex(),
        "seed": key.seed.hex(),
    }


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=2), "has unsupported version 2 (this program reads version 1)"),
        (lambda d: d.pop("version"), "has unsupported version None"),
        (lambda d: d.update(version=True), "has unsupported version True"),
        (lambda d: d.update(type="rsa"), "has unsupported key type 'rsa'"),
        (lambda d: d.pop("public_key"), "missing field 'public_key'"),
        (lambda d: d.pop("seed"), "missing field 'seed'"),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d.update(seed="ab" * 5), "seed: expected 64 hex characters, got 10"),
        (lambda d: d.update(seed="zz" * 32), "seed: not valid hex"),
        (lambda d: d.update(public_key=5), "public_key: expected a hex string"),
        (lambda d: d.update(encrypted_seed={}), "has both 'seed' and 'encrypted_seed'"),
    ],
)
def test_bad_plaintext_documents(tmp_path: Path, key: NodeKey, mutate: Any, message: str) -> None:
    path = tmp_path / "k.json"
    doc = _plain(key)
    mutate(doc)
    write_doc(path, doc)
    with pytest.raises(KeyFileError) as info:
        load_key(path, None)
    assert message in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kdf", "scrypt", "unsupported kdf 'scrypt'"),
        ("cipher", "aes", "unsupported cipher 'aes'"),
        ("memlimit", 2**40, "encrypted_seed.memlimit: expected an integer in"),
        ("opslimit", 0, "encrypted_seed.opslimit: expected an integer in"),
        ("opslimit", "3", "encrypted_seed.opslimit: expected an integer in"),
        ("salt", "00", "salt: expected 32 hex characters, got 2"),
    ],
)
def test_bad_encrypted_documents(
    tmp_path: Path, key: NodeKey, field: str, value: Any, message: str
) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, "pw")
    doc = read_doc(path)
    doc["encrypted_seed"][field] = value
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match=message):
        load_key(path, "pw")


def test_encrypted_seed_unknown_field(tmp_path: Path, key: NodeKey) -> None:
    path = tmp_path / "k.json"
    save_fast(path, key, "pw")
    doc = read_doc(path)
    doc["encrypted_seed"]["mac"] = "00"
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match=r"unknown field 'encrypted_seed\.mac'"):
        load_key(path, "pw")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "is not a valid key file"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"version": 1, "version": 1}', "duplicate key 'version'"),
        (b"\xff\xfe", "is not a valid key file"),
        (b" " * 70_000, "too large to be a key file"),
    ],
)
def test_not_a_key_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "k.json"
    atomic_write(path, content, 0o600)
    with pytest.raises(KeyFileError, match=message):
        load_key(path, None)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(KeyFileError, match=f"key file {path} does not exist"):
        load_key(path, None)


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="is not a regular file"):
        load_key(d, None)
