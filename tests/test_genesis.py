from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import json
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import decode_value, encode_value
from consensus.crypto import Signer, hash_bytes
from node.identifiers.group import base_mul, hash_to_scalar
from node.setup.genesis import (
    DEFAULT_QUERY_QUOTA,
    DEFAULT_REPORT_QUOTA,
    INSTITUTIONS,
    PSEUDONYM_SCHEME,
    ROLES,
    Genesis,
    GenesisConsensus,
    GenesisDraft,
    GenesisError,
    GenesisPseudonyms,
    Member,
    MemberDescriptor,
    assemble_draft,
    default_threshold,
    draft_to_dict,
    finished_genesis,
    genesis_to_dict,
    load_descriptor,
    load_draft,
    load_genesis,
    parse_genesis,
    save_descriptor,
    save_draft,
    save_genesis,
    split_host_port,
)

KEYS = [Signer(bytes([i + 1]) * 32).public_key for i in range(130)]
TIME = "2025-01-31T12:00:00Z"


def member(i: int, **changes: Any) -> Member:
    fields: dict[str, Any] = {
        "name": f"member-{i}",
        "institution": INSTITUTIONS[i % len(INSTITUTIONS)],
        "roles": ("reporter", "approver"),
        "public_key": KEYS[i],
        "address": f"node{i}.example.org:7000",
    }
    fields.update(changes)
    return Member(**fields)


@functools.cache
def _point(i: int) -> bytes:
    return base_mul(hash_to_scalar(b"test-genesis", i.to_bytes(2, "big")))


def fake_pseudonyms(names: Sequence[str], threshold: int | None = None) -> GenesisPseudonyms:
    """A well-formed section no ceremony made: valid points, but nobody holds the shares.
    The genesis validation tests need only its form (tests/test_ceremony.py makes real ones)."""
    t = threshold if threshold is not None else default_threshold(len(names))
    return GenesisPseudonyms(
        threshold=t,
        public_key=_point(0),
        public_shares=tuple(_point(i + 1) for i in range(len(names))),
        dealers=tuple(names[:t]),
        transcript=bytes(range(32)),
    )


def assemble_genesis(
    chain_id: str,
    members: Sequence[Member],
    k: int,
    params: GenesisConsensus | None = None,
    *,
    genesis_time: str | None = None,
) -> Genesis:
    draft = assemble_draft(chain_id, members, k, params, genesis_time=genesis_time)
    return finished_genesis(draft, fake_pseudonyms([m.name for m in members]))


def genesis(n: int = 4, k: int = 3) -> Genesis:
    return assemble_genesis("crosstrace-test", [member(i) for i in range(n)], k, genesis_time=TIME)


def doc() -> dict[str, Any]:
    return genesis_to_dict(genesis())


def error_of(d: Any) -> str:
    with pytest.raises(GenesisError) as info:
        parse_genesis(d)
    return str(info.value)


# ---- good paths ------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    g = genesis()
    path = tmp_path / "genesis.json"
    save_genesis(path, g)
    assert load_genesis(path) == g
    assert load_genesis(path).hash() == g.hash()
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0o044 & ~0o022 & 0o077 or True
    text = path.read_text()
    assert KEYS[0].hex() in text  # keys are hex, readable
    assert text.count("\n") > 20  # indented, not one long line


def test_hash_is_over_canonical_encoding() -> None:
    g = genesis()
    assert g.hash() == hash_bytes("genesis", encode_value(g))
    assert len(g.hash()) == 32
    assert decode_value(Genesis, encode_value(g)) == g


def test_hash_ignores_json_layout(tmp_path: Path) -> None:
    g = genesis()
    d = genesis_to_dict(g)
    reordered = dict(reversed(list(d.items())))
    path = tmp_path / "g.json"
    path.write_text(json.dumps(reordered, separators=(",", ":")))
    assert load_genesis(path).hash() == g.hash()


