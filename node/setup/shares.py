"""A member's share of the consortium's pseudonym key, and the owner-only file that holds it.

The key ceremony (``node.setup.ceremony``) leaves each member one share of a key that
nobody holds whole; the file is a small JSON document::

    {"version": 1, "type": "pseudonym-share", "index": 2, "genesis_hash": "<hex>",
     "secret": "<hex>"}

or, under a passphrase, ``"encrypted_secret"`` in place of ``"secret"``, sealed exactly
as a node key's seed is (``node.setup.keys.seal_secret``). ``genesis_hash`` ties the
share to its consortium, so a share copied into another home is refused there.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.identifiers.group import ORDER, SCALAR_SIZE, base_mul, scalar_to_int
from node.setup.genesis import Genesis
from node.setup.keys import (
    DEFAULT_MEMLIMIT,
    DEFAULT_OPSLIMIT,
    fsync_directory,
    hex_field,
    open_sealed,
    read_private_file,
    reject_duplicate_keys,
    secret_entry,
)

SHARE_FILE_VERSION = 1
SHARE_TYPE = "pseudonym-share"
_WHAT = "pseudonym share file"
_MAX_FILE_BYTES = 16 * 1024
_HASH_SIZE = 32


class PseudonymShareError(ValueError):
    """A share file that cannot be written or used, with a message for the operator."""


@dataclass(frozen=True)
class PseudonymShare:
    """Member ``index``'s (1-based, its genesis position) share of the pseudonym key."""

    index: int
    secret: bytes = field(repr=False)
    genesis_hash: bytes

    def __post_init__(self) -> None:
        if type(self.index) is not int or self.index < 1:
            raise PseudonymShareError(f"index: expected a member index from 1, got {self.index!r}")
        if (
            type(self.secret) is not bytes
            or len(self.secret) != SCALAR_SIZE
            or not 0 < scalar_to_int(self.secret) < ORDER
        ):
            raise PseudonymShareError(
                f"secret: expected a reduced non-zero {SCALAR_SIZE}-byte scalar"
            )
        if type(self.genesis_hash) is not bytes or len(self.genesis_hash) != _HASH_SIZE:
            raise PseudonymShareError(f"genesis_hash: expected {_HASH_SIZE} bytes")


def encode_share_file(
    share: PseudonymShare,
    passphrase: str | None,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> bytes:
    doc: dict[str, Any] = {
        "version": SHARE_FILE_VERSION,
        "type": SHARE_TYPE,
        "index": share.index,
        "genesis_hash": share.genesis_hash.hex(),
        **secret_entry("secret", share.secret, passphrase, opslimit=opslimit, memlimit=memlimit),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def save_share(
    path: Path | str,
    share: PseudonymShare,
    passphrase: str | None,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> None:
    """Create ``path`` (mode 0600) holding ``share``; never replaces an existing file,
    since a lost share cannot be made again without a new ceremony."""
    path = Path(path)
    data = encode_share_file(share, passphrase, opslimit=opslimit, memlimit=memlimit)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise PseudonymShareError(
            f"{_WHAT} {path} already exists; refusing to overwrite a share"
        ) from None
    except OSError as exc:
        raise PseudonymShareError(f"cannot create {_WHAT} {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    fsync_directory(path.parent)


def load_share(path: Path | str, passphrase: str | None) -> PseudonymShare:
    """Read a share file (owner-only regular file, no symbolic link); a passphrase given
    for an unencrypted file is ignored."""
    path = Path(path)
    where = f"{_WHAT} {path}"
    data = read_private_file(
        path, what=_WHAT, error=PseudonymShareError, nofollow=True, max_bytes=_MAX_FILE_BYTES
    )
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=reject_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PseudonymShareError(f"{where} is not a share file: {exc}") from None
    if not isinstance(doc, dict):
        raise PseudonymShareError(f"{where} is not a share file: expected a JSON object")
    if doc.get("version") != SHARE_FILE_VERSION or type(doc.get("version")) is not int:
        raise PseudonymShareError(
            f"{where} has unsupported version {doc.get('version')!r} "
            f"(this program reads version {SHARE_FILE_VERSION})"
        )
    if doc.get("type") != SHARE_TYPE:
        raise PseudonymShareError(f"{where} is not a {SHARE_TYPE} file (type {doc.get('type')!r})")
    if "secret" in doc and "encrypted_secret" in doc:
        raise PseudonymShareError(f"{where} has both 'secret' and 'encrypted_secret'")
    secret_field = "encrypted_secret" if "encrypted_secret" in doc else "secret"
    expected = {"version", "type", "index", "genesis_hash", secret_field}
    missing, unknown = sorted(expected - doc.keys()), sorted(doc.keys() - expected)
    if missing or unknown:
        what = f"missing field {missing[0]!r}" if missing else f"unknown field {unknown[0]!r}"
        raise PseudonymShareError(f"{where}: {what}")
    if secret_field == "encrypted_secret":
        if passphrase is None:
            raise PseudonymShareError(f"{where} is encrypted; a passphrase is required")
        secret = open_sealed(
            doc["encrypted_secret"],
            passphrase,
            SCALAR_SIZE,
            where=where,
            field_name="encrypted_secret",
            error=PseudonymShareError,
            what=_WHAT,
        )
    else:
        secret = hex_field(where, doc, "secret", SCALAR_SIZE, PseudonymShareError)
    index = doc["index"]
    if type(index) is not int:
        raise PseudonymShareError(f"{where}: index: expected an integer, got {index!r}")
    genesis_hash = hex_field(where, doc, "genesis_hash", _HASH_SIZE, PseudonymShareError)
    try:
        return PseudonymShare(index, secret, genesis_hash)
    except PseudonymShareError as exc:
        raise PseudonymShareError(f"{where}: {exc}") from None


def check_share(share: PseudonymShare, genesis: Genesis, where: str = "pseudonym share") -> None:
    """Refuse a share that is not this genesis's: made for another consortium, or whose
    public side is not the member's public share in the genesis."""
    if share.genesis_hash != genesis.hash():
        raise PseudonymShareError(
            f"{where} was made for another genesis ({share.genesis_hash.hex()[:16]}...), "
            f"not this one ({genesis.hash().hex()[:16]}...)"
        )
    public_shares = genesis.pseudonyms.public_shares
    if share.index > len(public_shares):
        raise PseudonymShareError(f"{where}: member index {share.index} is not in the genesis")
    if base_mul(share.secret) != public_shares[share.index - 1]:
        raise PseudonymShareError(
            f"{where} does not match member {share.index}'s public share in the genesis"
        )
