"""A PSI run's record on the ledger: each member signs its own ``psi`` transaction (case,
run id, both members, both set sizes, result size, outcome; never an element) with the
node key, submits it and waits for it to commit."""

from __future__ import annotations

import logging
import secrets

import trio

from node.host.runtime import NodeRuntime
from node.ledger.kinds import PsiRun
from node.ledger.store import LedgerStore
from node.ledger.transactions import encode_tx, make_tx
from node.psi.protocol import Role
from node.psi.run import Run

log = logging.getLogger("crosstrace.psi")


async def record_run(
    runtime: NodeRuntime,
    store: LedgerStore,
    chain_id: str,
    me: str,
    run: Run,
    outcome: str,
    result_size: int,
    *,
    now_ms: int,
    timeout_s: float,
) -> str | None:
    """None once this member's record of ``run`` is committed, else what went wrong
    (``run.record_tx`` and ``run.record_height`` say where it is)."""
    assert run.session.peer is not None and run.finished_ms is not None
    initiator, responder = me, run.peer_name
    sizes = (run.own_size, run.session.peer.count)
    if run.role is Role.RESPONDER:
        initiator, responder, sizes = responder, initiator, sizes[::-1]
    body = PsiRun(
        run.case_id,
        run.case_tx,
        run.run_id,
        initiator,
        responder,
        run.entity_type,
        sizes[0],
        sizes[1],
        result_size,
        outcome,
        run.finished_ms,
        run.actor,
    )
    # Any unused nonce will do; a random 63-bit one needs no state across restarts.
    nonce = secrets.randbelow(2**63 - 1) + 1
    tx = make_tx(runtime.signer, chain_id, me, PsiRun.kind, body, nonce, now_ms)
    [submitted] = await runtime.submit_batch([encode_tx(tx)])
    if not submitted.accepted:
        problem = f"the node refused the run's record: {submitted.code}: {submitted.message}"
        log.error("psi run %s: %s", run.id8, problem)
        return problem
    run.record_tx = submitted.tx_id
    with trio.move_on_after(timeout_s):
        await runtime.wait_committed(submitted.tx_id)
    location = store.tx_location(submitted.tx_id)
    run.mark("recorded")
    if location is None:
        problem = (
            f"the run's record was not committed within {timeout_s:g} s "
            "(is a quorum of members running?)"
        )
        log.error("psi run %s: %s", run.id8, problem)
        return problem
    run.record_height = location[0]
    return None