@pytest.mark.parametrize(
    "change",
    [
        lambda g: dataclasses.replace(g, chain_id="other"),
        lambda g: dataclasses.replace(g, genesis_time="2025-01-31T12:00:01Z"),
        lambda g: dataclasses.replace(g, case_approvals=2),
        lambda g: dataclasses.replace(g, consensus=GenesisConsensus(view_timeout_ms=3000)),
        lambda g: dataclasses.replace(g, members=(*g.members[1:], g.members[0])),
        lambda g: dataclasses.replace(
            g, members=(dataclasses.replace(g.members[0], address="x:1"), *g.members[1:])
        ),
        lambda g: dataclasses.replace(
            g, pseudonyms=dataclasses.replace(g.pseudonyms, report_quota_per_day=7)
        ),
        lambda g: dataclasses.replace(
            g, pseudonyms=dataclasses.replace(g.pseudonyms, transcript=bytes(32))
        ),
        lambda g: dataclasses.replace(
            g, pseudonyms=dataclasses.replace(g.pseudonyms, public_key=_point(99))
        ),
        lambda g: dataclasses.replace(
            g, pseudonyms=dataclasses.replace(g.pseudonyms, dealers=g.pseudonyms.dealers[::-1])
        ),
    ],
)
def test_every_value_changes_the_hash(change: Any) -> None:
    g = genesis()
    assert change(g).hash() != g.hash()


def test_membership_and_lookups() -> None:
    g = genesis(n=7, k=5)
    m = g.membership()
    assert m.chain_id == "crosstrace-test"
    assert m.public_keys == tuple(KEYS[:7])
    assert (m.n, m.f, m.quorum) == (7, 2, 5)
    assert g.member_by_key(KEYS[3]) == g.members[3]
    assert g.member_by_key(KEYS[100]) is None
    assert g.member_by_name("member-2") == g.members[2]
    assert g.member_by_name("nobody") is None
    assert g.member_index(KEYS[6]) == 6
    assert g.member_index(KEYS[100]) is None


def test_roles_are_put_in_canonical_order() -> None:
    a = member(0, roles=("auditor", "reporter"))
    b = member(0, roles=("reporter", "auditor"))
    assert a == b
    assert a.roles == ("reporter", "auditor")
    assert member(0, roles=()).roles == ()


def test_assemble_defaults() -> None:
    g = assemble_genesis("net-1", [member(i) for i in range(4)], 2)
    assert g.consensus == GenesisConsensus()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", g.genesis_time)
    custom = GenesisConsensus(checkpoint_interval=5, window=15)
    g2 = assemble_genesis("net-1", [member(i) for i in range(4)], 2, custom, genesis_time=TIME)
    assert g2.consensus == custom
    assert [m.name for m in g2.members] == [f"member-{i}" for i in range(4)]


def test_assemble_rejects_duplicate_descriptor() -> None:
    ds = [member(0), member(1), member(2), member(1, name="other", address="o:1")]
    with pytest.raises(GenesisError) as info:
        assemble_genesis("net", ds, 2)
    assert str(info.value) == (
        f"members[3].public_key: duplicate of members[1].public_key ({KEYS[1].hex()})"
    )


def test_descriptor_round_trip(tmp_path: Path) -> None:
    d: MemberDescriptor = member(5, roles=ROLES, address="[2001:db8::1]:26656")
    path = tmp_path / "bank.json"
    save_descriptor(path, d)
    assert load_descriptor(path) == d
    assert json.loads(path.read_text())["public_key"] == KEYS[5].hex()


def test_descriptor_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bank.json"
    path.write_text(json.dumps({**genesis_to_dict(genesis())["members"][0], "address": "7000"}))
    with pytest.raises(GenesisError) as info:
        load_descriptor(path)
    assert str(info.value) == f"{path}: address: expected host:port, got '7000'"


def test_accepts_bounds() -> None:
    assert len(genesis(n=128, k=128).members) == 128
    GenesisConsensus(checkpoint_interval=1, window=2, batch_delay_ms=0, heartbeat_ms=10)
    assert genesis(k=1).case_approvals == 1


