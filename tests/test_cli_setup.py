"""``crosstrace init``, ``genesis`` and ``testnet``: creating members and consortia."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from cli import main
from node.identifiers.group import base_mul
from node.setup.config import load_config
from node.setup.genesis import load_descriptor, load_draft, load_genesis
from node.setup.keys import load_key
from node.setup.shares import load_share


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_init_then_genesis_builds_a_consortium(tmp_path: Path) -> None:
    homes = []
    for i, institution in enumerate(["police", "bank", "telecom", "utility"]):
        home = tmp_path / f"m{i}"
        roles = "reporter,investigator,approver,auditor" if i == 0 else "reporter,approver"
        code, out = run(
            "init", str(home), "--name", f"{institution}-x", "--institution", institution,
            "--roles", roles, "--address", f"10.0.0.{i + 1}:26656",
        )  # fmt: skip
        assert code == 0, out
        assert "public key:" in out
        homes.append(home)
        key_mode = stat.S_IMODE((home / "node_key.json").stat().st_mode)
        assert key_mode == 0o600
        config = load_config(home / "config.toml")
        assert config.node.name == f"{institution}-x"
        assert config.p2p.listen == "0.0.0.0:26656"
    out_file = tmp_path / "genesis-draft.json"
    code, out = run(
        "genesis", *(str(h / "member.json") for h in homes), "--chain-id", "sh-fraud-1",
        "--approvals", "3", "--threshold", "3", "--report-quota", "500", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, out
    draft = load_draft(out_file)
    assert [m.name for m in draft.members] == [
        "police-x", "bank-x", "telecom-x", "utility-x",
    ]  # fmt: skip
    assert draft.hash().hex() in out and "crosstrace dkg deal" in out
    assert (draft.pseudonyms.threshold, draft.pseudonyms.report_quota_per_day) == (3, 500)
    assert draft.pseudonyms.query_quota_per_case_per_day == 10_000
    key = load_key(homes[1] / "node_key.json", None)
    assert draft.members[1].public_key == key.public_key
    assert load_descriptor(homes[2] / "member.json") == draft.members[2]
    code, out = run(
        "genesis", *(str(h / "member.json") for h in homes), "--chain-id", "sh-fraud-1",
        "--out", str(out_file),
    )  # fmt: skip
    assert code == 1 and "refusing to overwrite" in out


def test_init_refuses_to_overwrite_a_member(tmp_path: Path) -> None:
    args = ["init", str(tmp_path), "--name", "bank-a", "--institution", "bank",
            "--address", "10.0.0.1:1"]  # fmt: skip
    assert run(*args)[0] == 0
    code, out = run(*args)
    assert code == 1 and "already holds a member" in out


def test_init_with_a_passphrase_encrypts_the_key(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("correct horse battery staple\n")
    code, out = run(
        "init", str(tmp_path / "h"), "--name", "bank-a", "--institution", "bank",
        "--address", "10.0.0.1:26656", "--passphrase-file", str(secret),
    )  # fmt: skip
    assert code == 0, out
    key = load_key(tmp_path / "h" / "node_key.json", "correct horse battery staple")
    assert len(key.public_key) == 32


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    code, out = run("init", str(tmp_path / "a"), "--name", "Bad Name!", "--institution", "bank",
                    "--address", "10.0.0.1:1")  # fmt: skip
    assert code == 1 and "name" in out and "Traceback" not in out
    code, out = run("init", str(tmp_path / "b"), "--name", "ok", "--institution", "bank",
                    "--address", "nowhere")  # fmt: skip
    assert code == 1 and "address" in out
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"name": 1}')
    code, out = run("genesis", str(bogus), "--chain-id", "c", "--out", str(tmp_path / "g.json"))
    assert code == 1 and "bogus.json" in out and "Traceback" not in out


def test_testnet_creates_every_home_with_one_shared_genesis(tmp_path: Path) -> None:
    code, out = run("testnet", "--nodes", "4", str(tmp_path / "net"))
    assert code == 0, out
    hashes = set()
    for i in range(4):
        home = tmp_path / "net" / f"node{i}"
        genesis = load_genesis(home / "genesis.json")
        hashes.add(genesis.hash())
        config = load_config(home / "config.toml")
        assert config.p2p.listen == f"127.0.0.1:{26600 + i}"
        assert config.api.listen == f"127.0.0.1:{8600 + i}"
        assert genesis.members[i].name == config.node.name
        key = load_key(home / "node_key.json", None)
        assert genesis.members[i].public_key == key.public_key
    assert len(hashes) == 1
    for i in range(4):
        home = tmp_path / "net" / f"node{i}"
        assert not (home / "pseudonym.key").exists()  # the shared key is gone
        share = load_share(home / "pseudonym.share", None)
        assert stat.S_IMODE((home / "pseudonym.share").stat().st_mode) == 0o600
        assert share.index == i + 1 and share.genesis_hash == genesis.hash()
        assert base_mul(share.secret) == genesis.pseudonyms.public_shares[i]
    assert genesis.pseudonyms.threshold == 2
    code, out = run("testnet", "--nodes", "4", str(tmp_path / "net"))
    assert code == 1 and "not empty" in out
    code, out = run("testnet", "--nodes", "3", str(tmp_path / "small"))
    assert code == 1 and "4 to 64 members" in out


def test_testnet_passes_the_threshold_and_quota_on(tmp_path: Path) -> None:
    code, out = run(
        "testnet", "--nodes", "5", "--threshold", "4", "--report-quota", "77",
        "--p2p-port", "27600", "--api-port", "9600", str(tmp_path / "net"),
    )  # fmt: skip
    assert code == 0, out
    genesis = load_genesis(tmp_path / "net" / "node0" / "genesis.json")
    assert (genesis.pseudonyms.threshold, genesis.pseudonyms.report_quota_per_day) == (4, 77)
    code, out = run("testnet", "--nodes", "4", "--threshold", "5", str(tmp_path / "bad"))
    assert code == 1 and "threshold" in out and "Traceback" not in out
