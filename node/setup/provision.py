"""Creating a member's home directory and a local consortium's worth of them.

A member's home holds its node key (owner-only), its config, its public descriptor
(what it sends the other members) and, once the key ceremony has finished, the genesis
file and the member's own share of the pseudonym key (owner-only; nobody holds the whole
key, see ``node.setup.ceremony``). Both ``init`` and
``testnet`` also create a user for the local command line (``LOCAL_USER``) and write its
token to ``<home>/token`` (owner-only): ``init`` an operator only, ``testnet`` every role
the member's genesis roles allow, plus operator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.setup.ceremony import run_in_process
from node.setup.config import default_config, render_config
from node.setup.genesis import (
    DEFAULT_REPORT_QUOTA,
    Genesis,
    GenesisConsensus,
    GenesisError,
    Member,
    assemble_draft,
    save_descriptor,
    save_genesis,
)
from node.setup.keys import atomic_write, generate_key, load_key, save_key
from node.setup.shares import save_share
from node.setup.users import ROLE_NEEDS, USER_ROLES, add_user, write_token_file

CONFIG_FILE = "config.toml"
DESCRIPTOR_FILE = "member.json"
GENESIS_FILE = "genesis.json"
LOCAL_USER = "cli"


# The layout of a local consortium: member i's institution, and the roles it gets.
LOCAL_INSTITUTIONS = ("police", "bank", "telecom", "bank", "telecom", "utility")
POLICE_ROLES = ("reporter", "investigator", "approver", "auditor")
PARTNER_ROLES = ("reporter", "approver", "auditor")


def local_member_layout(index: int) -> tuple[str, tuple[str, ...]]:
    institution = LOCAL_INSTITUTIONS[index % len(LOCAL_INSTITUTIONS)]
    return institution, POLICE_ROLES if institution == "police" else PARTNER_ROLES


class ProvisionError(ValueError):
    """A home directory that cannot be created as asked; the message says why."""


@dataclass(frozen=True)
class MemberHome:
    path: Path
    descriptor: Member

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE


def init_member(
    home: Path,
    *,
    name: str,
    institution: str,
    roles: Sequence[str],
    address: str,
    p2p_listen: str | None = None,
    api_listen: str = "127.0.0.1:8000",
    passphrase: str | None = None,
    user_roles: Sequence[str] = ("operator",),
) -> MemberHome:
    """Create key, config and descriptor in ``home``, and the local user with
    ``user_roles``; refuses to touch an existing key."""
    config = default_config(name)
    if (home / config.node.key_file).exists() or (home / CONFIG_FILE).exists():
        raise ProvisionError(f"{home} already holds a member (found its key or config)")
    key = generate_key()
    descriptor = Member(
        name=name,
        institution=institution,
        roles=tuple(roles),
        public_key=key.public_key,
        address=address,
    )
    port = address.rpartition(":")[2]
    listen = p2p_listen if p2p_listen is not None else f"0.0.0.0:{port}"
    config = dataclasses.replace(
        config,
        p2p=dataclasses.replace(config.p2p, listen=listen),
        api=dataclasses.replace(config.api, listen=api_listen),
    )
    home.mkdir(parents=True, exist_ok=True)
    save_key(home / config.node.key_file, key, passphrase)
    atomic_write(home / CONFIG_FILE, render_config(config).encode(), mode=0o644)
    save_descriptor(home / DESCRIPTOR_FILE, descriptor)
    local_user(home, user_roles, roles)
    return MemberHome(home, descriptor)


def allowed_user_roles(member_roles: Sequence[str]) -> tuple[str, ...]:
    """Every user role the member's genesis roles allow (operator always)."""
    held = set(member_roles)
    return tuple(r for r in USER_ROLES if not ROLE_NEEDS[r] or held & set(ROLE_NEEDS[r]))


def local_user(home: Path, roles: Sequence[str], member_roles: Sequence[str]) -> str:
    """Create the local command line's user with ``roles`` and write its token to
    ``<home>/token``; returns the token."""
    _, token = add_user(home, LOCAL_USER, roles, member_roles)
    write_token_file(home, token)
    return token


def make_testnet(
    base: Path,
    nodes: int,
    *,
    chain_id: str = "local",
    p2p_base_port: int = 26600,
    api_base_port: int = 8600,
    consensus: GenesisConsensus | None = None,
    case_approvals: int | None = None,
    threshold: int | None = None,
    report_quota_per_day: int = DEFAULT_REPORT_QUOTA,
) -> tuple[Genesis, list[MemberHome]]:
    """A whole consortium on 127.0.0.1: one home per member, one genesis shared by all,
    its pseudonym key made by the key ceremony run member by member in this process;
    each home gets its own share (``threshold`` defaults to the draft's f + 1)."""
    if not 4 <= nodes <= 64:
        raise ProvisionError(f"a local consortium has 4 to 64 members, not {nodes}")
    if base.exists() and any(base.iterdir()):
        raise ProvisionError(f"{base} is not empty; choose a new directory")
    homes = []
    for i in range(nodes):
        institution, roles = local_member_layout(i)
        homes.append(
            init_member(
                base / f"node{i}",
                name=f"{institution}-{i}",
                institution=institution,
                roles=roles,
                address=f"127.0.0.1:{p2p_base_port + i}",
                p2p_listen=f"127.0.0.1:{p2p_base_port + i}",
                api_listen=f"127.0.0.1:{api_base_port + i}",
                # A local consortium's command line does everything the member may.
                user_roles=allowed_user_roles(roles),
            )
        )
    try:
        draft = assemble_draft(
            chain_id,
            [h.descriptor for h in homes],
            case_approvals=case_approvals if case_approvals is not None else min(3, nodes),
            params=consensus,
            threshold=threshold,
            report_quota_per_day=report_quota_per_day,
        )
    except GenesisError as exc:
        raise ProvisionError(str(exc)) from None
    files = default_config("x")
    keys = [load_key(h.path / files.node.key_file, None) for h in homes]
    genesis, shares = run_in_process(draft, keys)
    for home, share in zip(homes, shares, strict=True):
        save_genesis(home.path / GENESIS_FILE, genesis)
        save_share(home.path / files.tracing.pseudonym_share_file, share, None)
    return genesis, homes