# ---- property: the JSON form is lossless -----------------------------------------------

names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
hosts = st.one_of(
    st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)


@st.composite
def members_strategy(draw: st.DrawFn) -> list[Member]:
    n = draw(st.integers(4, 8))
    key_idx = draw(st.lists(st.integers(0, 129), min_size=n, max_size=n, unique=True))
    member_names = draw(st.lists(names, min_size=n, max_size=n, unique=True))
    out = []
    for i in range(n):
        out.append(
            Member(
                name=member_names[i],
                institution=draw(st.sampled_from(INSTITUTIONS)),
                roles=tuple(draw(st.lists(st.sampled_from(ROLES), unique=True))),
                public_key=KEYS[key_idx[i]],
                address=f"{draw(hosts)}:{1000 + i}",
            )
        )
    return out


@st.composite
def consensus_strategy(draw: st.DrawFn) -> GenesisConsensus:
    ci = draw(st.integers(1, 100))
    timeout = draw(st.integers(100, 600_000))
    return GenesisConsensus(
        checkpoint_interval=ci,
        window=ci * draw(st.integers(2, 10)),
        max_batch_txs=draw(st.integers(1, 100_000)),
        batch_delay_ms=draw(st.integers(0, 60_000)),
        view_timeout_ms=timeout,
        heartbeat_ms=draw(st.integers(10, min(60_000, timeout - 1))),
    )


@st.composite
def genesis_strategy(draw: st.DrawFn) -> Genesis:
    ms = draw(members_strategy())
    offset = datetime.timezone(datetime.timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60))))
    when = draw(
        st.datetimes(
            min_value=datetime.datetime(2000, 1, 1),
            max_value=datetime.datetime(2999, 12, 31),
            timezones=st.just(offset),
        )
    )
    stamp = draw(st.sampled_from([when.isoformat(), when.strftime("%Y-%m-%dT%H:%M:%SZ")]))
    names = [m.name for m in ms]
    threshold = draw(st.integers(2, len(ms)))
    dealers = draw(st.permutations(names))[: draw(st.integers(threshold, len(ms)))]
    return Genesis(
        chain_id=draw(st.from_regex(r"[a-z0-9-]{1,64}", fullmatch=True)),
        genesis_time=stamp,
        members=tuple(ms),
        consensus=draw(consensus_strategy()),
        case_approvals=draw(st.integers(1, len(ms))),
        pseudonyms=GenesisPseudonyms(
            threshold=threshold,
            public_key=_point(draw(st.integers(0, 200))),
            public_shares=tuple(_point(draw(st.integers(0, 200))) for _ in ms),
            dealers=tuple(dealers),
            transcript=draw(st.binary(min_size=32, max_size=32)),
            report_quota_per_day=draw(st.integers(1, 10**9)),
            query_quota_per_case_per_day=draw(st.integers(1, 10**9)),
        ),
    )


@settings(max_examples=40, deadline=None)
@given(genesis_strategy())
def test_json_round_trip_property(g: Genesis) -> None:
    d = json.loads(json.dumps(genesis_to_dict(g)))
    again = parse_genesis(d)
    assert again == g
    assert again.hash() == g.hash()
    assert decode_value(Genesis, encode_value(g)) == g


# ---- every validation error, with its message ------------------------------------------


