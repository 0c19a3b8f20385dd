"""The pseudonym key ceremony (``node.setup.ceremony``) and the share file
(``node.setup.shares``): in process, through the command line, and with cheating or
absent members."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from node.identifiers import dkg
from node.identifiers.group import ORDER, base_mul, random_scalar, scalar_from_int, scalar_to_int
from node.setup.ceremony import (
    CeremonyError,
    DealBundle,
    _opened_share,
    answer,
    collect,
    complain,
    final_share,
    finish,
    make_deal,
    run_in_process,
)
from node.setup.ceremony_files import (
    Complaints,
    Deal,
    deal_to_dict,
    load_deal,
    save_ceremony_file,
    signed_message,
    to_dict,
)
from node.setup.genesis import (
    Genesis,
    GenesisDraft,
    Member,
    assemble_draft,
    load_genesis,
)
from node.setup.keys import NodeKey, generate_key
from node.setup.shares import (
    PseudonymShare,
    PseudonymShareError,
    check_share,
    load_share,
    save_share,
)

TIME = "2026-01-01T00:00:00Z"
# Fast argon2id limits for the share file's passphrase tests.
FAST_KDF = {"opslimit": 1, "memlimit": 8192}


def consortium(
    n: int, threshold: int | None = None, chain_id: str = "dkg-test"
) -> tuple[GenesisDraft, list[NodeKey]]:
    keys = [generate_key() for _ in range(n)]
    members = [
        Member(f"member-{i}", "bank", ("reporter",), k.public_key, f"10.0.0.{i + 1}:7000")
        for i, k in enumerate(keys)
    ]
    draft = assemble_draft(chain_id, members, 2, genesis_time=TIME, threshold=threshold)
    return draft, keys


def lagrange_at_zero(shares: Sequence[PseudonymShare]) -> bytes:
    """The whole key from t shares: only a test may ever compute it."""
    total = 0
    for s in shares:
        weight = 1
        for other in shares:
            if other.index != s.index:
                weight = weight * other.index * pow(other.index - s.index, -1, ORDER) % ORDER
        total = (total + weight * scalar_to_int(s.secret)) % ORDER
    return scalar_from_int(total)


def assert_consistent(genesis: Genesis, shares: Sequence[PseudonymShare]) -> None:
    p = genesis.pseudonyms
    for s in shares:
        assert base_mul(s.secret) == p.public_shares[s.index - 1]
        check_share(s, genesis)
    # Any t of the shares make the key whose public key is in the genesis.
    t = p.threshold
    assert base_mul(lagrange_at_zero(shares[:t])) == p.public_key
    assert base_mul(lagrange_at_zero(shares[-t:])) == p.public_key


def ceremony_texts(*items: Deal | DealBundle | Complaints) -> str:
    return "\n".join(json.dumps(to_dict(i)) for i in items)


# ---- in process ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [4, 5, 6, 7])
def test_in_process_ceremony_gives_consistent_shares(n: int) -> None:
    draft, keys = consortium(n)
    genesis, shares = run_in_process(draft, keys)
    assert genesis.draft() == draft
    assert [s.index for s in shares] == list(range(1, n + 1))
    assert genesis.pseudonyms.dealers == tuple(m.name for m in draft.members)
    assert genesis.pseudonyms.threshold == max(2, (n - 1) // 3 + 1)
    assert_consistent(genesis, shares)
    # Fewer than t shares do not make the key.
    if genesis.pseudonyms.threshold > 2:
        short = lagrange_at_zero(shares[: genesis.pseudonyms.threshold - 1])
        assert base_mul(short) != genesis.pseudonyms.public_key


def test_no_ceremony_file_holds_a_share_in_the_clear() -> None:
    draft, keys = consortium(4)
    deals = [(f"deal {i}", make_deal(draft, k)) for i, k in enumerate(keys)]
    bundle = collect(draft, deals)
    complaints = [complain(draft, bundle, k) for k in keys]
    assert all(c.against == () for c in complaints)
    genesis = finish(draft, bundle, [(f"c{i}", c) for i, c in enumerate(complaints)])
    shares = [final_share(genesis, bundle, [], k) for k in keys]
    assert_consistent(genesis, shares)
    public = ceremony_texts(*(d for _, d in deals), bundle, *complaints)
    public += json.dumps(genesis.pseudonyms.public_shares[0].hex())
    # Neither the final shares nor any dealer's share to anyone appears anywhere public.
    for s in shares:
        assert s.secret.hex() not in public
    for j, k in enumerate(keys, start=1):
        for d in bundle.deals:
            opened = _opened_share(draft, k, j, d)
            assert opened is not None and opened.hex() not in public


def test_finish_is_deterministic_so_anyone_can_check_the_assembler() -> None:
    draft, keys = consortium(4)
    bundle = collect(draft, [(str(i), make_deal(draft, k)) for i, k in enumerate(keys)])
    complaints = [(str(i), complain(draft, bundle, k)) for i, k in enumerate(keys)]
    assert finish(draft, bundle, complaints) == finish(draft, bundle, complaints[::-1])
    assert finish(draft, bundle, complaints).hash() != finish(draft, bundle, []).hash()


# ---- complaints and answers ------------------------------------------------------------


def cheating_deal(draft: GenesisDraft, key: NodeKey, victim: int) -> tuple[Deal, dkg.Dealing]:
    """A deal whose share to member ``victim`` (1-based) is wrong; the true dealing too."""
    n, t = len(draft.members), draft.pseudonyms.threshold
    honest = dkg.deal(t, n)
    shares = list(honest.shares)
    shares[victim - 1] = random_scalar()
    return make_deal(draft, key, dkg.Dealing(honest.commitments, tuple(shares))), honest


def run_with(
    draft: GenesisDraft,
    keys: Sequence[NodeKey],
    deals: dict[int, Deal],
) -> tuple[DealBundle, list[tuple[str, Complaints]]]:
    """Every member deals (``deals`` replaces some members' deals) and checks."""
    made = [(f"deal {i}", deals.get(i) or make_deal(draft, k)) for i, k in enumerate(keys)]
    bundle = collect(draft, made)
    return bundle, [(f"complaints {i}", complain(draft, bundle, k)) for i, k in enumerate(keys)]


def test_a_bad_share_answered_with_a_valid_one_is_resolved() -> None:
    draft, keys = consortium(5)
    bad, honest = cheating_deal(draft, keys[0], victim=3)
    bundle, complaints = run_with(draft, keys, {0: bad})
    against = {c.member: c.against for _, c in complaints}
    assert against["member-2"] == ("member-0",)
    assert all(v == () for name, v in against.items() if name != "member-2")
    # Nothing to answer for the others; the cheater reveals the true share.
    only = [c for _, c in complaints]
    assert answer(draft, bundle, only, keys[1]) is None
    reply = answer(draft, bundle, only, keys[0], shares={3: honest.shares[2]})
    assert reply is not None and [r.recipient for r in reply.revealed] == ["member-2"]
    answers = [("answer 0", reply)]
    genesis = finish(draft, bundle, complaints, answers)
    assert genesis.pseudonyms.dealers == tuple(m.name for m in draft.members)  # dealer stays
    # The victim needs the answer to make its share; without it, a clear refusal.
    with pytest.raises(CeremonyError, match="member-0's share for member-2 fails its check"):
        final_share(genesis, bundle, [], keys[2])
    shares = [final_share(genesis, bundle, answers, k) for k in keys]
    assert_consistent(genesis, shares)


def test_a_dealer_who_does_not_answer_is_disqualified_and_the_rest_finish() -> None:
    draft, keys = consortium(5)
    bad, _ = cheating_deal(draft, keys[1], victim=1)
    bundle, complaints = run_with(draft, keys, {1: bad})
    genesis = finish(draft, bundle, complaints, [])
    assert genesis.pseudonyms.dealers == ("member-0", "member-2", "member-3", "member-4")
    shares = [final_share(genesis, bundle, [], k) for k in keys]
    assert_consistent(genesis, shares)


def test_an_answer_that_fails_its_check_disqualifies_the_dealer() -> None:
    draft, keys = consortium(4)
    bad, _ = cheating_deal(draft, keys[3], victim=2)
    bundle, complaints = run_with(draft, keys, {3: bad})
    # Re-opened from its own ciphertext: the same bad share, revealed for all to check.
    reply = answer(draft, bundle, [c for _, c in complaints], keys[3])
    assert reply is not None
    genesis = finish(draft, bundle, complaints, [("answer 3", reply)])
    assert "member-3" not in genesis.pseudonyms.dealers
    assert_consistent(genesis, [final_share(genesis, bundle, [], k) for k in keys])


def signed_complaints(
    draft: GenesisDraft, bundle: DealBundle, key: NodeKey, name: str, against: tuple[str, ...]
) -> Complaints:
    unsigned = Complaints(draft.hash(), bundle.hash(), name, against)
    signature = key.signer().sign(signed_message(draft.chain_id, unsigned))
    return dataclasses.replace(unsigned, signature=signature)


def test_a_false_complaint_against_an_honest_dealer_is_resolved_by_the_answer() -> None:
    draft, keys = consortium(4)
    bundle, complaints = run_with(draft, keys, {})
    false = signed_complaints(draft, bundle, keys[2], "member-2", ("member-1",))
    complaints[2] = ("false complaints", false)
    reply = answer(draft, bundle, [c for _, c in complaints], keys[1])
    assert reply is not None
    genesis = finish(draft, bundle, complaints, [("answer 1", reply)])
    assert genesis.pseudonyms.dealers == tuple(m.name for m in draft.members)
    assert_consistent(genesis, [final_share(genesis, bundle, [], k) for k in keys])


def test_too_few_qualified_dealers_is_refused() -> None:
    draft, keys = consortium(4, threshold=3)
    bad0, _ = cheating_deal(draft, keys[0], victim=2)
    bad1, _ = cheating_deal(draft, keys[1], victim=3)
    bundle, complaints = run_with(draft, keys, {0: bad0, 1: bad1})
    with pytest.raises(CeremonyError) as info:
        finish(draft, bundle, complaints, [])
    message = str(info.value)
    assert "only 2 qualified dealers, fewer than the threshold (3)" in message
    assert "member-0, member-1" in message and "start again from the draft" in message


def test_complaints_and_answers_are_checked() -> None:
    draft, keys = consortium(4)
    bundle, complaints = run_with(draft, keys, {})
    forged = signed_complaints(draft, bundle, keys[0], "member-2", ())
    with pytest.raises(CeremonyError, match="forged: complaints by member-2: the signature"):
        finish(draft, bundle, [("forged", forged)])
    other_bundle, _ = run_with(draft, keys, {})
    stale = signed_complaints(draft, other_bundle, keys[2], "member-2", ())
    with pytest.raises(CeremonyError, match="made about another bundle of deals"):
        finish(draft, bundle, [("stale", stale)])
    nobody = signed_complaints(draft, bundle, keys[2], "member-2", ("member-9",))
    with pytest.raises(CeremonyError, match=r"against\[0\]: 'member-9' made no deal"):
        finish(draft, bundle, [("c", nobody)])
    with pytest.raises(CeremonyError, match="a second complaints file by member-0"):
        finish(draft, bundle, [complaints[0], ("again", complaints[0][1])])


# ---- deals the assembler refuses -------------------------------------------------------


def test_forged_foreign_duplicate_and_truncated_deals_are_refused() -> None:
    draft, keys = consortium(4)
    good = make_deal(draft, keys[0])
    forged = dataclasses.replace(good, dealer="member-1")
    with pytest.raises(CeremonyError) as info:
        collect(draft, [("deal-1.json", forged)])
    assert str(info.value) == (
        "deal-1.json: deal by member-1: the signature is not member-1's (not made with its "
        "node key over this file's contents)"
    )
    elsewhere = dataclasses.replace(draft, chain_id="elsewhere")
    replayed = make_deal(elsewhere, keys[0])
    with pytest.raises(CeremonyError, match="deal by member-0: made for another draft"):
        collect(draft, [("replayed.json", replayed)])
    with pytest.raises(
        CeremonyError, match=r"b.json: a second deal by member-0 \(the first is in a.json\)"
    ):
        collect(draft, [("a.json", good), ("b.json", make_deal(draft, keys[0]))])
    short = dataclasses.replace(good, ciphertexts=good.ciphertexts[:3])
    with pytest.raises(CeremonyError, match=r"3 ciphertexts, expected one per member \(4\)"):
        collect(draft, [("short.json", short)])
    cut = dataclasses.replace(good, ciphertexts=(good.ciphertexts[0][:-1], *good.ciphertexts[1:]))
    with pytest.raises(CeremonyError, match="the ciphertext for member-0 is 107 bytes"):
        collect(draft, [("cut.json", cut)])
    few = dataclasses.replace(good, commitments=good.commitments[:1])
    with pytest.raises(CeremonyError, match="1 commitments for a threshold of 2"):
        collect(draft, [("few.json", few)])
    with pytest.raises(CeremonyError, match="1 deals, but the key needs at least the threshold"):
        collect(draft, [("a.json", good)])


def test_a_truncated_or_altered_deal_file_is_refused(tmp_path: Path) -> None:
    draft, keys = consortium(4)
    path = tmp_path / "deal.json"
    save_ceremony_file(path, make_deal(draft, keys[0]))
    with pytest.raises(CeremonyError, match="refusing to overwrite"):
        save_ceremony_file(path, make_deal(draft, keys[0]))
    text = path.read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(CeremonyError, match=f"{truncated}: invalid JSON"):
        load_deal(truncated)
    doc = json.loads(text)
    doc["commitments"][0] = doc["commitments"][1]
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(doc))
    with pytest.raises(CeremonyError, match="the signature is not member-0's"):
        collect(draft, [(str(altered), load_deal(altered))])
    doc = json.loads(text)
    del doc["signature"]
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps(doc))
    with pytest.raises(CeremonyError, match="missing field signature"):
        load_deal(missing)
    assert deal_to_dict(load_deal(path)) == json.loads(text)


