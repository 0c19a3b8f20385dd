"""``crosstrace dkg``: the pseudonym key ceremony among the genesis members, after
``crosstrace genesis`` wrote the draft and before anyone starts a node.

deal (every member) -> collect (the assembler) -> check (every member) -> answer (only
dealers named in complaints) -> finish (the assembler) -> share (every member). The
assembler only ever sees commitments and sealed shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from node.commands.options import CONTEXT, read_passphrase
from node.setup.ceremony_files import Answer, Complaints

if TYPE_CHECKING:
    from node.setup.config import NodeConfig
    from node.setup.genesis import GenesisDraft
    from node.setup.keys import NodeKey

DRAFT_IN_HOME = "genesis-draft.json"

_home = click.option(
    "--home",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="This member's home directory (made by crosstrace init).",
)
_passphrase = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The passphrase of an encrypted node key.",
)
_deals = click.option(
    "--deals",
    "deals_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The bundle of deals the assembler sent (deals.json).",
)
_out = click.option("--out", type=click.Path(dir_okay=False, path_type=Path))


def _errors() -> tuple[type[Exception], ...]:
    from node.setup.ceremony import CeremonyError
    from node.setup.config import ConfigError
    from node.setup.genesis import GenesisError
    from node.setup.keys import KeyFileError
    from node.setup.shares import PseudonymShareError

    return (CeremonyError, ConfigError, GenesisError, KeyFileError, PseudonymShareError, OSError)


def _complaints_and_answers(
    complaint_files: tuple[Path, ...], answer_files: tuple[Path, ...], more: tuple[Path, ...]
) -> tuple[list[tuple[str, Complaints]], list[tuple[str, Answer]]]:
    """The files of --complaints and --answers, and the FILES after them, sorted by the
    kind each says it is (so ``--complaints complaints-*.json`` works in a shell)."""
    from node.setup.ceremony_files import load_answer, load_any, load_complaints

    complaints = [(str(p), load_complaints(p)) for p in complaint_files]
    answers = [(str(p), load_answer(p)) for p in answer_files]
    for path in more:
        item = load_any(path)
        if isinstance(item, Complaints):
            complaints.append((str(path), item))
        elif isinstance(item, Answer):
            answers.append((str(path), item))
        else:
            raise click.ClickException(f"{path}: expected a complaints or answer file")
    return complaints, answers


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _member(home: Path, passphrase_file: Path | None) -> tuple[NodeConfig, NodeKey]:
    """This member's config and node key."""
    from node.setup.config import load_config
    from node.setup.keys import load_key

    config = load_config(home / "config.toml")
    return config, load_key(config.node.key_file, read_passphrase(passphrase_file))


def _home_draft(home: Path) -> GenesisDraft:
    from node.setup.genesis import load_draft

    path = home / DRAFT_IN_HOME
    if not path.exists():
        raise click.ClickException(
            f"{path} does not exist: run crosstrace dkg deal --home {home} --draft FILE first "
            "(it keeps the draft this member dealt for)"
        )
    return load_draft(path)


@click.group(context_settings=CONTEXT)
def dkg() -> None:
    """The pseudonym key ceremony: make the consortium's key with nobody holding it.

    \b
    Steps (README, "A consortium across machines"):
      every member:   crosstrace dkg deal --home H --draft genesis-draft.json
      the assembler:  crosstrace dkg collect --draft genesis-draft.json deal-*.json
      every member:   crosstrace dkg check --home H --deals deals.json
      named dealers:  crosstrace dkg answer --home H --deals deals.json complaints-*.json
      the assembler:  crosstrace dkg finish --draft ... --deals ... --complaints ...
      every member:   crosstrace dkg share --home H --deals deals.json
    """


