"""``GET /txs/{id}/proof``, ``crosstrace proof`` and ``crosstrace verify-proof``: against
an in-process cluster (through httpx's ASGI transport and a real Hypercorn server), and
on proof files written from a certified ledger."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio
from api_helpers import OCTETS, api_on_cluster, assert_error
from click.testing import CliRunner, Result
from cluster_helpers import report_tx
from proof_helpers import proof_genesis, write_ledger

from cli import main
from node.api.server import serve_api
from node.host.assemble import open_store
from node.ledger.proofs import build_proof, encode_proof, proof_file_name, verify_proof_file
from node.ledger.transactions import tx_id
from node.setup.genesis import save_genesis
from node.testing.cluster import local_genesis

GENESIS, SIGNERS = proof_genesis()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def error_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, Path, bytes]]:
    """A proof file of the third transaction of block 3, and the genesis file."""
    blocks = write_ledger(tmp_path / "ledger", GENESIS, SIGNERS, [2, 1, 4])
    wanted = tx_id(blocks[2].txs[2])
    with open_store(tmp_path / "ledger", GENESIS) as store:
        proof = build_proof(store, wanted)
    assert proof is not None
    proof_file = tmp_path / proof_file_name(wanted)
    proof_file.write_bytes(encode_proof(proof))
    genesis_file = tmp_path / "genesis.json"
    save_genesis(genesis_file, GENESIS)
    yield proof_file, genesis_file, wanted


def test_verify_proof_prints_the_summary_and_exits_0(files: tuple[Path, Path, bytes]) -> None:
    proof_file, genesis_file, wanted = files
    result = run("verify-proof", str(proof_file), "--genesis", str(genesis_file))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0] == f"proof OK: transaction {wanted.hex()[:16]} is final in block 3 of chain local"
    )
    assert f"  tx id        {wanted.hex()}" in lines
    assert "height 3, index 2 of 4" in result.output
    assert "signed by police-0, bank-1, telecom-2 (3 of 4, quorum 3)" in result.output


def test_verify_proof_rejects_with_one_line_and_exit_1(
    files: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    proof_file, genesis_file, _ = files
    data = proof_file.read_bytes()
    damaged = tmp_path / "damaged.ctp"
    damaged.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    truncated = tmp_path / "truncated.ctp"
    truncated.write_bytes(data[:-1])
    not_proof = tmp_path / "genesis-copy.json"
    not_proof.write_bytes(genesis_file.read_bytes())
    other = tmp_path / "other-genesis.json"
    save_genesis(other, local_genesis(4, chain_id="other")[0])
    cases = [
        (damaged, genesis_file, f"{damaged}: proof rejected: damaged: the checksum does not"),
        (truncated, genesis_file, f"{truncated}: proof rejected: truncated: "),
        (not_proof, genesis_file, "proof rejected: not a crosstrace proof file (bad magic)"),
        (proof_file, other, "proof rejected: chain id 'local' is not the genesis's 'other'"),
        (tmp_path / "missing.ctp", genesis_file, "missing.ctp: cannot read: No such file"),
        (proof_file, tmp_path / "missing.json", "missing.json: cannot read"),
        (proof_file, proof_file, "invalid JSON"),
    ]
    for proof_path, genesis_path, expected in cases:
        result = run("verify-proof", str(proof_path), "--genesis", str(genesis_path))
        assert result.exit_code == 1, result.output
        assert expected in error_line(result), result.output
    huge = tmp_path / "huge.ctp"
    huge.write_bytes(data[:17] + bytes(100_000))
    result = run("verify-proof", str(huge), "--genesis", str(genesis_file))
    assert result.exit_code == 1
    assert "larger than any proof file" in error_line(result)
    assert run("verify-proof", str(proof_file)).exit_code == 2  # --genesis is required


def test_help_shows_examples() -> None:
    for command in ("proof", "verify-proof"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output
        assert "crosstrace verify-proof " in result.output


def test_proof_refuses_bad_arguments_with_one_line(tmp_path: Path) -> None:
    bad_id = run("proof", "xyz", "--url", "http://127.0.0.1:9")
    assert bad_id.exit_code == 2
    assert "64 hex digits" in bad_id.output
    not_hex = run("proof", "g" * 64, "--url", "http://127.0.0.1:9")
    assert not_hex.exit_code == 2
    assert "hex digits only" in not_hex.output
    neither = run("proof", "00" * 32)
    assert neither.exit_code == 2
    assert "give --home DIR or --url URL" in neither.output
    no_home = run("proof", "00" * 32, "--home", str(tmp_path))
    assert no_home.exit_code == 1
    assert "config.toml" in error_line(no_home)
    # Port 9 (discard) is closed on loopback: nobody answers.
    nobody = run("proof", "00" * 32, "--url", "http://127.0.0.1:9")
    assert nobody.exit_code == 1
    assert "no node answers at http://127.0.0.1:9" in error_line(nobody)


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.timeout(60)
async def test_the_api_serves_proofs_of_committed_transactions_only(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (cluster, _app, client):
            tx = report_tx(cluster, 0, 1, now_ms())
            response = await client.post("/txs?wait=true&timeout=10", content=tx, headers=OCTETS)
            assert response.status_code == 200, response.text
            wanted = response.json()["results"][0]["tx_id"]

            proof = await client.get(f"/txs/{wanted}/proof")
            assert proof.status_code == 200
            assert proof.headers["content-type"] == "application/octet-stream"
            name = proof_file_name(bytes.fromhex(wanted))
            assert proof.headers["content-disposition"] == f'attachment; filename="{name}"'
            summary = verify_proof_file(proof.content, cluster.genesis)
            assert summary.tx_id.hex() == wanted and summary.member == cluster.member_name(0)
            assert (await client.get(f"/txs/{wanted.upper()}/proof")).content == proof.content

            assert_error(await client.get(f"/txs/{'00' * 32}/proof"), 404, "not_found")
            assert_error(await client.get("/txs/abc/proof"), 400, "bad_hex")
            assert_error(await client.get(f"/txs/{'zz' * 32}/proof"), 400, "bad_hex")
            assert_error(
                await client.post(f"/txs/{wanted}/proof", json={}), 405, "method_not_allowed"
            )

            await cluster.stop_node(3)
            await cluster.stop_node(2)  # two of four: no quorum, nothing commits
            pending = report_tx(cluster, 0, 2, now_ms())
            answer = await client.post("/txs", content=pending, headers=OCTETS)
            assert answer.status_code == 202, answer.text
            pending_id = answer.json()["results"][0]["tx_id"]
            body = assert_error(await client.get(f"/txs/{pending_id}/proof"), 404, "pending")
            assert "not committed yet" in body["message"]


@pytest.mark.timeout(60)
async def test_proof_fetches_over_http_then_verify_proof_accepts_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(40):
        async with api_on_cluster(tmp_path) as (cluster, app, client):
            tx = report_tx(cluster, 1, 1, now_ms())
            response = await client.post("/txs?wait=true&timeout=10", content=tx, headers=OCTETS)
            assert response.status_code == 200, response.text
            wanted = response.json()["results"][0]["tx_id"]
            genesis_file = tmp_path / "genesis.json"
            save_genesis(genesis_file, cluster.genesis)
            out = tmp_path / "out" / "tx.ctp"
            out.parent.mkdir()
            shutdown = trio.Event()
            async with trio.open_nursery() as server:
                port = await server.start(
                    partial(serve_api, app, "127.0.0.1", 0, shutdown=shutdown)
                )
                url = f"http://127.0.0.1:{port}"
                # With --url, the command takes its token from CROSSTRACE_TOKEN.
                token = client.headers["authorization"].removeprefix("Bearer ")
                monkeypatch.setenv("CROSSTRACE_TOKEN", token)
                # The command is synchronous (httpx.Client): it runs in a thread while
                # this trio loop serves its requests.
                fetched = await trio.to_thread.run_sync(
                    run, "proof", wanted, "--url", url, "--out", str(out)
                )
                assert fetched.exit_code == 0, fetched.output
                assert fetched.output == (
                    f"proof of {wanted[:16]} (block 1, index 0) written to {out}\n"
                )
                again = await trio.to_thread.run_sync(
                    run, "proof", wanted, "--url", url, "--out", str(out)
                )
                assert again.exit_code == 1
                assert "already exists; give --force" in error_line(again)
                forced = await trio.to_thread.run_sync(
                    run, "proof", wanted, "--url", url, "--out", str(out), "--force"
                )
                assert forced.exit_code == 0, forced.output
                unknown = await trio.to_thread.run_sync(
                    run, "proof", "00" * 32, "--url", url, "--out", str(tmp_path / "x.ctp")
                )
                assert unknown.exit_code == 1
                assert "HTTP 404 not_found: no transaction with this id" in error_line(unknown)
                assert not (tmp_path / "x.ctp").exists()
                monkeypatch.chdir(out.parent)
                default = await trio.to_thread.run_sync(run, "proof", wanted, "--url", url)
                assert default.exit_code == 0, default.output
                name = proof_file_name(bytes.fromhex(wanted))
                assert default.output.endswith(f"written to {name}\n")
                assert (out.parent / name).read_bytes() == out.read_bytes()
                shutdown.set()
            verified = run("verify-proof", str(out), "--genesis", str(genesis_file))
            assert verified.exit_code == 0, verified.output
            assert f"report by {cluster.member_name(1)} (#1)" in verified.output