def _set(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    *parents, last = re.findall(r"\w+|\[\d+\]", path)
    node: Any = d
    for part in parents:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    if last.startswith("["):
        node[int(last[1:-1])] = value
    elif value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return d


_DELETE = object()
ZERO_KEY = "00" * 32  # a small-order point, not a usable public key


@pytest.mark.parametrize(
    ("path", "value", "rest"),
    [
        ("chain_id", "Bad_ID", ": expected 1 to 64 characters of [a-z0-9-], got 'Bad_ID'"),
        ("chain_id", "", ": expected 1 to 64 characters of [a-z0-9-], got ''"),
        ("chain_id", "a" * 65, ": expected 1 to 64 characters of [a-z0-9-], got 'aaa"),
        ("chain_id", 7, ": expected a string, got a number"),
        ("genesis_time", "yesterday", ": expected an ISO 8601 time with a time zone"),
        (
            "genesis_time",
            "2025-01-01T00:00:00",
            ": expected an ISO 8601 time with a time zone, like 2025-01-31T12:00:00Z, "
            "got '2025-01-01T00:00:00' (no time zone)",
        ),
        ("members[2].public_key", "ab" * 5, ": expected 64 hex characters, got 10"),
        ("members[2].public_key", "zz" * 32, ": expected 64 hex characters, got 'zz"),
        ("members[2].public_key", ZERO_KEY, ": not a valid Ed25519 public key"),
        ("members[2].public_key", None, ": expected a string, got null"),
        (
            "members[1].institution",
            "school",
            ": expected one of police, bank, telecom, utility, other, got 'school'",
        ),
        ("members[1].roles", "reporter", ": expected an array, got a string"),
        (
            "members[1].roles",
            ["reporter", "boss"],
            "[1]: expected one of reporter, investigator, approver, auditor, got 'boss'",
        ),
        ("members[1].roles", ["auditor", "auditor"], "[1]: duplicate role 'auditor'"),
        ("members[1].roles", [1], "[0]: expected a string, got a number"),
        (
            "members[0].name",
            "Bank A",
            ": expected 1 to 64 characters of [a-z0-9._-] starting with a letter or digit, "
            "got 'Bank A'",
        ),
        ("members[0].name", "-x", ": expected 1 to 64 characters"),
        ("members[3].address", "7000", ": expected host:port, got '7000'"),
        ("members[3].address", "host:99999", ": port must be 1 to 65535, got 99999"),
        ("members[3].address", "host:0", ": port must be 1 to 65535, got 0"),
        ("members[3].address", "host:", ": expected host:port, got 'host:'"),
        ("members[3].address", "a b:80", ": expected host:port, got 'a b:80' (bad host name)"),
        (
            "members[3].address",
            "::1:80",
            ": expected host:port, got '::1:80' (put IPv6 addresses in brackets)",
        ),
        ("members[3].address", "[zz]:80", ": expected host:port, got '[zz]:80' (bad IPv6 address)"),
        ("members[3].adress", "x:1", ": unknown field (did you mean 'address'?)"),
        ("members[3].address", _DELETE, ": missing"),
        ("members[3]", "bank", ": expected an object, got a string"),
        ("members", {}, ": expected an array, got an object"),
        ("consensus.window", 25, ": must be a multiple of checkpoint_interval (10), got 25"),
        ("consensus.window", 10, ": must be at least twice checkpoint_interval (20), got 10"),
        ("consensus.window", "20", ": expected an integer, got a string"),
        ("consensus.window", 20.0, ": expected an integer, got a number"),
        ("consensus.window", True, ": expected an integer, got a boolean"),
        ("consensus.checkpoint_interval", 0, ": must be between 1 and 10000, got 0"),
        ("consensus.max_batch_txs", 0, ": must be between 1 and 100000, got 0"),
        ("consensus.batch_delay_ms", -1, ": must be between 0 and 60000, got -1"),
        ("consensus.view_timeout_ms", 50, ": must be between 100 and 600000, got 50"),
        ("consensus.heartbeat_ms", 2000, ": must be less than view_timeout_ms (2000), got 2000"),
        ("consensus.heartbeat_ms", 5, ": must be between 10 and 60000, got 5"),
        ("consensus.heartbeat", 5, ": unknown field (did you mean 'heartbeat_ms'?)"),
        ("consensus.window", _DELETE, ": missing"),
        ("consensus", [], ": expected an object, got an array"),
        ("case_approvals", 0, ": must be between 1 and 4 (the number of members), got 0"),
        ("case_approvals", 5, ": must be between 1 and 4 (the number of members), got 5"),
        ("case_approvals", "3", ": expected an integer, got a string"),
        ("case_approvals", _DELETE, ": missing"),
        ("chain_idd", "x", ": unknown field (did you mean 'chain_id'?)"),
    ],
)
def test_validation_errors(path: str, value: Any, rest: str) -> None:
    # ``rest`` is the message after the field path, which the table does not repeat.
    assert error_of(_set(doc(), path, value)).startswith(path + rest)


def test_top_level_must_be_an_object() -> None:
    assert error_of([1]) == "expected an object, got an array"


def test_member_count_limits() -> None:
    d = doc()
    d["members"] = d["members"][:3]
    d["case_approvals"] = 2
    assert error_of(d) == "members: PBFT needs 4 to 128 members, got 3"
    big = genesis_to_dict(genesis(n=128))
    big["members"].append(genesis_to_dict(genesis(n=129 - 124))["members"][0])
    big["members"][-1].update(name="extra", public_key=KEYS[128].hex(), address="extra:1")
    assert error_of(big) == "members: PBFT needs 4 to 128 members, got 129"


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        ("name", "member-0", "members[3].name: duplicate of members[0].name (member-0)"),
        (
            "public_key",
            KEYS[1].hex(),
            f"members[3].public_key: duplicate of members[1].public_key ({KEYS[1].hex()})",
        ),
        (
            "address",
            "NODE2.example.org:7000",
            "members[3].address: duplicate of members[2].address (NODE2.example.org:7000)",
        ),
    ],
)
def test_duplicates(attr: str, value: str, message: str) -> None:
    d = doc()
    d["members"][3][attr] = value
    assert error_of(d) == message