def test_a_member_refuses_a_bundle_the_assembler_tampered_with() -> None:
    draft, keys = consortium(4)
    deals = [make_deal(draft, k) for k in keys]
    bundle = collect(draft, [(str(i), d) for i, d in enumerate(deals)])
    reordered = DealBundle(bundle.draft_hash, bundle.deals[::-1])
    with pytest.raises(CeremonyError, match="not in genesis order"):
        complain(draft, reordered, keys[0])
    swapped = DealBundle(
        bundle.draft_hash, (dataclasses.replace(deals[0], signature=deals[1].signature),)
    )
    with pytest.raises(CeremonyError, match="the signature is not member-0's"):
        complain(draft, swapped, keys[0])


def test_a_share_of_another_ceremony_does_not_match_the_genesis() -> None:
    draft, keys = consortium(4)
    genesis, _ = run_in_process(draft, keys)
    bundle, _ = run_with(draft, keys, {})
    with pytest.raises(CeremonyError, match="does not match its public share in the genesis"):
        final_share(genesis, bundle, [], keys[0])
    _, other_shares = run_in_process(draft, keys)
    with pytest.raises(PseudonymShareError, match="made for another genesis"):
        check_share(other_shares[0], genesis)
    forged = PseudonymShare(1, other_shares[0].secret, genesis.hash())
    with pytest.raises(PseudonymShareError, match="does not match member 1's public share"):
        check_share(forged, genesis)


