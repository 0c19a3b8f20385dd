"""A node's Ed25519 identity key and the file that holds it.

The key file is a small JSON document::

    {"version": 1, "type": "ed25519", "public_key": "<hex>", "seed": "<hex>"}

or, protected by a passphrase, with ``"encrypted_seed"`` in place of ``"seed"``: an
argon2id-derived key seals the seed in a ``SecretBox``; salt, limits and nonce are
stored beside the ciphertext. The public key is stored in the clear in both forms so
that tools can show a node's identity without the passphrase.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from consensus.crypto import PUBLIC_KEY_SIZE, Signer

SEED_SIZE = 32
KEY_FILE_VERSION = 1
KEY_TYPE = "ed25519"
KDF_NAME = "argon2id"
CIPHER_NAME = "xsalsa20poly1305"

DEFAULT_OPSLIMIT = argon2id.OPSLIMIT_MODERATE
DEFAULT_MEMLIMIT = argon2id.MEMLIMIT_MODERATE
# Limits read from a file are bounded, so an edited file cannot make loading take
# gigabytes of memory or minutes of CPU.
_OPSLIMIT_RANGE = (argon2id.OPSLIMIT_MIN, argon2id.OPSLIMIT_SENSITIVE * 4)
_MEMLIMIT_RANGE = (argon2id.MEMLIMIT_MIN, argon2id.MEMLIMIT_SENSITIVE)
# A key file is a few hundred bytes; anything much larger is not one.
_MAX_FILE_BYTES = 64 * 1024


class KeyFileError(Exception):
    """A key file that cannot be used, with a message meant for the operator."""


@dataclass(frozen=True)
class NodeKey:
    """An Ed25519 seed and its public key. The seed never appears in ``repr``."""

    seed: bytes = field(repr=False)
    public_key: bytes

    def __post_init__(self) -> None:
        if type(self.seed) is not bytes or len(self.seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes")
        if type(self.public_key) is not bytes or len(self.public_key) != PUBLIC_KEY_SIZE:
            raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
        if Signer(self.seed).public_key != self.public_key:
            raise ValueError("public key does not belong to the seed")

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        return cls(seed=seed, public_key=Signer(seed).public_key)

    def signer(self) -> Signer:
        return Signer(self.seed)


def generate_key() -> NodeKey:
    return NodeKey.from_seed(nacl.utils.random(SEED_SIZE))


def atomic_write(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so readers see the old file or the new, never a part.

    The temporary file is created with its final mode (never chmod-ed afterwards), so a
    secret is never readable by others, not even for a moment.
    """
    path = Path(path)
    directory = path.parent
    tmp = directory / f".{path.name}.{nacl.utils.random(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; nothing better to do
    finally:
        os.close(dir_fd)


def _normalise_passphrase(passphrase: str) -> bytes:
    # NFC, so the same passphrase typed on two systems derives the same key.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    key: bytes = argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        _normalise_passphrase(passphrase),
        salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )
    return key


