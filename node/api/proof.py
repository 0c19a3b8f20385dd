"""``GET /txs/{tx_id}/proof``: the inclusion proof file of a committed transaction
(``node.ledger.proofs``), for ``crosstrace proof`` and anyone who wants to check finality
offline with the genesis file alone."""

from __future__ import annotations

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from node.api.input import ApiError, digest
from node.host.runtime import NodeRuntime
from node.ledger.proofs import build_proof, encode_proof, proof_file_name
from node.ledger.store import LedgerStore

MEDIA_TYPE = "application/octet-stream"


def proof_route(runtime: NodeRuntime, store: LedgerStore) -> Route:
    def proof_bytes(wanted: bytes) -> bytes | None:
        proof = build_proof(store, wanted)
        return None if proof is None else encode_proof(proof)

    async def get_proof(request: Request) -> Response:
        wanted = digest(request.path_params["tx_id"], "tx_id")
        # Decoding the block and hashing its transactions is worth a thread for a full
        # block of large transactions: consensus keeps moving meanwhile.
        data = await trio.to_thread.run_sync(proof_bytes, wanted)
        if data is not None:
            disposition = f'attachment; filename="{proof_file_name(wanted)}"'
            return Response(
                data, media_type=MEDIA_TYPE, headers={"content-disposition": disposition}
            )
        if runtime.mempool.get(wanted) is not None:
            raise ApiError(
                404, "pending", "the transaction is not committed yet; its proof exists once it is"
            )
        raise ApiError(404, "not_found", "no transaction with this id is known")

    return Route("/txs/{tx_id}/proof", get_proof, methods=["GET"])
