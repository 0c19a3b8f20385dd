"""The genesis file: who the members are and the parameters every member must share.

``genesis.json`` is the network's identity: its hash (over the canonical msgpack of
``Genesis``, not over the JSON text) is what nodes compare when they connect, so
whitespace or key order in the file never matters but every value does. All values are
therefore explicit in the file; nothing falls back to a default that a later version of
this program might change.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point

from consensus.codec import encode_value
from consensus.crypto import PUBLIC_KEY_SIZE, hash_bytes
from consensus.membership import MAX_MEMBERS, MIN_MEMBERS, Membership
from node.identifiers.group import POINT_SIZE
from node.setup.genesis_errors import GenesisError as GenesisError
from node.setup.genesis_pseudonyms import DEFAULT_QUERY_QUOTA as DEFAULT_QUERY_QUOTA
from node.setup.genesis_pseudonyms import DEFAULT_REPORT_QUOTA as DEFAULT_REPORT_QUOTA
from node.setup.genesis_pseudonyms import PSEUDONYM_SCHEME as PSEUDONYM_SCHEME
from node.setup.genesis_pseudonyms import TRANSCRIPT_SIZE as TRANSCRIPT_SIZE
from node.setup.genesis_pseudonyms import GenesisPseudonyms as GenesisPseudonyms
from node.setup.genesis_pseudonyms import PseudonymParameters as PseudonymParameters
from node.setup.genesis_pseudonyms import default_threshold as default_threshold
from node.setup.keys import atomic_write
from node.setup.strict_json import (
    array,
    dumps,
    hex_bytes,
    integer,
    json_type,
    load_json,
    object_fields,
    string,
)

INSTITUTIONS = ("police", "bank", "telecom", "utility", "other")
ROLES = ("reporter", "investigator", "approver", "auditor")

_CHAIN_ID_RE = re.compile(r"[a-z0-9-]{1,64}")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME_HELP = "1 to 64 characters of [a-z0-9._-] starting with a letter or digit"
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")

README_CEREMONY = 'README, "A consortium across machines"'
OLD_SHARED_KEY = (
    "missing: this genesis was made for the old shared-key pseudonyms, which this build "
    "no longer accepts; make a new genesis with the key ceremony "
    f"({README_CEREMONY})"
)
DRAFT_NOT_FINISHED = (
    "this is a draft genesis: the key ceremony has not finished (next: each member runs "
    "crosstrace dkg deal --home HOME --draft FILE; see "
    f"{README_CEREMONY})"
)


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


def _check_members(members: object, case_approvals: object) -> int:
    """The members' checks shared by draft and genesis; returns n."""
    if not isinstance(members, tuple) or not all(isinstance(m, Member) for m in members):
        raise GenesisError("expected a tuple of Member", "members")
    n = len(members)
    if not MIN_MEMBERS <= n <= MAX_MEMBERS:
        raise GenesisError(f"PBFT needs {MIN_MEMBERS} to {MAX_MEMBERS} members, got {n}", "members")
    for attr in ("name", "public_key", "address"):
        seen: dict[object, int] = {}
        for i, m in enumerate(members):
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
    k = case_approvals
    if type(k) is not int or not 1 <= k <= n:
        raise GenesisError(
            f"must be between 1 and {n} (the number of members), got {k!r}", "case_approvals"
        )
    return n


def _check_threshold(threshold: int, n: int) -> None:
    if threshold > n:
        raise GenesisError(
            f"must be at most {n} (the number of members), got {threshold}", "pseudonyms.threshold"
        )


def _check_header(chain_id: object, genesis_time: object, consensus: object) -> None:
    if not isinstance(chain_id, str) or not _CHAIN_ID_RE.fullmatch(chain_id):
        raise GenesisError(
            f"expected 1 to 64 characters of [a-z0-9-], got {chain_id!r}", "chain_id"
        )
    _check_time(genesis_time)
    if not isinstance(consensus, GenesisConsensus):
        raise GenesisError("expected GenesisConsensus", "consensus")