def test_error_has_field_path_attribute() -> None:
    with pytest.raises(GenesisError) as info:
        parse_genesis(_set(doc(), "members[2].public_key", "ab"))
    assert info.value.field_path == "members[2].public_key"
    assert info.value.problem == "expected 64 hex characters, got 2"


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(GenesisError, match=r"^window: must be a multiple"):
        GenesisConsensus(window=25)
    with pytest.raises(GenesisError, match=r"^public_key: expected 32 bytes, got 3"):
        member(0, public_key=b"abc")
    with pytest.raises(GenesisError, match=r"^members: expected a tuple of Member"):
        dataclasses.replace(genesis(), members=[member(i) for i in range(4)])  # type: ignore[arg-type]


# ---- files -----------------------------------------------------------------------------


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(_set(doc(), "consensus.window", 25)))
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    assert str(info.value) == (
        f"{path}: consensus.window: must be a multiple of checkpoint_interval (10), got 25"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{\n  "chain_id": "x",\n  oops\n}', "invalid JSON at line 3 column 3: Expecting"),
        ('{"chain_id": "a", "chain_id": "b"}', "invalid JSON: duplicate key 'chain_id'"),
        ('{"case_approvals": NaN}', "invalid JSON: NaN is not allowed"),
        ("\udcff", "invalid JSON"),
    ],
)
def test_bad_json(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="cannot read: No such file"):
        load_genesis(tmp_path / "nope.json")


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(b" " * (4 * 1024 * 1024 + 1))
    with pytest.raises(GenesisError, match="larger than"):
        load_genesis(path)


