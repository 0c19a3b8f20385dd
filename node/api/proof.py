"""``GET /txs/{tx_id}/proof``: the inclusion proof file of a committed transaction
(``node.ledger.proofs``), for ``crosstrace proof`` and anyone who wants to check finality
offline with the genesis file alone."""

from __future__ import annotations

from typing import Annotated

import trio
from fastapi import FastAPI, Path
from starlette.responses import Response

from node.api.fields import DigestHex
from node.api.input import OCTETS, raw_content
from node.api.models import BAD_INPUT, refusal
from node.host.runtime import NodeRuntime
from node.ledger.proofs import build_proof, encode_proof, proof_file_name
from node.ledger.store import LedgerStore
from node.refusals import NotFound

MEDIA_TYPE = OCTETS


def proof_route(app: FastAPI, runtime: NodeRuntime, store: LedgerStore) -> None:
    def proof_bytes(wanted: bytes) -> bytes | None:
        proof = build_proof(store, wanted)
        return None if proof is None else encode_proof(proof)

    async def get_proof(tx_id: Annotated[DigestHex, Path()]) -> Response:
        # Decoding the block and hashing its transactions is worth a thread for a full
        # block of large transactions: consensus keeps moving meanwhile.
        data = await trio.to_thread.run_sync(proof_bytes, tx_id)
        if data is not None:
            disposition = f'attachment; filename="{proof_file_name(tx_id)}"'
            return Response(
                data, media_type=MEDIA_TYPE, headers={"content-disposition": disposition}
            )
        if runtime.mempool.get(tx_id) is not None:
            raise NotFound(
                "pending", "the transaction is not committed yet; its proof exists once it is"
            )
        raise NotFound("not_found", "no transaction with this id is known")

    app.add_api_route(
        "/txs/{tx_id}/proof",
        get_proof,
        methods=["GET"],
        # Not JSON: the document shows the file's media type, and the refusals' JSON.
        response_class=Response,
        summary=(
            "The inclusion proof of a committed transaction: a binary file (the transaction, "
            "its Merkle path, the block header and the commit certificate) that "
            "`crosstrace verify-proof FILE --genesis G` checks offline."
        ),
        responses={
            200: {
                "description": "The proof file (format: `node.ledger.proofs`).",
                "content": raw_content(OCTETS),
            },
            400: BAD_INPUT,
            404: refusal("No such transaction (`not_found`), or not committed yet (`pending`)."),
        },
    )