@dataclass(frozen=True)
class GenesisDraft:
    """A genesis before the key ceremony: everything but its result. Its hash binds
    every file of the ceremony, so none can be replayed into another consortium."""

    chain_id: str
    genesis_time: str
    members: tuple[Member, ...]
    consensus: GenesisConsensus
    case_approvals: int
    pseudonyms: PseudonymParameters

    def __post_init__(self) -> None:
        _check_header(self.chain_id, self.genesis_time, self.consensus)
        n = _check_members(self.members, self.case_approvals)
        if not isinstance(self.pseudonyms, PseudonymParameters):
            raise GenesisError("expected PseudonymParameters", "pseudonyms")
        _check_threshold(self.pseudonyms.threshold, n)

    def hash(self) -> bytes:
        return hash_bytes("genesis-draft", encode_value(self))

    def member_index(self, name: str) -> int | None:
        """The 1-based index of the member called ``name`` (its ceremony index)."""
        return next((i + 1 for i, m in enumerate(self.members) if m.name == name), None)


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time: str
    members: tuple[Member, ...]
    consensus: GenesisConsensus
    case_approvals: int
    pseudonyms: GenesisPseudonyms

    def __post_init__(self) -> None:
        _check_header(self.chain_id, self.genesis_time, self.consensus)
        n = _check_members(self.members, self.case_approvals)
        p = self.pseudonyms
        if not isinstance(p, GenesisPseudonyms):
            raise GenesisError("expected GenesisPseudonyms", "pseudonyms")
        _check_threshold(p.threshold, n)
        if len(p.public_shares) != n:
            raise GenesisError(
                f"expected one per member ({n}), got {len(p.public_shares)}",
                "pseudonyms.public_shares",
            )
        names = {m.name for m in self.members}
        for i, dealer in enumerate(p.dealers):
            if dealer not in names:
                raise GenesisError(f"{dealer!r} is not a member", f"pseudonyms.dealers[{i}]")

    def hash(self) -> bytes:
        return hash_bytes("genesis", encode_value(self))

    def draft(self) -> GenesisDraft:
        """The draft this genesis was finished from."""
        return GenesisDraft(
            chain_id=self.chain_id,
            genesis_time=self.genesis_time,
            members=self.members,
            consensus=self.consensus,
            case_approvals=self.case_approvals,
            pseudonyms=self.pseudonyms.parameters(),
        )

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
_GENESIS_FIELDS = (
    "chain_id",
    "genesis_time",
    "case_approvals",
    "consensus",
    "members",
    "pseudonyms",
)
_DRAFT_FIELDS = ("draft", *_GENESIS_FIELDS)
_PARAMETER_FIELDS = ("scheme", "threshold", "report_quota_per_day", "query_quota_per_case_per_day")
_PSEUDONYM_FIELDS = (*_PARAMETER_FIELDS, "public_key", "public_shares", "dealers", "transcript")


def _public_key(value: object, path: str) -> bytes:
    return hex_bytes(value, PUBLIC_KEY_SIZE, path)


def parse_member(doc: object, path: str = "") -> Member:
    obj = object_fields(doc, _MEMBER_FIELDS, path)
    prefix = f"{path}." if path else ""
    roles = obj["roles"]
    if not isinstance(roles, list):
        raise GenesisError(f"expected an array, got {json_type(roles)}", prefix + "roles")
    name = string(obj["name"], prefix + "name")
    institution = string(obj["institution"], prefix + "institution")
    role_names = tuple(string(r, f"{prefix}roles[{i}]") for i, r in enumerate(roles))
    public_key = _public_key(obj["public_key"], prefix + "public_key")
    address = string(obj["address"], prefix + "address")
    try:
        return Member(name, institution, role_names, public_key, address)
    except GenesisError as exc:
        raise (exc.under(path) if path else exc) from None


def parse_consensus(doc: object, path: str = "consensus") -> GenesisConsensus:
    obj = object_fields(doc, _CONSENSUS_FIELDS, path)
    values = {name: integer(obj[name], f"{path}.{name}") for name in _CONSENSUS_FIELDS}
    try:
        return GenesisConsensus(**values)
    except GenesisError as exc:
        raise exc.under(path) from None