@dkg.command(context_settings=CONTEXT)
@_home
@click.option(
    "--draft",
    "draft_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The draft genesis from crosstrace genesis.",
)
@_out
@_passphrase
def deal(home: Path, draft_file: Path, out: Path | None, passphrase_file: Path | None) -> None:
    """Deal this member's part of the key: commitments, and a share sealed to each member.

    Check the draft first (members, addresses, threshold): dealing agrees to it. The
    draft is kept in HOME for the later steps.
    """
    from node.setup.ceremony import make_deal
    from node.setup.ceremony_files import save_ceremony_file
    from node.setup.genesis import load_draft, save_draft

    try:
        draft = load_draft(draft_file)
        _, key = _member(home, passphrase_file)
        made = make_deal(draft, key)
        kept = home / DRAFT_IN_HOME
        if kept.exists() and _home_draft(home).hash() != draft.hash():
            raise click.ClickException(
                f"{kept} holds another draft; this member already dealt for it"
            )
        out = out if out is not None else Path(f"deal-{made.dealer}.json")
        save_ceremony_file(out, made)
        if not kept.exists():
            save_draft(kept, draft)
    except _errors() as exc:
        raise _fail(exc) from None
    t, n = draft.pseudonyms.threshold, len(draft.members)
    click.echo(f"deal by {made.dealer} written to {out} (threshold {t} of {n})")
    click.echo(f"  draft hash: {draft.hash().hex()}")
    click.echo("  it holds commitments and shares sealed to each member, nothing in the clear")
    click.echo("next: send it to the assembler (crosstrace dkg collect)")