# ---- host:port -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7000", ("127.0.0.1", 7000)),
        ("node-1.bank.example:26656", ("node-1.bank.example", 26656)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


def test_split_host_port_zero() -> None:
    assert split_host_port("0.0.0.0:0", allow_port_zero=True) == ("0.0.0.0", 0)
    with pytest.raises(ValueError, match="port must be 1 to 65535"):
        split_host_port("0.0.0.0:0")
    with pytest.raises(ValueError, match="expected host:port, got int"):
        split_host_port(7000)


# ---- the pseudonym section and the draft ------------------------------------------------


def test_pseudonym_section_round_trips_and_encodes_nested() -> None:
    g = genesis(n=7, k=3)
    d = genesis_to_dict(g)["pseudonyms"]
    assert d["scheme"] == PSEUDONYM_SCHEME
    assert d["threshold"] == 3  # f + 1 for n = 7
    assert (d["report_quota_per_day"], d["query_quota_per_case_per_day"]) == (
        DEFAULT_REPORT_QUOTA,
        DEFAULT_QUERY_QUOTA,
    )
    assert len(d["public_shares"]) == 7 and d["public_key"] == _point(0).hex()
    assert decode_value(Genesis, encode_value(g)).pseudonyms == g.pseudonyms
    assert g.draft().pseudonyms == g.pseudonyms.parameters()


@pytest.mark.parametrize(("n", "t"), [(4, 2), (5, 2), (6, 2), (7, 3), (10, 4), (128, 43)])
def test_default_threshold_is_f_plus_one_at_least_two(n: int, t: int) -> None:
    assert default_threshold(n) == t


def test_a_genesis_without_the_section_is_refused_as_the_old_shared_key(tmp_path: Path) -> None:
    d = doc()
    del d["pseudonyms"]
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    message = str(info.value)
    assert message.startswith(f"{path}: pseudonyms: missing: this genesis was made for the old ")
    assert "shared-key pseudonyms, which this build no longer accepts" in message
    assert "key ceremony" in message and "A consortium across machines" in message


def _draft() -> GenesisDraft:
    return assemble_draft(
        "crosstrace-test", [member(i) for i in range(4)], 3, genesis_time=TIME, threshold=3
    )


def test_draft_round_trip_and_load_genesis_refuses_it(tmp_path: Path) -> None:
    draft = _draft()
    path = tmp_path / "genesis-draft.json"
    save_draft(path, draft)
    text = json.loads(path.read_text())
    assert text["draft"] is True
    assert set(text["pseudonyms"]) == {
        "scheme",
        "threshold",
        "report_quota_per_day",
        "query_quota_per_case_per_day",
    }
    assert load_draft(path) == draft and load_draft(path).hash() == draft.hash()
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    assert "the key ceremony has not finished" in str(info.value)
    assert "crosstrace dkg deal" in str(info.value)
    finished = tmp_path / "genesis.json"
    save_genesis(finished, genesis())
    with pytest.raises(GenesisError, match="a finished genesis, not a draft"):
        load_draft(finished)


def test_draft_hash_binds_every_value() -> None:
    draft = _draft()
    assert draft.hash() != dataclasses.replace(draft, chain_id="other").hash()
    params = dataclasses.replace(draft.pseudonyms, threshold=2)
    assert draft.hash() != dataclasses.replace(draft, pseudonyms=params).hash()
    assert draft.hash() != genesis().hash()  # another domain, another shape


def test_finished_genesis_keeps_the_draft() -> None:
    draft = _draft()
    g = finished_genesis(draft, fake_pseudonyms([m.name for m in draft.members], 3))
    assert g.draft() == draft
    with pytest.raises(GenesisError, match="parameters differ from the draft"):
        finished_genesis(draft, fake_pseudonyms([m.name for m in draft.members], 2))


def test_draft_validation() -> None:
    with pytest.raises(GenesisError, match=r"^pseudonyms.threshold: must be at most 4"):
        assemble_draft("x", [member(i) for i in range(4)], 3, threshold=5)
    with pytest.raises(GenesisError, match=r"^pseudonyms.threshold: must be at least 2, got 1"):
        assemble_draft("x", [member(i) for i in range(4)], 3, threshold=1)
    with pytest.raises(GenesisError, match=r"^pseudonyms.report_quota_per_day: must be at least 1"):
        assemble_draft("x", [member(i) for i in range(4)], 3, report_quota_per_day=0)
    d = draft_to_dict(_draft())
    d["pseudonyms"]["public_key"] = _point(0).hex()
    with pytest.raises(GenesisError, match=r"^pseudonyms.public_key: unknown field"):
        from node.setup.genesis import parse_draft

        parse_draft(d)


SECOND_POINT = _point(1).hex()


@pytest.mark.parametrize(
    ("path", "value", "rest"),
    [
        ("pseudonyms.scheme", "hmac/v0", ": expected '2hashdh-ed25519/v1', got 'hmac/v0'"),
        ("pseudonyms.threshold", 1, ": must be at least 2, got 1"),
        ("pseudonyms.threshold", "2", ": expected an integer, got a string"),
        ("pseudonyms.report_quota_per_day", 0, ": must be at least 1, got 0"),
        ("pseudonyms.query_quota_per_case_per_day", -1, ": must be at least 1, got -1"),
        ("pseudonyms.public_key", ZERO_KEY, ": not a valid point of the group"),
        ("pseudonyms.public_key", "ab", ": expected 64 hex characters, got 2"),
        ("pseudonyms.public_shares[2]", ZERO_KEY, ": not a valid point of the group"),
        ("pseudonyms.public_shares[1]", "zz" * 32, ": expected 64 hex characters, got 'zz"),
        ("pseudonyms.public_shares", [SECOND_POINT] * 3, ": expected one per member (4), got 3"),
        ("pseudonyms.public_shares", SECOND_POINT, ": expected an array, got a string"),
        ("pseudonyms.dealers", ["member-0"], ": at least threshold (2) dealers are needed, got 1"),
        ("pseudonyms.dealers[1]", "member-0", ": duplicate dealer 'member-0'"),
        ("pseudonyms.dealers[1]", "stranger", ": 'stranger' is not a member"),
        ("pseudonyms.dealers[0]", 3, ": expected a string, got a number"),
        ("pseudonyms.transcript", "00" * 31, ": expected 64 hex characters, got 62"),
        ("pseudonyms.transcript", _DELETE, ": missing"),
        ("pseudonyms.dealer", [], ": unknown field (did you mean 'dealers'?)"),
        ("pseudonyms", [], ": expected an object, got an array"),
    ],
)
def test_pseudonym_section_errors(path: str, value: Any, rest: str) -> None:
    assert error_of(_set(doc(), path, value)).startswith(path + rest)


# Any JSON value, for the mutation property below.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=70)
    | st.sampled_from(["00" * 32, SECOND_POINT, ZERO_KEY, "member-1", PSEUDONYM_SCHEME]),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)  # fmt: skip


