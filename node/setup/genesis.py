"""The genesis file: who the members are and the parameters every member must share.

``genesis.json`` is the network's identity: its hash (over the canonical msgpack of
``Genesis``, not over the JSON text) is what nodes compare when they connect, so
whitespace or key order in the file never matters but every value does. All values are
therefore explicit in the file; nothing falls back to a default that a later version of
this program might change.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point

from consensus.codec import encode_value
from consensus.crypto import PUBLIC_KEY_SIZE, hash_bytes
from consensus.membership import MAX_MEMBERS, MIN_MEMBERS, Membership
from node.setup.keys import atomic_write

INSTITUTIONS = ("police", "bank", "telecom", "utility", "other")
ROLES = ("reporter", "investigator", "approver", "auditor")

_CHAIN_ID_RE = re.compile(r"[a-z0-9-]{1,64}")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME_HELP = "1 to 64 characters of [a-z0-9._-] starting with a letter or digit"
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_MAX_FILE_BYTES = 4 * 1024 * 1024


class GenesisError(ValueError):
    """An invalid genesis or descriptor; ``field_path`` names the offending value."""

    def __init__(self, problem: str, field_path: str = "") -> None:
        self.problem = problem
        self.field_path = field_path
        super().__init__(f"{field_path}: {problem}" if field_path else problem)

    def under(self, prefix: str) -> GenesisError:
        if not self.field_path:
            path = prefix
        elif self.field_path.startswith("["):
            path = prefix + self.field_path
        else:
            path = f"{prefix}.{self.field_path}"
        return GenesisError(self.problem, path)


def split_host_port(text: object, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """Parse ``host:port`` (IPv6 hosts in brackets); ``ValueError`` says what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"expected host:port, got {type(text).__name__}")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"expected host:port, got {text!r} (bad IPv6 address)") from None
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"expected host:port, got {text!r} (put IPv6 addresses in brackets)")
    elif not _HOSTNAME_RE.fullmatch(host):
        raise ValueError(f"expected host:port, got {text!r} (bad host name)")
    port = int(port_text)
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535 or len(port_text) > 5:
        raise ValueError(f"port must be {low} to 65535, got {port_text} in {text!r}")
    return host, port


def _check_choice(value: object, choices: Sequence[str], path: str) -> None:
    if not isinstance(value, str) or value not in choices:
        raise GenesisError(f"expected one of {', '.join(choices)}, got {value!r}", path)


@dataclass(frozen=True)
class Member:
    """One member's public identity; also what ``crosstrace init`` hands to the others."""

    name: str
    institution: str
    roles: tuple[str, ...]
    public_key: bytes
    address: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise GenesisError(f"expected {NAME_HELP}, got {self.name!r}", "name")
        _check_choice(self.institution, INSTITUTIONS, "institution")
        if not isinstance(self.roles, tuple):
            raise GenesisError(f"expected a tuple, got {type(self.roles).__name__}", "roles")
        for i, role in enumerate(self.roles):
            _check_choice(role, ROLES, f"roles[{i}]")
            if role in self.roles[:i]:
                raise GenesisError(f"duplicate role {role!r}", f"roles[{i}]")
        # One canonical order, so equal role sets give equal members and equal hashes.
        object.__setattr__(self, "roles", tuple(r for r in ROLES if r in self.roles))
        if not isinstance(self.public_key, bytes) or len(self.public_key) != PUBLIC_KEY_SIZE:
            got = len(self.public_key) if isinstance(self.public_key, bytes) else "non-bytes"
            raise GenesisError(f"expected {PUBLIC_KEY_SIZE} bytes, got {got}", "public_key")
        # Catches a mistyped key early: a random 32-byte string is often no curve point.
        if not crypto_core_ed25519_is_valid_point(self.public_key):
            raise GenesisError("not a valid Ed25519 public key", "public_key")
        try:
            split_host_port(self.address)
        except ValueError as exc:
            raise GenesisError(str(exc), "address") from None


MemberDescriptor = Member


