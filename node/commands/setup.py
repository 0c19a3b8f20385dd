"""Setting members up: ``crosstrace init`` (one member's key, config and descriptor),
``genesis`` (the consortium's draft genesis from the descriptors, for the key ceremony
of ``crosstrace dkg``) and ``testnet`` (a whole local consortium)."""

from __future__ import annotations

from pathlib import Path

import click

from node.commands.options import CONTEXT, read_passphrase


@click.command(context_settings=CONTEXT)
@click.argument("home", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="This member's name, as the genesis will list it.")
@click.option(
    "--institution",
    required=True,
    type=click.Choice(["police", "bank", "telecom", "utility", "other"]),
    help="What kind of institution runs this node.",
)
@click.option(
    "--roles",
    default="reporter,approver",
    show_default=True,
    help="Comma-separated: reporter, investigator, approver, auditor.",
)
@click.option("--address", required=True, help="host:port where the other members reach us.")
@click.option("--api-listen", default="127.0.0.1:8000", show_default=True, help="Local API.")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Encrypt the node key under the passphrase in this file.",
)
def init(
    home: Path,
    name: str,
    institution: str,
    roles: str,
    address: str,
    api_listen: str,
    passphrase_file: Path | None,
) -> None:
    """Create one member's node key, config and public descriptor in HOME.

    Send HOME/member.json to whoever assembles the genesis; keep the key to yourself.

    \b
    Example:
      crosstrace init ./bank-a --name bank-a --institution bank --address 10.0.0.5:26656
    """
    from node.setup.config import ConfigError
    from node.setup.genesis import GenesisError
    from node.setup.keys import KeyFileError
    from node.setup.provision import ProvisionError, init_member

    try:
        created = init_member(
            home,
            name=name,
            institution=institution,
            roles=[r.strip() for r in roles.split(",") if r.strip()],
            address=address,
            api_listen=api_listen,
            passphrase=read_passphrase(passphrase_file),
        )
    except (ProvisionError, GenesisError, ConfigError, KeyFileError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"member {name} created in {home}")
    click.echo(f"  public key: {created.descriptor.public_key.hex()}")
    click.echo(f"  descriptor: {home / 'member.json'} (send it to the genesis assembler)")
    click.echo(f"  config:     {created.config_file}")
    click.echo(
        f"  cli user:   an operator, token in {home / 'token'} "
        "(crosstrace user add NAME --role ... for the people)"
    )


@click.command(context_settings=CONTEXT)
@click.argument(
    "descriptors", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--chain-id", required=True, help="The consortium's chain id, e.g. sh-fraud-1.")
@click.option("--approvals", default=3, show_default=True, help="Approvals a case needs (k).")
@click.option(
    "--threshold",
    type=int,
    help="Members needed to compute a pseudonym (t). Default: f + 1, at least 2.",
)
@click.option(
    "--report-quota",
    default=200_000,
    show_default=True,
    help="Pseudonyms a member may have computed per day for its reports.",
)
@click.option(
    "--query-quota",
    default=10_000,
    show_default=True,
    help="Pseudonyms computed per case per day for queries.",
)
@click.option(
    "--out",
    "out",
    default="genesis-draft.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
def genesis(
    descriptors: tuple[Path, ...],
    chain_id: str,
    approvals: int,
    threshold: int | None,
    report_quota: int,
    query_quota: int,
    out: Path,
) -> None:
    """Assemble the consortium's draft genesis from the members' descriptors.

    The order of DESCRIPTORS is the order of members: member i is the primary of view i.
    The draft is everything but the pseudonym key, which the members make next with
    the key ceremony (crosstrace dkg).

    \b
    Example:
      crosstrace genesis police/member.json bank-a/member.json telco-b/member.json \\
          utility-c/member.json --chain-id sh-fraud-1 --approvals 3
    """
    from node.setup.genesis import GenesisError, assemble_draft, load_descriptor, save_draft

    members = []
    for path in descriptors:
        try:
            members.append(load_descriptor(path))
        except (GenesisError, OSError) as exc:
            raise click.ClickException(f"{path}: {exc}") from None
    try:
        draft = assemble_draft(
            chain_id,
            members,
            case_approvals=approvals,
            threshold=threshold,
            report_quota_per_day=report_quota,
            query_quota_per_case_per_day=query_quota,
        )
    except (GenesisError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if out.exists():
        raise click.ClickException(f"{out} already exists; refusing to overwrite a draft")
    save_draft(out, draft)
    t = draft.pseudonyms.threshold
    click.echo(f"draft genesis for chain {chain_id} with {len(members)} members written to {out}")
    click.echo(f"  draft hash: {draft.hash().hex()}")
    click.echo(f"  pseudonym key: any {t} of {len(members)} members compute a pseudonym")
    click.echo(
        f"next: send {out} to every member; each checks it and runs "
        f"crosstrace dkg deal --home HOME --draft {out.name}"
    )


@click.command(context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--nodes", "-n", default=4, show_default=True, help="Members (4 to 64).")
@click.option("--chain-id", default="local", show_default=True)
@click.option("--p2p-port", default=26600, show_default=True, help="First member's p2p port.")
@click.option("--api-port", default=8600, show_default=True, help="First member's API port.")
@click.option(
    "--threshold",
    type=int,
    help="Members needed to compute a pseudonym. Default: f + 1, at least 2.",
)
@click.option(
    "--report-quota",
    default=200_000,
    show_default=True,
    help="Pseudonyms a member may have computed per day for its reports.",
)
def testnet(
    directory: Path,
    nodes: int,
    chain_id: str,
    p2p_port: int,
    api_port: int,
    threshold: int | None,
    report_quota: int,
) -> None:
    """Create a whole local consortium on 127.0.0.1 in DIRECTORY, one home per member.

    The pseudonym key ceremony runs here among the new members; each home gets its
    own share.

    \b
    Example:
      crosstrace testnet --nodes 4 ./consortium
    """
    from node.setup.provision import ProvisionError, make_testnet

    try:
        created, homes = make_testnet(
            directory,
            nodes,
            chain_id=chain_id,
            p2p_base_port=p2p_port,
            api_base_port=api_port,
            threshold=threshold,
            report_quota_per_day=report_quota,
        )
    except ProvisionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"local consortium {chain_id!r} with {nodes} members in {directory}")
    click.echo(f"  genesis hash: {created.hash().hex()}")
    t = created.pseudonyms.threshold
    click.echo(f"  pseudonym key: any {t} of {nodes} members, each home holds its share")
    for home in homes:
        click.echo(f"  {home.descriptor.name:<12} {home.path}  p2p {home.descriptor.address}")