def parse_parameters(doc: object, path: str = "pseudonyms") -> PseudonymParameters:
    obj = object_fields(doc, _PARAMETER_FIELDS, path)
    try:
        return PseudonymParameters(
            scheme=string(obj["scheme"], f"{path}.scheme"),
            threshold=integer(obj["threshold"], f"{path}.threshold"),
            report_quota_per_day=integer(
                obj["report_quota_per_day"], f"{path}.report_quota_per_day"
            ),
            query_quota_per_case_per_day=integer(
                obj["query_quota_per_case_per_day"], f"{path}.query_quota_per_case_per_day"
            ),
        )
    except GenesisError as exc:
        raise (exc if exc.field_path.startswith(path) else exc.under(path)) from None


def parse_pseudonyms(doc: object, path: str = "pseudonyms") -> GenesisPseudonyms:
    obj = object_fields(doc, _PSEUDONYM_FIELDS, path)
    params = parse_parameters({k: obj[k] for k in _PARAMETER_FIELDS}, path)
    shares = array(obj["public_shares"], f"{path}.public_shares")
    dealers = array(obj["dealers"], f"{path}.dealers")
    try:
        return GenesisPseudonyms(
            threshold=params.threshold,
            public_key=hex_bytes(obj["public_key"], POINT_SIZE, f"{path}.public_key"),
            public_shares=tuple(
                hex_bytes(v, POINT_SIZE, f"{path}.public_shares[{i}]") for i, v in enumerate(shares)
            ),
            dealers=tuple(string(v, f"{path}.dealers[{i}]") for i, v in enumerate(dealers)),
            transcript=hex_bytes(obj["transcript"], TRANSCRIPT_SIZE, f"{path}.transcript"),
            report_quota_per_day=params.report_quota_per_day,
            query_quota_per_case_per_day=params.query_quota_per_case_per_day,
            scheme=params.scheme,
        )
    except GenesisError as exc:
        raise (exc if exc.field_path.startswith(path) else exc.under(path)) from None


def _parse_common(obj: dict[str, Any]) -> dict[str, Any]:
    members_doc = array(obj["members"], "members")
    return {
        "chain_id": string(obj["chain_id"], "chain_id"),
        "genesis_time": string(obj["genesis_time"], "genesis_time"),
        "members": tuple(parse_member(m, f"members[{i}]") for i, m in enumerate(members_doc)),
        "consensus": parse_consensus(obj["consensus"]),
        "case_approvals": integer(obj["case_approvals"], "case_approvals"),
    }


def parse_genesis(doc: object) -> Genesis:
    """Build a ``Genesis`` from the decoded JSON document, checking every value."""
    if isinstance(doc, dict):
        if doc.get("draft") is True:
            raise GenesisError(DRAFT_NOT_FINISHED)
        if "pseudonyms" not in doc:
            raise GenesisError(OLD_SHARED_KEY, "pseudonyms")
    obj = object_fields(doc, _GENESIS_FIELDS, "")
    common = _parse_common(obj)
    return Genesis(**common, pseudonyms=parse_pseudonyms(obj["pseudonyms"]))


def parse_draft(doc: object) -> GenesisDraft:
    """Build a ``GenesisDraft`` from its decoded JSON document (``"draft": true``)."""
    if isinstance(doc, dict) and doc.get("draft") is not True:
        if "pseudonyms" in doc and "draft" not in doc:
            raise GenesisError("this is a finished genesis, not a draft", "draft")
        raise GenesisError(f"expected true, got {doc.get('draft')!r}", "draft")
    obj = object_fields(doc, _DRAFT_FIELDS, "")
    common = _parse_common(obj)
    return GenesisDraft(**common, pseudonyms=parse_parameters(obj["pseudonyms"]))


def member_to_dict(member: Member) -> dict[str, Any]:
    return {
        "name": member.name,
        "institution": member.institution,
        "roles": list(member.roles),
        "public_key": member.public_key.hex(),
        "address": member.address,
    }