def seal_secret(
    secret: bytes,
    passphrase: str,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> dict[str, Any]:
    """``secret`` sealed under ``passphrase``: the ``encrypted_seed`` object of a key file,
    also used for other owner-only secrets (a member's pseudonym key share)."""
    if not passphrase:
        raise ValueError("passphrase must not be empty (use None for an unencrypted key)")
    if not _OPSLIMIT_RANGE[0] <= opslimit <= _OPSLIMIT_RANGE[1]:
        raise ValueError(f"opslimit must be in {_OPSLIMIT_RANGE}, got {opslimit}")
    if not _MEMLIMIT_RANGE[0] <= memlimit <= _MEMLIMIT_RANGE[1]:
        raise ValueError(f"memlimit must be in {_MEMLIMIT_RANGE}, got {memlimit}")
    salt = nacl.utils.random(argon2id.SALTBYTES)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
    ciphertext = box.encrypt(secret, nonce).ciphertext
    return {
        "kdf": KDF_NAME,
        "salt": salt.hex(),
        "opslimit": opslimit,
        "memlimit": memlimit,
        "cipher": CIPHER_NAME,
        "nonce": nonce.hex(),
        "ciphertext": ciphertext.hex(),
    }


def secret_entry(
    name: str,
    secret: bytes,
    passphrase: str | None,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> dict[str, Any]:
    """A secret's field in a private file: ``{name: hex}``, or under a passphrase
    ``{"encrypted_" + name: sealed}`` (``seal_secret``)."""
    if passphrase is None:
        return {name: secret.hex()}
    sealed = seal_secret(secret, passphrase, opslimit=opslimit, memlimit=memlimit)
    return {f"encrypted_{name}": sealed}


def encode_key_file(
    key: NodeKey,
    passphrase: str | None,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> bytes:
    """The key file's bytes; ``opslimit``/``memlimit`` exist so tests can stay fast."""
    doc: dict[str, Any] = {
        "version": KEY_FILE_VERSION,
        "type": KEY_TYPE,
        "public_key": key.public_key.hex(),
        **secret_entry("seed", key.seed, passphrase, opslimit=opslimit, memlimit=memlimit),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def save_key(
    path: Path | str,
    key: NodeKey,
    passphrase: str | None,
    *,
    overwrite: bool = False,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> None:
    """Write ``key`` atomically with mode 0600; refuses to replace a key unless told to."""
    path = Path(path)
    # Replacing a node key by accident loses the node's identity in the genesis file.
    if not overwrite and os.path.lexists(path):
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it")
    data = encode_key_file(key, passphrase, opslimit=opslimit, memlimit=memlimit)
    atomic_write(path, data, 0o600)


def read_private_file(
    path: Path,
    *,
    what: str = "key file",
    error: type[Exception] = KeyFileError,
    nofollow: bool = False,
    max_bytes: int = _MAX_FILE_BYTES,
) -> bytes:
    """The bytes of an owner-only regular file, refused (as ``error``, the file called
    ``what`` in the message) when others may read it, it is not a regular file or it is
    larger than ``max_bytes``; ``nofollow`` also refuses a symbolic link."""
    flags = os.O_RDONLY | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        if nofollow and os.path.islink(path):
            raise error(f"{what} {path} is a symbolic link; use the file itself") from None
        raise error(f"cannot open {what} {path}: {exc.strerror}") from None
    try:
        # fstat on the open file, so the checked file is the one that is read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file")
        perms = stat.S_IMODE(st.st_mode)
        if perms & 0o077:
            raise error(
                f"{what} {path} has permissions {perms:04o}; it must be readable by its "
                f"owner only (chmod 600 {path})"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{what} {path} is too large to be a {what}")
    return data


def _read_private(path: Path) -> bytes:
    return read_private_file(path)


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for the project's JSON files: json would silently keep the
    last of two equal keys, which in a key, share or genesis file hides a mistake."""
    doc: dict[str, Any] = {}
    for k, v in pairs:
        if k in doc:
            raise ValueError(f"duplicate key {k!r}")
        doc[k] = v
    return doc


def _parse_document(path: Path, data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=reject_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeyFileError(f"key file {path} is not a valid key file: {exc}") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"key file {path} is not a valid key file: expected a JSON object")
    return doc


def _check_keys(
    where: str,
    prefix: str,
    doc: dict[str, Any],
    expected: set[str],
    error: type[Exception] = KeyFileError,
) -> None:
    missing = sorted(expected - doc.keys())
    unknown = sorted(doc.keys() - expected)
    if missing:
        raise error(f"{where}: missing field '{prefix}{missing[0]}'")
    if unknown:
        raise error(f"{where}: unknown field '{prefix}{unknown[0]}'")


def hex_field(
    where: str,
    doc: dict[str, Any],
    name: str,
    size: int | None,
    error: type[Exception] = KeyFileError,
) -> bytes:
    value = doc[name]
    if not isinstance(value, str):
        raise error(f"{where}: {name}: expected a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise error(f"{where}: {name}: not valid hex") from None
    if size is not None and len(raw) != size:
        raise error(f"{where}: {name}: expected {2 * size} hex characters, got {len(value)}")
    return raw


def _int_field(
    where: str,
    doc: dict[str, Any],
    name: str,
    bounds: tuple[int, int],
    error: type[Exception],
    prefix: str,
) -> int:
    value = doc[name]
    if type(value) is not int or not bounds[0] <= value <= bounds[1]:
        raise error(
            f"{where}: {prefix}{name}: expected an integer in "
            f"[{bounds[0]}, {bounds[1]}], got {value!r}"
        )
    return value


def open_sealed(
    enc: Any,
    passphrase: str,
    size: int,
    *,
    where: str,
    field_name: str,
    error: type[Exception],
    what: str = "file",
) -> bytes:
    """The ``size``-byte secret that ``seal_secret`` sealed; ``where`` and ``field_name``
    name the file and field in the ``error`` raised for anything wrong."""
    if not isinstance(enc, dict):
        raise error(f"{where}: {field_name}: expected a JSON object")
    fields = {"kdf", "salt", "opslimit", "memlimit", "cipher", "nonce", "ciphertext"}
    prefix = f"{field_name}."
    _check_keys(where, prefix, enc, fields, error)
    if enc["kdf"] != KDF_NAME:
        raise error(f"{where}: unsupported kdf {enc['kdf']!r}")
    if enc["cipher"] != CIPHER_NAME:
        raise error(f"{where}: unsupported cipher {enc['cipher']!r}")
    salt = hex_field(where, enc, "salt", argon2id.SALTBYTES, error)
    nonce = hex_field(where, enc, "nonce", nacl.secret.SecretBox.NONCE_SIZE, error)
    ciphertext = hex_field(where, enc, "ciphertext", size + nacl.secret.SecretBox.MACBYTES, error)
    opslimit = _int_field(where, enc, "opslimit", _OPSLIMIT_RANGE, error, prefix)
    memlimit = _int_field(where, enc, "memlimit", _MEMLIMIT_RANGE, error, prefix)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
    try:
        secret: bytes = box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise error(f"{where}: wrong passphrase or corrupted {what}") from None
    return secret


def _decrypt_seed(path: Path, enc: Any, passphrase: str) -> bytes:
    return open_sealed(
        enc,
        passphrase,
        SEED_SIZE,
        where=f"key file {path}",
        field_name="encrypted_seed",
        error=KeyFileError,
        what="key file",
    )


def _read_document(path: Path) -> dict[str, Any]:
    doc = _parse_document(path, _read_private(path))
    version = doc.get("version")
    if version != KEY_FILE_VERSION or type(version) is not int:
        raise KeyFileError(
            f"key file {path} has unsupported version {version!r} "
            f"(this program reads version {KEY_FILE_VERSION})"
        )
    if doc.get("type") != KEY_TYPE:
        raise KeyFileError(f"key file {path} has unsupported key type {doc.get('type')!r}")
    if "seed" in doc and "encrypted_seed" in doc:
        raise KeyFileError(f"key file {path} has both 'seed' and 'encrypted_seed'")
    secret = "encrypted_seed" if "encrypted_seed" in doc else "seed"
    _check_keys(f"key file {path}", "", doc, {"version", "type", "public_key", secret})
    return doc


def key_file_is_encrypted(path: Path | str) -> bool:
    """Whether loading ``path`` needs a passphrase (so a CLI knows whether to prompt)."""
    return "encrypted_seed" in _read_document(Path(path))


def load_key(path: Path | str, passphrase: str | None) -> NodeKey:
    """Read a key file; a passphrase given for an unencrypted file is ignored."""
    path = Path(path)
    doc = _read_document(path)
    public_key = hex_field(f"key file {path}", doc, "public_key", PUBLIC_KEY_SIZE)
    if "encrypted_seed" in doc:
        if passphrase is None:
            raise KeyFileError(f"key file {path} is encrypted; a passphrase is required")
        seed = _decrypt_seed(path, doc["encrypted_seed"], passphrase)
    else:
        seed = hex_field(f"key file {path}", doc, "seed", SEED_SIZE)
    if Signer(seed).public_key != public_key:
        raise KeyFileError(f"key file {path}: public_key does not match the seed")
    return NodeKey(seed=seed, public_key=public_key)


def read_public_key(path: Path | str) -> bytes:
    """The public key of a key file, without the passphrase (not checked against the seed)."""
    path = Path(path)
    return hex_field(f"key file {path}", _read_document(path), "public_key", PUBLIC_KEY_SIZE)
