"""The body a bulk submitter sends to ``POST /txs``: binary, not hex in JSON.

A batch of 100 signed transactions is about 40 KB as the binary batch format
(``node.ledger.tx_batch``) and twice that as hex in JSON, which the node must also parse
character by character. Whoever posts transactions in bulk (the benchmark driver, a
bank's uploader) sends ``body`` with the content type this returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.ledger.tx_batch import encode_batch_body

OCTETS = "application/octet-stream"


def binary_submission(txs: Sequence[bytes]) -> tuple[bytes, str]:
    """``(body, content_type)`` for ``POST /txs`` holding ``txs`` (1 to 1,000 encoded
    transactions); the answer is the same JSON as for a JSON batch."""
    return encode_batch_body(txs), OCTETS