@dataclass(frozen=True)
class GenesisConsensus:
    """PBFT parameters all members must agree on, so they are part of the genesis hash."""

    checkpoint_interval: int = 10
    window: int = 20
    max_batch_txs: int = 1000
    batch_delay_ms: int = 20
    view_timeout_ms: int = 2000
    heartbeat_ms: int = 500

    def __post_init__(self) -> None:
        ranges = {
            "checkpoint_interval": (1, 10_000),
            "window": (2, 100_000),
            "max_batch_txs": (1, 100_000),
            "batch_delay_ms": (0, 60_000),
            "view_timeout_ms": (100, 600_000),
            "heartbeat_ms": (10, 60_000),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if type(value) is not int:
                raise GenesisError(f"expected an integer, got {type(value).__name__}", name)
            if not low <= value <= high:
                raise GenesisError(f"must be between {low} and {high}, got {value}", name)
        ci = self.checkpoint_interval
        if self.window % ci:
            raise GenesisError(
                f"must be a multiple of checkpoint_interval ({ci}), got {self.window}", "window"
            )
        # Below two intervals, the log fills before the next checkpoint can become stable.
        if self.window < 2 * ci:
            raise GenesisError(
                f"must be at least twice checkpoint_interval ({2 * ci}), got {self.window}",
                "window",
            )
        # A heartbeat slower than the timeout would make an idle, healthy primary look dead.
        if self.heartbeat_ms >= self.view_timeout_ms:
            raise GenesisError(
                f"must be less than view_timeout_ms ({self.view_timeout_ms}), "
                f"got {self.heartbeat_ms}",
                "heartbeat_ms",
            )


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time: str
    members: tuple[Member, ...]
    consensus: GenesisConsensus
    case_approvals: int

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, str) or not _CHAIN_ID_RE.fullmatch(self.chain_id):
            raise GenesisError(
                f"expected 1 to 64 characters of [a-z0-9-], got {self.chain_id!r}", "chain_id"
            )
        _check_time(self.genesis_time)
        if not isinstance(self.consensus, GenesisConsensus):
            raise GenesisError("expected GenesisConsensus", "consensus")
        if not isinstance(self.members, tuple) or not all(
            isinstance(m, Member) for m in self.members
        ):
            raise GenesisError("expected a tuple of Member", "members")
        n = len(self.members)
        if not MIN_MEMBERS <= n <= MAX_MEMBERS:
            raise GenesisError(
                f"PBFT needs {MIN_MEMBERS} to {MAX_MEMBERS} members, got {n}", "members"
            )
        for attr in ("name", "public_key", "address"):
            seen: dict[object, int] = {}
            for i, m in enumerate(self.members):
                value = getattr(m, attr)
                # Host names are case-insensitive, so two spellings are one address.
                key = value.lower() if attr == "address" else value
                if key in seen:
                    shown = value.hex() if isinstance(value, bytes) else value
                    raise GenesisError(
                        f"duplicate of members[{seen[key]}].{attr} ({shown})",
                        f"members[{i}].{attr}",
                    )
                seen[key] = i
        k = self.case_approvals
        if type(k) is not int or not 1 <= k <= n:
            raise GenesisError(
                f"must be between 1 and {n} (the number of members), got {k!r}", "case_approvals"
            )

    def hash(self) -> bytes:
        return hash_bytes("genesis", encode_value(self))

    def membership(self) -> Membership:
        return Membership(self.chain_id, tuple(m.public_key for m in self.members))

    def member_index(self, public_key: bytes) -> int | None:
        for i, m in enumerate(self.members):
            if m.public_key == public_key:
                return i
        return None

    def member_by_key(self, public_key: bytes) -> Member | None:
        i = self.member_index(public_key)
        return None if i is None else self.members[i]

    def member_by_name(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


def _check_time(value: object) -> None:
    problem = "expected an ISO 8601 time with a time zone, like 2025-01-31T12:00:00Z"
    if not isinstance(value, str):
        raise GenesisError(f"{problem}, got {type(value).__name__}", "genesis_time")
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise GenesisError(f"{problem}, got {value!r}", "genesis_time") from None
    if parsed.tzinfo is None:
        raise GenesisError(f"{problem}, got {value!r} (no time zone)", "genesis_time")


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- JSON form -------------------------------------------------------------------------

_MEMBER_FIELDS = ("name", "institution", "roles", "public_key", "address")
_CONSENSUS_FIELDS = (
    "checkpoint_interval",
    "window",
    "max_batch_txs",
    "batch_delay_ms",
    "view_timeout_ms",
    "heartbeat_ms",
)
_GENESIS_FIELDS = ("chain_id", "genesis_time", "case_approvals", "consensus", "members")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _object(value: object, fields: Sequence[str], path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GenesisError(f"expected an object, got {_json_type(value)}", path)
    prefix = f"{path}." if path else ""
    for name in fields:
        if name not in value:
            raise GenesisError("missing", prefix + name)
    for name in value:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GenesisError(f"unknown field{hint}", prefix + name)
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise GenesisError(f"expected a string, got {_json_type(value)}", path)
    return value


def _integer(value: object, path: str) -> int:
    if type(value) is not int:
        raise GenesisError(f"expected an integer, got {_json_type(value)}", path)
    return value


def _public_key(value: object, path: str) -> bytes:
    text = _string(value, path)
    if len(text) != 2 * PUBLIC_KEY_SIZE:
        raise GenesisError(f"expected {2 * PUBLIC_KEY_SIZE} hex characters, got {len(text)}", path)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise GenesisError(
            f"expected {2 * PUBLIC_KEY_SIZE} hex characters, got {text!r}", path
        ) from None


def parse_member(doc: object, path: str = "") -> Member:
    obj = _object(doc, _MEMBER_FIELDS, path)
    prefix = f"{path}." if path else ""
    roles = obj["roles"]
    if not isinstance(roles, list):
        raise GenesisError(f"expected an array, got {_json_type(roles)}", prefix + "roles")
    name = _string(obj["name"], prefix + "name")
    institution = _string(obj["institution"], prefix + "institution")
    role_names = tuple(_string(r, f"{prefix}roles[{i}]") for i, r in enumerate(roles))
    public_key = _public_key(obj["public_key"], prefix + "public_key")
    address = _string(obj["address"], prefix + "address")
    try:
        return Member(name, institution, role_names, public_key, address)
    except GenesisError as exc:
        raise (exc.under(path) if path else exc) from None


def parse_consensus(doc: object, path: str = "consensus") -> GenesisConsensus:
    obj = _object(doc, _CONSENSUS_FIELDS, path)
    values = {name: _integer(obj[name], f"{path}.{name}") for name in _CONSENSUS_FIELDS}
    try:
        return GenesisConsensus(**values)
    except GenesisError as exc:
        raise exc.under(path) from None


def parse_genesis(doc: object) -> Genesis:
    """Build a ``Genesis`` from the decoded JSON document, checking every value."""
    obj = _object(doc, _GENESIS_FIELDS, "")
    members_doc = obj["members"]
    if not isinstance(members_doc, list):
        raise GenesisError(f"expected an array, got {_json_type(members_doc)}", "members")
    members = tuple(parse_member(m, f"members[{i}]") for i, m in enumerate(members_doc))
    return Genesis(
        chain_id=_string(obj["chain_id"], "chain_id"),
        genesis_time=_string(obj["genesis_time"], "genesis_time"),
        members=members,
        consensus=parse_consensus(obj["consensus"]),
        case_approvals=_integer(obj["case_approvals"], "case_approvals"),
    )


def member_to_dict(member: Member) -> dict[str, Any]:
    return {
        "name": member.name,
        "institution": member.institution,
        "roles": list(member.roles),
        "public_key": member.public_key.hex(),
        "address": member.address,
    }


def genesis_to_dict(genesis: Genesis) -> dict[str, Any]:
    c = genesis.consensus
    return {
        "chain_id": genesis.chain_id,
        "genesis_time": genesis.genesis_time,
        "case_approvals": genesis.case_approvals,
        "consensus": {name: getattr(c, name) for name in _CONSENSUS_FIELDS},
        "members": [member_to_dict(m) for m in genesis.members],
    }


def _dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for k, v in pairs:
        if k in doc:
            # json would silently keep the last one; in a genesis file that hides a typo.
            raise ValueError(f"duplicate key {k!r}")
        doc[k] = v
    return doc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise GenesisError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise GenesisError(f"{path}: larger than {_MAX_FILE_BYTES} bytes")
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise GenesisError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise GenesisError(f"{path}: invalid JSON: {exc}") from None


def load_genesis(path: Path | str) -> Genesis:
    path = Path(path)
    doc = _read_json(path)
    try:
        return parse_genesis(doc)
    except GenesisError as exc:
        raise GenesisError(f"{path}: {exc}") from None


def save_genesis(path: Path | str, genesis: Genesis) -> None:
    atomic_write(path, _dumps(genesis_to_dict(genesis)), 0o644)


def load_descriptor(path: Path | str) -> MemberDescriptor:
    path = Path(path)
    doc = _read_json(path)
    try:
        return parse_member(doc)
    except GenesisError as exc:
        raise GenesisError(f"{path}: {exc}") from None


def save_descriptor(path: Path | str, descriptor: MemberDescriptor) -> None:
    atomic_write(path, _dumps(member_to_dict(descriptor)), 0o644)


def assemble_genesis(
    chain_id: str,
    descriptors: Sequence[MemberDescriptor],
    case_approvals: int,
    params: GenesisConsensus | None = None,
    *,
    genesis_time: str | None = None,
) -> Genesis:
    """A genesis with the members in the order given: member i is the primary of view i."""
    return Genesis(
        chain_id=chain_id,
        genesis_time=genesis_time if genesis_time is not None else now_iso(),
        members=tuple(descriptors),
        consensus=params if params is not None else GenesisConsensus(),
        case_approvals=case_approvals,
    )