# ---- the share file --------------------------------------------------------------------


def a_share() -> PseudonymShare:
    return PseudonymShare(2, random_scalar(), bytes(range(32)))


def test_share_file_round_trip_is_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    share = a_share()
    assert share.secret.hex() not in repr(share)
    path = tmp_path / "pseudonym.share"
    save_share(path, share, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_share(path, None) == share
    with pytest.raises(PseudonymShareError, match="already exists; refusing to overwrite"):
        save_share(path, a_share(), None)
    assert load_share(path, None) == share


def test_share_file_with_a_passphrase(tmp_path: Path) -> None:
    share = a_share()
    path = tmp_path / "pseudonym.share"
    save_share(path, share, "correct horse", **FAST_KDF)
    assert share.secret.hex() not in path.read_text()
    assert load_share(path, "correct horse") == share
    with pytest.raises(PseudonymShareError, match="is encrypted; a passphrase is required"):
        load_share(path, None)
    with pytest.raises(PseudonymShareError, match="wrong passphrase or corrupted"):
        load_share(path, "wrong horse")


def test_share_file_refusals(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.share"
    save_share(path, a_share(), None)
    os.chmod(path, 0o644)
    with pytest.raises(PseudonymShareError, match="has permissions 0644; it must be readable"):
        load_share(path, None)
    os.chmod(path, 0o600)
    link = tmp_path / "link.share"
    link.symlink_to(path)
    with pytest.raises(PseudonymShareError, match="is a symbolic link"):
        load_share(link, None)
    dangling = tmp_path / "dangling.share"
    dangling.symlink_to(tmp_path / "elsewhere")
    for target in (link, dangling):  # never written through a link
        with pytest.raises(PseudonymShareError, match="already exists; refusing to overwrite"):
            save_share(target, a_share(), None)
    assert not (tmp_path / "elsewhere").exists()
    big = tmp_path / "big.share"
    big.write_bytes(b" " * 20_000)
    big.chmod(0o600)
    with pytest.raises(PseudonymShareError, match="too large"):
        load_share(big, None)
    with pytest.raises(PseudonymShareError, match="does not exist"):
        load_share(tmp_path / "absent", None)
    os.mkdir(tmp_path / "dir", 0o700)
    with pytest.raises(PseudonymShareError, match="not a regular file"):
        load_share(tmp_path / "dir", None)
    doc = json.loads(path.read_text())
    for number, (change, message) in enumerate(
        [
            ({"version": 2}, "unsupported version 2"),
            ({"type": "ed25519"}, "is not a pseudonym-share file"),
            ({"secret": "00" * 32}, "expected a reduced non-zero 32-byte scalar"),
            ({"secret": "ff" * 32}, "expected a reduced non-zero 32-byte scalar"),
            ({"index": 0}, "expected a member index from 1"),
            ({"extra": 1}, "unknown field 'extra'"),
        ]
    ):
        bad = tmp_path / f"bad-{number}.share"
        fd = os.open(bad, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc | change, f)
        with pytest.raises(PseudonymShareError, match=message):
            load_share(bad, None)


# ---- the command line ------------------------------------------------------------------


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def fail(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_the_ceremony_through_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    secret = tmp_path / "passphrase"
    secret.write_text("member three's passphrase\n")
    homes = []
    for i in range(4):
        home = tmp_path / f"m{i}"
        extra = ["--passphrase-file", str(secret)] if i == 3 else []
        run("init", str(home), "--name", f"bank-{i}", "--institution", "bank",
            "--address", f"10.0.0.{i + 1}:26656", *extra)  # fmt: skip
        homes.append(home)
    out = run("genesis", *(str(h / "member.json") for h in homes), "--chain-id", "cli-dkg",
              "--approvals", "2")  # fmt: skip
    assert "genesis-draft.json" in out and "crosstrace dkg deal" in out
    fail_out = fail("dkg", "check", "--home", str(homes[0]), "--deals", "deals.json")
    assert "run crosstrace dkg deal" in fail_out

    for i, home in enumerate(homes):
        extra = ["--passphrase-file", str(secret)] if i == 3 else []
        out = run("dkg", "deal", "--home", str(home), "--draft", "genesis-draft.json", *extra)
        assert f"deal-bank-{i}.json" in out and "crosstrace dkg collect" in out
    assert "key file" in fail("dkg", "deal", "--home", str(homes[3]), "--draft",
                              "genesis-draft.json", "--out", "again.json")  # fmt: skip
    out = run("dkg", "collect", "--draft", "genesis-draft.json",
              *(f"deal-bank-{i}.json" for i in range(4)))  # fmt: skip
    assert "4 deals checked" in out and "crosstrace dkg check" in out
    for i, home in enumerate(homes):
        extra = ["--passphrase-file", str(secret)] if i == 3 else []
        out = run("dkg", "check", "--home", str(home), "--deals", "deals.json", *extra)
        assert "no complaints" in out
    complaint_files = [f"complaints-bank-{i}.json" for i in range(4)]
    out = run("dkg", "answer", "--home", str(homes[0]), "--deals", "deals.json", *complaint_files)
    assert "nothing to answer" in out
    out = run("dkg", "finish", "--draft", "genesis-draft.json", "--deals", "deals.json",
              "--complaints", *complaint_files)  # fmt: skip
    assert "genesis.json" in out and "crosstrace dkg share" in out
    genesis = load_genesis(tmp_path / "genesis.json")  # what crosstrace start reads
    assert genesis.hash().hex() in out

    for i, home in enumerate(homes):
        (home / "genesis.json").write_bytes((tmp_path / "genesis.json").read_bytes())
        extra = ["--passphrase-file", str(secret)] if i == 3 else []
        out = run("dkg", "share", "--home", str(home), "--deals", "deals.json", *extra)
        assert f"member {i + 1}" in out and "crosstrace start" in out
    passphrase = secret.read_text().strip()
    shares = [load_share(h / "pseudonym.share", passphrase if i == 3 else None)
              for i, h in enumerate(homes)]  # fmt: skip
    assert_consistent(genesis, shares)
    assert "refusing to overwrite" in fail("dkg", "share", "--home", str(homes[0]),
                                           "--deals", "deals.json")  # fmt: skip

    # Only each member's own share file holds a share in the clear.
    public = "".join(p.read_text() for p in tmp_path.glob("*.json"))
    public += "".join((h / name).read_text() for h in homes for name in
                      ("genesis-draft.json", "genesis.json", "config.toml"))  # fmt: skip
    for s in shares:
        assert s.secret.hex() not in public
    assert shares[3].secret.hex() not in (homes[3] / "pseudonym.share").read_text()

    # The daemon's loading accepts the home (the node key matches its genesis entry).
    from node.daemon import load_node_files

    files = load_node_files(homes[1] / "config.toml", None)
    assert files.genesis == genesis


def four_homes_and_a_draft() -> None:
    """Four member homes m0..m3 in the current folder and their draft genesis d.json."""
    for i in range(4):
        run("init", f"m{i}", "--name", f"bank-{i}", "--institution", "bank",
            "--address", f"10.0.0.{i + 1}:26656")  # fmt: skip
    run("genesis", *(f"m{i}/member.json" for i in range(4)), "--chain-id", "c", "--out", "d.json")


def test_command_line_refusals_are_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    four_homes_and_a_draft()
    run("dkg", "deal", "--home", "m0", "--draft", "d.json")
    out = fail("dkg", "collect", "--draft", "d.json", "deal-bank-0.json", "deal-bank-0.json")
    assert "a second deal by bank-0" in out
    out = fail("dkg", "collect", "--draft", "d.json", "deal-bank-0.json")
    assert "at least the threshold (2)" in out
    (tmp_path / "m0" / "genesis.json").write_text((tmp_path / "d.json").read_text())
    out = fail("start", "--home", "m0")
    assert "the key ceremony has not finished" in out and "crosstrace dkg deal" in out
    out = fail("dkg", "share", "--home", "m0", "--deals", "deal-bank-0.json")
    assert "the key ceremony has not finished" in out


def test_a_cheating_dealer_through_the_command_line_is_disqualified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from node.setup.genesis import load_draft
    from node.setup.keys import load_key

    monkeypatch.chdir(tmp_path)
    four_homes_and_a_draft()
    for i in range(4):
        run("dkg", "deal", "--home", f"m{i}", "--draft", "d.json", "--out", f"honest-{i}.json")
    # bank-1 sends a wrong share to bank-2 (member 3), signed like any deal.
    draft = load_draft("d.json")
    cheat, _ = cheating_deal(draft, load_key(tmp_path / "m1" / "node_key.json", None), victim=3)
    save_ceremony_file(tmp_path / "cheat-1.json", cheat)
    run("dkg", "collect", "--draft", "d.json", "honest-0.json", "cheat-1.json",
        "honest-2.json", "honest-3.json")  # fmt: skip
    outputs = [run("dkg", "check", "--home", f"m{i}", "--deals", "deals.json") for i in range(4)]
    assert "complaints by bank-2 against: bank-1" in outputs[2]
    assert all("no complaints" in out for i, out in enumerate(outputs) if i != 2)
    complaint_files = [f"complaints-bank-{i}.json" for i in range(4)]
    # The cheater can only reveal what it sent: the wrong share, for everyone to check.
    out = run("dkg", "answer", "--home", "m1", "--deals", "deals.json", *complaint_files)
    assert "shares for bank-2 revealed" in out
    out = run("dkg", "finish", "--draft", "d.json", "--deals", "deals.json",
              "--complaints", *complaint_files, "--answers", "answer-bank-1.json")  # fmt: skip
    assert "3 dealers" in out and "disqualified: bank-1" in out
    genesis = load_genesis(tmp_path / "genesis.json")
    assert genesis.pseudonyms.dealers == ("bank-0", "bank-2", "bank-3")
    for i in range(4):
        (tmp_path / f"m{i}" / "genesis.json").write_bytes((tmp_path / "genesis.json").read_bytes())
        run("dkg", "share", "--home", f"m{i}", "--deals", "deals.json")
    shares = [load_share(tmp_path / f"m{i}" / "pseudonym.share", None) for i in range(4)]
    assert_consistent(genesis, shares)
    out = fail("dkg", "share", "--home", "m0", "--deals", "honest-0.json")
    assert "expected a crosstrace-dkg-deals file" in out