@st.composite
def pseudonym_mutations(draw: st.DrawFn) -> dict[str, Any]:
    d = doc()
    section: dict[str, Any] = d["pseudonyms"]
    action = draw(st.sampled_from(["set", "delete", "add", "item", "replace"]))
    key = draw(st.sampled_from(sorted(section)))
    if action == "set":
        section[key] = draw(json_values)
    elif action == "delete":
        del section[key]
    elif action == "add":
        section[draw(st.text(max_size=12))] = draw(json_values)
    elif action == "item":
        target = section[draw(st.sampled_from(["public_shares", "dealers"]))]
        if target:
            target[draw(st.integers(0, len(target) - 1))] = draw(json_values)
        target.append(draw(json_values)) if draw(st.booleans()) else None
    else:
        d["pseudonyms"] = draw(json_values)
    return d


@settings(max_examples=300, deadline=None)
@given(pseudonym_mutations())
def test_any_mutation_of_the_pseudonym_section_parses_equal_or_is_refused(
    d: dict[str, Any],
) -> None:
    try:
        parsed = parse_genesis(json.loads(json.dumps(d)))
    except GenesisError:
        return
    # Accepted: the value is exactly what the file says, and says it again when written.
    assert parse_genesis(genesis_to_dict(parsed)) == parsed
    if d["pseudonyms"] == doc()["pseudonyms"]:
        assert parsed == genesis()
    else:
        assert parsed.pseudonyms != genesis().pseudonyms or d["pseudonyms"] != doc()["pseudonyms"]