def _common_to_dict(genesis: Genesis | GenesisDraft) -> dict[str, Any]:
    c = genesis.consensus
    return {
        "chain_id": genesis.chain_id,
        "genesis_time": genesis.genesis_time,
        "case_approvals": genesis.case_approvals,
        "consensus": {name: getattr(c, name) for name in _CONSENSUS_FIELDS},
        "members": [member_to_dict(m) for m in genesis.members],
    }


def _parameters_to_dict(p: PseudonymParameters | GenesisPseudonyms) -> dict[str, Any]:
    return {name: getattr(p, name) for name in _PARAMETER_FIELDS}


def genesis_to_dict(genesis: Genesis) -> dict[str, Any]:
    p = genesis.pseudonyms
    return _common_to_dict(genesis) | {
        "pseudonyms": _parameters_to_dict(p)
        | {
            "public_key": p.public_key.hex(),
            "public_shares": [s.hex() for s in p.public_shares],
            "dealers": list(p.dealers),
            "transcript": p.transcript.hex(),
        }
    }


def draft_to_dict(draft: GenesisDraft) -> dict[str, Any]:
    return (
        {"draft": True}
        | _common_to_dict(draft)
        | {"pseudonyms": _parameters_to_dict(draft.pseudonyms)}
    )


def load_genesis(path: Path | str) -> Genesis:
    return load_json(path, parse_genesis)


def save_genesis(path: Path | str, genesis: Genesis) -> None:
    atomic_write(path, dumps(genesis_to_dict(genesis)), 0o644)


def load_draft(path: Path | str) -> GenesisDraft:
    return load_json(path, parse_draft)


def save_draft(path: Path | str, draft: GenesisDraft) -> None:
    atomic_write(path, dumps(draft_to_dict(draft)), 0o644)


def load_descriptor(path: Path | str) -> MemberDescriptor:
    return load_json(path, parse_member)


def save_descriptor(path: Path | str, descriptor: MemberDescriptor) -> None:
    atomic_write(path, dumps(member_to_dict(descriptor)), 0o644)


def assemble_draft(
    chain_id: str,
    descriptors: Sequence[MemberDescriptor],
    case_approvals: int,
    params: GenesisConsensus | None = None,
    *,
    genesis_time: str | None = None,
    threshold: int | None = None,
    report_quota_per_day: int = DEFAULT_REPORT_QUOTA,
    query_quota_per_case_per_day: int = DEFAULT_QUERY_QUOTA,
) -> GenesisDraft:
    """A draft with the members in the order given: member i is the primary of view i
    and has index i + 1 in the key ceremony. ``threshold`` defaults to f + 1 (at least 2)."""
    try:
        pseudonyms = PseudonymParameters(
            threshold=threshold if threshold is not None else default_threshold(len(descriptors)),
            report_quota_per_day=report_quota_per_day,
            query_quota_per_case_per_day=query_quota_per_case_per_day,
        )
    except GenesisError as exc:
        raise exc.under("pseudonyms") from None
    return GenesisDraft(
        chain_id=chain_id,
        genesis_time=genesis_time if genesis_time is not None else now_iso(),
        members=tuple(descriptors),
        consensus=params if params is not None else GenesisConsensus(),
        case_approvals=case_approvals,
        pseudonyms=pseudonyms,
    )


def finished_genesis(draft: GenesisDraft, pseudonyms: GenesisPseudonyms) -> Genesis:
    """The genesis of ``draft`` with the key ceremony's result; refuses a result whose
    parameters are not the draft's."""
    if pseudonyms.parameters() != draft.pseudonyms:
        raise GenesisError("the ceremony's parameters differ from the draft's", "pseudonyms")
    return Genesis(
        chain_id=draft.chain_id,
        genesis_time=draft.genesis_time,
        members=draft.members,
        consensus=draft.consensus,
        case_approvals=draft.case_approvals,
        pseudonyms=pseudonyms,
    )
