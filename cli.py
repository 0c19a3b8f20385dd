"""The ``crosstrace`` command: the root group, assembling the command groups defined in
``node/commands/`` (one module per group; shared options in ``node.commands.options``)."""

from __future__ import annotations

import click

from node.commands.bench import bench
from node.commands.cases import audit, case
from node.commands.cluster import cluster, demo
from node.commands.details import details
from node.commands.disclosure import disclose, disclosure
from node.commands.dkg import dkg
from node.commands.ledger import verify_ledger_command
from node.commands.operator import peers, status, submit
from node.commands.options import CONTEXT
from node.commands.proof import proof, verify_proof
from node.commands.psi import psi, psi_answer_set, psi_runs
from node.commands.run import start
from node.commands.setup import genesis, init, testnet
from node.commands.simulate import simulate
from node.commands.tracing import graph, history, trace
from node.commands.users import user


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="crosstrace")
def main() -> None:
    """crosstrace: a permissioned PBFT ledger for cross-institution crime tracing."""


for command in (
    simulate,
    verify_ledger_command,
    init,
    genesis,
    testnet,
    start,
    status,
    peers,
    submit,
    details,
    cluster,
    demo,
    bench,
    proof,
    verify_proof,
    case,
    trace,
    graph,
    history,
    audit,
    psi,
    psi_answer_set,
    psi_runs,
    disclose,
    disclosure,
    user,
    dkg,
):
    main.add_command(command)

if __name__ == "__main__":
    main()
