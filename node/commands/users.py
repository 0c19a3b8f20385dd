"""``crosstrace user``: the people who act for this member, their roles and tokens
(``node.setup.users``). The running node reads the store and notices changes, so a user
added or revoked here counts from the next second, without a restart."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from node.commands.cases import parse_duration_ms
from node.commands.options import CONTEXT

_home = click.option(
    "--home",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The member's home directory (it holds users.json).",
)


def _member_roles(home: Path) -> tuple[str, ...]:
    from node.setup.config import ConfigError, load_config
    from node.setup.genesis import (
        Genesis,
        GenesisDraft,
        GenesisError,
        load_draft,
        load_genesis,
    )

    try:
        config = load_config(home / "config.toml")
        genesis: Genesis | GenesisDraft
        try:
            genesis = load_genesis(config.node.genesis_file)
        except GenesisError:
            # Users may be set up while the key ceremony runs: the draft lists the
            # same members with the same roles.
            genesis = load_draft(config.node.genesis_file)
    except (ConfigError, GenesisError, OSError) as exc:
        raise click.ClickException(
            f"{home}: the member's roles come from its genesis, which cannot be read: {exc}"
        ) from None
    member = next((m for m in genesis.members if m.name == config.node.name), None)
    if member is None:
        raise click.ClickException(f"{home}: {config.node.name!r} is not in the genesis")
    return member.roles


@click.group(context_settings=CONTEXT)
def user() -> None:
    """The member's users: people with roles and API tokens."""


@user.command("add", context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["investigator", "approver", "reporter", "operator"]),
    help="Repeatable. investigator needs the member's investigator (or auditor) role in "
    "the genesis, approver its approver role, reporter its reporter role.",
)
@click.option("--expires-in", help="The token stops working after this long: 90m, 12h, 90d, 2w.")
@_home
def add(name: str, roles: tuple[str, ...], expires_in: str | None, home: Path) -> None:
    """Create user NAME and print its token, once: it is stored only as a hash.

    \b
    Example:
      crosstrace user add alice --role investigator --expires-in 90d --home ./node
    """
    from node.setup.users import UserError, add_user

    expires = None if expires_in is None else parse_duration_ms(expires_in)
    try:
        created, token = add_user(home, name, roles, _member_roles(home), expires_in_ms=expires)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"user {created.name} created: roles {', '.join(created.roles)}, actor "
        f"{created.actor.hex()}",
        err=True,
    )
    click.echo("its token (shown once; give it to the user, e.g. as CROSSTRACE_TOKEN):", err=True)
    click.echo(token)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@user.command("list", context_settings=CONTEXT)
@_home
def list_users(home: Path) -> None:
    """The users: name, roles, created, expires, revoked, actor id."""
    from node.setup.users import UserError, read_users

    try:
        users = read_users(home)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    now = int(time.time() * 1000)
    rows = [("NAME", "ROLES", "CREATED", "EXPIRES", "REVOKED", "ACTOR")]
    for u in users:
        expires = _when(u.expires_ms)
        if u.expires_ms is not None and u.expires_ms <= now:
            expires += " (expired)"
        rows.append(
            (
                u.name,
                ",".join(u.roles),
                _when(u.created_ms),
                expires,
                _when(u.revoked_ms),
                u.actor.hex(),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@user.command("revoke", context_settings=CONTEXT)
@click.argument("name")
@_home
def revoke(name: str, home: Path) -> None:
    """Revoke user NAME: its token stops working within a second on the running node."""
    from node.setup.users import UserError, revoke_user

    try:
        revoke_user(home, name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {name} revoked")