@dkg.command(context_settings=CONTEXT)
@click.option(
    "--draft",
    "draft_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The draft genesis the deals were made for.",
)
@click.argument(
    "deal_files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--out",
    default="deals.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
def collect(draft_file: Path, deal_files: tuple[Path, ...], out: Path) -> None:
    """Check the members' deals and bundle them into one file for everyone (assembler)."""
    from node.setup.ceremony import collect as collect_deals
    from node.setup.ceremony_files import load_deal, save_ceremony_file
    from node.setup.genesis import load_draft

    try:
        draft = load_draft(draft_file)
        bundle = collect_deals(draft, [(str(p), load_deal(p)) for p in deal_files])
        save_ceremony_file(out, bundle)
    except _errors() as exc:
        raise _fail(exc) from None
    missing = [m.name for m in draft.members if bundle.deal_of(m.name) is None]
    click.echo(f"{len(bundle.deals)} deals checked and bundled in {out}")
    if missing:
        click.echo(f"  no deal from: {', '.join(missing)} (they receive shares but add none)")
    click.echo("next: send it to every member (crosstrace dkg check --home H --deals deals.json)")


@dkg.command(context_settings=CONTEXT)
@_home
@_deals
@_out
@_passphrase
def check(home: Path, deals_file: Path, out: Path | None, passphrase_file: Path | None) -> None:
    """Open this member's shares and complain about every dealer whose share fails."""
    from node.setup.ceremony import complain
    from node.setup.ceremony_files import load_bundle, save_ceremony_file

    try:
        draft = _home_draft(home)
        _, key = _member(home, passphrase_file)
        complaints = complain(draft, load_bundle(deals_file), key, bundle_file=str(deals_file))
        out = out if out is not None else Path(f"complaints-{complaints.member}.json")
        save_ceremony_file(out, complaints)
    except _errors() as exc:
        raise _fail(exc) from None
    if complaints.against:
        click.echo(f"complaints by {complaints.member} against: {', '.join(complaints.against)}")
    else:
        click.echo(f"every share for {complaints.member} checks; no complaints")
    click.echo(f"  written to {out}")
    click.echo(
        "next: send it to the assembler; dealers named in any complaint run crosstrace dkg answer"
    )


@dkg.command(context_settings=CONTEXT)
@_home
@_deals
@click.argument(
    "complaint_files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@_out
@_passphrase
def answer(
    home: Path,
    deals_file: Path,
    complaint_files: tuple[Path, ...],
    out: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Answer the complaints against this member by revealing those shares in the clear."""
    from node.setup.ceremony import answer as make_answer
    from node.setup.ceremony_files import load_bundle, load_complaints, save_ceremony_file

    try:
        draft = _home_draft(home)
        config, key = _member(home, passphrase_file)
        complaints = [load_complaints(p) for p in complaint_files]
        reply = make_answer(
            draft, load_bundle(deals_file), complaints, key, bundle_file=str(deals_file)
        )
        if reply is None:
            click.echo(f"no complaint names {config.node.name}; nothing to answer")
            return
        out = out if out is not None else Path(f"answer-{reply.dealer}.json")
        save_ceremony_file(out, reply)
    except _errors() as exc:
        raise _fail(exc) from None
    names = ", ".join(r.recipient for r in reply.revealed)
    click.echo(f"answer by {reply.dealer} written to {out}: shares for {names} revealed")
    click.echo("next: send it to the assembler (crosstrace dkg finish ... --answers)")


@dkg.command(context_settings=CONTEXT)
@click.option(
    "--draft",
    "draft_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The draft genesis.",
)
@_deals
@click.option(
    "--complaints",
    "complaint_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Every member's complaints file (repeatable).",
)
@click.option(
    "--answers",
    "answer_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Every answer file (repeatable).",
)
@click.option(
    "--out",
    default="genesis.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.argument("more", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
def finish(
    draft_file: Path,
    deals_file: Path,
    complaint_files: tuple[Path, ...],
    answer_files: tuple[Path, ...],
    out: Path,
    more: tuple[Path, ...],
) -> None:
    """Resolve the complaints and write the final genesis (assembler).

    Complaints and answer files may also follow as FILES; each is taken for the kind
    it says it is (so --complaints complaints-*.json works in a shell).
    """
    from node.setup.ceremony import finish as finish_ceremony
    from node.setup.ceremony_files import load_bundle
    from node.setup.genesis import load_draft, save_genesis

    if out.exists():
        raise click.ClickException(f"{out} already exists; refusing to overwrite a genesis")
    try:
        draft = load_draft(draft_file)
        bundle = load_bundle(deals_file)
        complaints, answers = _complaints_and_answers(complaint_files, answer_files, more)
        made = finish_ceremony(draft, bundle, complaints, answers, bundle_file=str(deals_file))
        save_genesis(out, made)
    except _errors() as exc:
        raise _fail(exc) from None
    p = made.pseudonyms
    dropped = [d.dealer for d in bundle.deals if d.dealer not in p.dealers]
    click.echo(f"genesis for chain {made.chain_id} written to {out}")
    click.echo(f"  genesis hash: {made.hash().hex()}")
    click.echo(
        f"  pseudonym key: {p.threshold} of {len(made.members)} shares, {len(p.dealers)} dealers"
    )
    if dropped:
        click.echo(f"  disqualified: {', '.join(dropped)}")
    click.echo(
        "next: send it to every member, into their home as genesis.json; each runs "
        "crosstrace dkg share --home H --deals deals.json"
    )


@dkg.command(context_settings=CONTEXT)
@_home
@_deals
@click.option(
    "--answers",
    "answer_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Answer files (needed when a share to this member was answered).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The node key's passphrase; the share file is then encrypted under it too.",
)
@click.argument("more", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
def share(
    home: Path,
    deals_file: Path,
    answer_files: tuple[Path, ...],
    passphrase_file: Path | None,
    more: tuple[Path, ...],
) -> None:
    """Compute this member's share of the key and write it to the share file (0600).

    Answer files may also follow as FILES.
    """
    from node.setup.ceremony import final_share
    from node.setup.ceremony_files import load_bundle
    from node.setup.genesis import load_genesis
    from node.setup.shares import save_share

    try:
        config, key = _member(home, passphrase_file)
        genesis = load_genesis(config.node.genesis_file)
        _, answers = _complaints_and_answers((), answer_files, more)
        mine = final_share(
            genesis, load_bundle(deals_file), answers, key, bundle_file=str(deals_file)
        )
        target = config.tracing.pseudonym_share_file
        save_share(target, mine, read_passphrase(passphrase_file))
    except _errors() as exc:
        raise _fail(exc) from None
    name = config.node.name
    encrypted = " (encrypted under the node key's passphrase)" if passphrase_file else ""
    click.echo(f"share of member {mine.index} ({name}) written to {target}{encrypted}")
    click.echo("  it matches this member's public share in the genesis")
    click.echo(f"next: crosstrace start --home {home}")
