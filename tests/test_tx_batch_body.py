"""The binary batch body of ``POST /txs``: the parser is total (any bytes parse or are
refused), and the API answers a malformed body with 400, never a 5xx."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
from api_helpers import OCTETS, api_on_cluster, assert_error, forged, now_ms
from cluster_helpers import report_tx
from hypothesis import given, settings
from hypothesis import strategies as st

from node.client.submit_body import binary_submission
from node.ledger.transactions import MAX_TX_BYTES
from node.ledger.tx_batch import (
    MAGIC,
    MAX_BATCH,
    BatchBodyError,
    encode_batch_body,
    is_batch_body,
    parse_batch_body,
)

transactions = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20)


@given(transactions)
def test_a_batch_parses_back_to_its_transactions(txs: list[bytes]) -> None:
    body, content_type = binary_submission(txs)
    assert content_type == "application/octet-stream"
    assert is_batch_body(body)
    assert parse_batch_body(body) == txs


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: MAGIC + b)))
def test_any_bytes_parse_or_are_refused_as_malformed(body: bytes) -> None:
    try:
        txs = parse_batch_body(body)
    except BatchBodyError:
        return
    assert 1 <= len(txs) <= MAX_BATCH
    assert all(1 <= len(tx) <= MAX_TX_BYTES for tx in txs)
    # What parses is exactly what encodes to the same bytes: one reading per body.
    assert encode_batch_body(txs) == body


@given(transactions, st.data())
def test_a_cut_or_padded_batch_is_refused_or_is_a_shorter_batch(
    txs: list[bytes], data: st.DataObject
) -> None:
    body = encode_batch_body(txs)
    cut = data.draw(st.integers(min_value=len(MAGIC), max_value=len(body) - 1))
    pad = data.draw(st.sampled_from([b"", b"\x00", b"\x00\x00\x00"]))
    try:
        parsed = parse_batch_body(body[:cut] + pad)
    except BatchBodyError:
        return
    # Whatever parses reads back as exactly those bytes; cut without padding, only
    # exactly between two transactions, giving the ones before the cut.
    assert encode_batch_body(parsed) == body[:cut] + pad
    if not pad:
        assert parsed == txs[: len(parsed)] and len(parsed) < len(txs)


def test_limits_are_kept_on_both_sides() -> None:
    with pytest.raises(ValueError):
        encode_batch_body([])
    with pytest.raises(ValueError):
        encode_batch_body([b""])
    with pytest.raises(ValueError):
        encode_batch_body([b"x" * (MAX_TX_BYTES + 1)])
    with pytest.raises(ValueError):
        encode_batch_body([b"x"] * (MAX_BATCH + 1))
    too_many = MAGIC + (b"\x00\x00\x00\x01x" * (MAX_BATCH + 1))
    with pytest.raises(BatchBodyError, match="at most"):
        parse_batch_body(too_many)
    huge_length = MAGIC + (MAX_TX_BYTES + 1).to_bytes(4, "big") + b"x"
    with pytest.raises(BatchBodyError):
        parse_batch_body(huge_length)
    # A single encoded transaction (a msgpack array) is never taken for a batch.
    assert not is_batch_body(b"\x98" + MAGIC)


@pytest.mark.timeout(90)
async def test_the_api_takes_a_binary_batch_and_refuses_malformed_ones_with_400(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            now = now_ms()
            txs = [report_tx(cluster, 0, i, now) for i in range(3)]
            body, content_type = binary_submission(txs)
            answer = await client.post(
                "/txs",
                content=body,
                headers={"content-type": content_type},
                params={"wait": "true", "timeout": "20"},
            )
            assert answer.status_code == 200, answer.text
            rows = answer.json()["results"]
            assert [row["accepted"] for row in rows] == [True, True, True]
            assert all(row["committed"] for row in rows)

            # A forged member of a batch is refused alone, with its code.
            good, bad = report_tx(cluster, 0, 10, now), forged(report_tx(cluster, 0, 11, now))
            body, _ = binary_submission([good, bad])
            answer = await client.post("/txs", content=body, headers=OCTETS)
            assert answer.status_code == 202, answer.text
            rows = answer.json()["results"]
            assert rows[0]["accepted"] and not rows[1]["accepted"]
            assert rows[1]["code"] == "bad_signature"

            # Malformed bodies: every one a 400 with the same code, never a 5xx.
            rng = random.Random(16)
            valid = encode_batch_body(txs)
            bodies = [MAGIC, MAGIC + b"\x00", MAGIC + b"\x00\x00\x00\x00"]
            for _ in range(40):
                cut = rng.randrange(len(MAGIC) + 1, len(valid))
                bodies.append(valid[:cut])
                noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
                bodies.append(MAGIC + noise)
            for malformed in bodies:
                try:
                    parse_batch_body(malformed)
                except BatchBodyError:
                    pass
                else:
                    continue  # random noise that happens to be a batch: not this test's
                response = await client.post("/txs", content=malformed, headers=OCTETS)
                assert_error(response, 400, "bad_batch")
