"""The binary body of ``POST /txs``: many encoded transactions without hex or JSON.

Hex in JSON doubles every byte and costs a parse per character; a bulk uploader sends
this instead, as ``application/octet-stream``::

    MAGIC  (4 bytes, b"CTX1")
    then per transaction: its length (4 bytes, big-endian) and its encoding

A body that does not start with ``MAGIC`` is one encoded transaction, as before. The
two cannot be confused: a transaction is the canonical msgpack array of its 8 fields,
so its first byte is 0x98, never the ``C`` that starts ``MAGIC``.

The parser is strict and total: any bytes either give a list of 1 to ``MAX_BATCH``
non-empty transactions of at most ``MAX_TX_BYTES`` each, or ``BatchBodyError`` with a
message that quotes none of the content.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.ledger.transactions import MAX_TX_BYTES

MAGIC = b"CTX1"
# As many as a JSON batch may hold (node.api.models.MAX_BATCH, which this layer may not
# import): one request, one trip to the worker thread.
MAX_BATCH = 1000
_LENGTH_BYTES = 4


class BatchBodyError(ValueError):
    """Bytes that are not a well-formed batch body."""


def is_batch_body(body: bytes) -> bool:
    return body[: len(MAGIC)] == MAGIC


def encode_batch_body(txs: Sequence[bytes]) -> bytes:
    """The body for ``txs``; ``ValueError`` if the API would refuse it."""
    if not 1 <= len(txs) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} transactions, not {len(txs)}")
    parts = [MAGIC]
    for tx in txs:
        if not 1 <= len(tx) <= MAX_TX_BYTES:
            raise ValueError(f"a transaction is 1 to {MAX_TX_BYTES} bytes, not {len(tx)}")
        parts.append(len(tx).to_bytes(_LENGTH_BYTES, "big"))
        parts.append(bytes(tx))
    return b"".join(parts)


def parse_batch_body(body: bytes) -> list[bytes]:
    """The transactions of a batch body; ``BatchBodyError`` for anything else."""
    if not is_batch_body(body):
        raise BatchBodyError("the body does not start with the batch marker")
    view = memoryview(body)
    offset = len(MAGIC)
    txs: list[bytes] = []
    while offset < len(body):
        if len(txs) == MAX_BATCH:
            raise BatchBodyError(f"a batch holds at most {MAX_BATCH} transactions")
        if offset + _LENGTH_BYTES > len(body):
            raise BatchBodyError(f"transaction {len(txs)}: the length is cut short")
        size = int.from_bytes(view[offset : offset + _LENGTH_BYTES], "big")
        offset += _LENGTH_BYTES
        if not 1 <= size <= MAX_TX_BYTES:
            raise BatchBodyError(
                f"transaction {len(txs)}: a length of {size}, not 1 to {MAX_TX_BYTES}"
            )
        if offset + size > len(body):
            raise BatchBodyError(f"transaction {len(txs)}: the body ends inside it")
        txs.append(bytes(view[offset : offset + size]))
        offset += size
    if not txs:
        raise BatchBodyError("the batch holds no transaction")
    return txs
