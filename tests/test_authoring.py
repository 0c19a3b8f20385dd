"""Authoring without a pseudonym key: an ``Author`` asks a ``PseudonymSource`` for its
pseudonyms (the member's running node through ``POST /pseudonyms``, or, in tests, a key
dealt by the test-only dealer), in batches, and never repeats an identifier in an error.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.client import pseudonyms as client_pseudonyms
from node.client.http import ApiClient
from node.client.pseudonyms import NodePseudonyms
from node.identifiers import oprf
from node.identifiers.group import mul, sum_points
from node.identifiers.normalize import normalize
from node.identifiers.pseudonym import EntityRef
from node.ledger.authoring import (
    NO_SOURCE,
    PSEUDONYM_BATCH,
    Author,
    AuthoringError,
    load_author,
    sample_identifiers,
)
from node.ledger.kinds import Link, Report
from node.ledger.transactions import decode_body, decode_tx, tx_id
from node.setup.config import load_config
from node.setup.genesis import assemble_draft, load_genesis
from node.setup.provision import CONFIG_FILE, make_testnet
from node.setup.shares import load_share
from node.testing.dealer import (
    TEST_KEY,
    KeyedPseudonyms,
    deal,
    dealt_genesis,
    key_from_label,
    redeal_homes,
)

PHONE = "+86 138 0013 8000"
BAD_PHONE = "+86 12"


class CountingSource:
    """Stand-in references, fast, with every request's size noted."""

    def __init__(self) -> None:
        self.requests: list[int] = []

    def refs(self, items: Sequence[tuple[str, str]]) -> list[EntityRef]:
        self.requests.append(len(items))
        serial = len(self.requests) << 32
        return [EntityRef(t, (serial + i).to_bytes(32, "big")) for i, (t, _) in enumerate(items)]


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("authoring") / "net"
    _, made = make_testnet(base, 4, p2p_base_port=23600, api_base_port=23700)
    return [h.path for h in made]


def author(homes: list[Path], source: object = None) -> Author:
    return load_author(homes[1], pseudonyms=source)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the author


def test_without_a_source_an_entity_is_refused_saying_where_pseudonyms_come_from(
    homes: list[Path],
) -> None:
    keyless = author(homes)
    with pytest.raises(AuthoringError) as info:
        keyless.report("phone", PHONE, "fraud_call")
    assert str(info.value) == NO_SOURCE and "crosstrace start" in str(info.value)
    with pytest.raises(AuthoringError, match="running node"):
        keyless.link(("phone", PHONE), ("account", "DE89370400440532013000"), "uses")
    # What names no entity is still written without one.
    assert keyless.member == "bank-1"


def test_reports_and_links_carry_the_source_s_pseudonyms(homes: list[Path]) -> None:
    source = KeyedPseudonyms(TEST_KEY)
    writer = author(homes, source)
    phone = ("phone", PHONE)
    account = ("account", "DE89370400440532013000")
    expected_phone = oprf.pseudonym_with_key(TEST_KEY, "phone", normalize("phone", PHONE))
    report = decode_body(decode_tx(writer.report(*phone, "fraud_call", [("complaints", "3")])))
    assert isinstance(report, Report)
    assert report.subject == EntityRef("phone", expected_phone)
    link = decode_body(decode_tx(writer.link(phone, account, "uses")))
    assert isinstance(link, Link)
    assert (link.a, link.b) == tuple(source.refs([phone, account]))
    assert link.a != link.b


def test_a_link_asks_for_both_ends_at_once_and_a_bad_category_asks_nothing(
    homes: list[Path],
) -> None:
    source = CountingSource()
    writer = author(homes, source)
    writer.link(("phone", PHONE), ("phone", "+86 139 0000 1111"), "called")
    assert source.requests == [2]
    with pytest.raises(AuthoringError, match="unknown category"):
        writer.report("phone", PHONE, "no_such_category")
    with pytest.raises(AuthoringError, match="unknown relation"):
        writer.link(("phone", PHONE), ("phone", PHONE), "no_such_relation")
    assert source.requests == [2]


def test_sample_reports_ask_the_source_once_per_ten_thousand(homes: list[Path]) -> None:
    source = CountingSource()
    writer = author(homes, source)
    count = 2 * PSEUDONYM_BATCH + 17
    signed = writer.sample_reports(count, first=5)
    # Lazily: the first chunk's pseudonyms are asked for when the first report is needed.
    assert source.requests == []
    first = next(signed)
    assert source.requests == [PSEUDONYM_BATCH]
    rest = list(signed)
    assert source.requests == [PSEUDONYM_BATCH, PSEUDONYM_BATCH, 17]
    assert len(rest) + 1 == count
    assert len({tx_id(tx) for tx in [first, *rest[:100]]}) == 101


def test_entities_in_bulk_are_asked_in_chunks_and_keep_their_order(homes: list[Path]) -> None:
    source = KeyedPseudonyms(TEST_KEY)
    calls: list[int] = []

    class Spy:
        def refs(self, items: Sequence[tuple[str, str]]) -> list[EntityRef]:
            calls.append(len(items))
            return source.refs(items)

    items = sample_identifiers(PSEUDONYM_BATCH + 3, first=40_000)
    refs = author(homes, Spy()).entities(items)
    assert calls == [PSEUDONYM_BATCH, 3]
    assert refs[-3:] == source.refs(items[-3:])
    assert refs[:2] == source.refs(items[:2])


def test_a_malformed_identifier_is_named_by_its_position_never_by_its_value(
    homes: list[Path],
) -> None:
    writer = author(homes, KeyedPseudonyms(TEST_KEY))
    with pytest.raises(AuthoringError) as info:
        writer.report("phone", BAD_PHONE, "fraud_call")
    assert str(info.value).startswith("identifiers[0]: phone:")
    assert BAD_PHONE not in str(info.value) and "12" not in str(info.value)
    # In the second chunk of a bulk request, the position is the caller's, not the chunk's.
    items = sample_identifiers(PSEUDONYM_BATCH + 5)
    items[PSEUDONYM_BATCH + 2] = ("phone", BAD_PHONE)
    with pytest.raises(AuthoringError) as info:
        writer.entities(items)
    assert str(info.value).startswith(f"identifiers[{PSEUDONYM_BATCH + 2}]: ")
    assert BAD_PHONE not in str(info.value)
    with pytest.raises(AuthoringError, match=r"identifiers\[1\]: unknown entity type 'fax'"):
        writer.entities([("phone", PHONE), ("fax", "123")])


# ---------------------------------------------------------------------- from a node


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Handler], list[Any]]]:
    """``node(handler)``: NodePseudonyms's HTTP goes to ``handler``; returns the bodies
    of the requests it got."""
    seen: list[Any] = []

    def install(handler: Handler) -> list[Any]:
        def recording(request: httpx.Request) -> httpx.Response:
            assert request.url.path == "/pseudonyms" and request.method == "POST"
            assert request.headers["authorization"] == "Bearer t0ken"
            seen.append(json.loads(request.content))
            return handler(request)

        class MockClient(ApiClient):
            def __init__(self, base_url: str, timeout_s: float = 10, *, token: str | None = None):
                super().__init__(base_url, timeout_s, token=token)
                self._http.close()
                self._http = httpx.Client(
                    base_url=self.base_url,
                    transport=httpx.MockTransport(recording),
                    headers={"authorization": f"Bearer {token}"},
                )

        monkeypatch.setattr(client_pseudonyms, "ApiClient", MockClient)
        return seen

    yield install


def answering(key: bytes) -> Handler:
    """A node whose consortium key is ``key``: the pseudonyms in the API's shape."""

    def handle(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["identifiers"]
        items = [tuple(text.split(":", 1)) for text in texts]
        refs = KeyedPseudonyms(key).refs(items)  # type: ignore[arg-type]
        body = {
            "pseudonyms": [{"type": r.type, "pseudonym": r.pseudonym.hex()} for r in refs],
            "evaluation": "ab" * 16,
            "from_cache": 0,
        }
        return httpx.Response(200, json=body)

    return handle


def refusing(status: int, code: str, message: str) -> Handler:
    return lambda request: httpx.Response(status, json={"error": code, "message": message})


def test_a_node_is_asked_in_chunks_of_ten_thousand_normalised_values(node: Any) -> None:
    seen = node(answering(TEST_KEY))
    items = [("phone", PHONE), *sample_identifiers(PSEUDONYM_BATCH)]
    refs = NodePseudonyms("http://node.test", "t0ken").refs(items)
    assert [len(body["identifiers"]) for body in seen] == [PSEUDONYM_BATCH, 1]
    # What travels is already in normal form, in the order given.
    assert seen[0]["identifiers"][0] == "phone:+8613800138000"
    assert refs == KeyedPseudonyms(TEST_KEY).refs(items)


def test_a_malformed_identifier_is_refused_before_anything_is_sent(node: Any) -> None:
    seen = node(answering(TEST_KEY))
    with pytest.raises(AuthoringError, match=r"identifiers\[1\]"):
        NodePseudonyms("http://node.test", "t0ken").refs([("phone", PHONE), ("phone", BAD_PHONE)])
    assert seen == []


def test_too_few_members_is_retried_a_few_times_then_reported(node: Any) -> None:
    calls = itertools.count()
    unavailable = refusing(503, "pseudonyms_unavailable", "1 of 2 members answered")

    def flaky(request: httpx.Request) -> httpx.Response:
        return unavailable(request) if next(calls) < 2 else answering(TEST_KEY)(request)

    seen = node(flaky)
    source = NodePseudonyms("http://node.test", "t0ken", retries=3, backoff_s=0.0)
    assert source.refs([("phone", PHONE)]) == KeyedPseudonyms(TEST_KEY).refs([("phone", PHONE)])
    assert len(seen) == 3

    seen.clear()
    node(unavailable)
    with pytest.raises(AuthoringError) as info:
        NodePseudonyms("http://node.test", "t0ken", retries=2, backoff_s=0.0).refs(
            [("phone", PHONE)]
        )
    assert str(info.value) == "pseudonyms_unavailable: 1 of 2 members answered"


def test_a_spent_quota_is_an_error_with_the_node_s_words_and_no_retry(node: Any) -> None:
    message = "bank-1 has used its 200000 report evaluations for today at telecom-2"
    seen = node(refusing(403, "over_quota", message))
    with pytest.raises(AuthoringError) as info:
        NodePseudonyms("http://node.test", "t0ken", backoff_s=0.0).refs([("phone", PHONE)])
    assert str(info.value) == f"over_quota: {message}"
    assert len(seen) == 1


def test_an_identifier_the_node_refuses_is_numbered_in_the_caller_s_list(node: Any) -> None:
    def second_chunk_refused(request: httpx.Request) -> httpx.Response:
        if len(json.loads(request.content)["identifiers"]) == PSEUDONYM_BATCH:
            return answering(TEST_KEY)(request)
        return refusing(400, "bad_identifier", "identifiers[1]: not a phone number")(request)

    node(second_chunk_refused)
    with pytest.raises(AuthoringError) as info:
        NodePseudonyms("http://node.test", "t0ken").refs(sample_identifiers(PSEUDONYM_BATCH + 3))
    assert str(info.value) == (
        f"bad_identifier: identifiers[{PSEUDONYM_BATCH + 1}]: not a phone number"
    )


@pytest.mark.parametrize(
    "pseudonyms",
    [
        [],
        [{"type": "account", "pseudonym": "00" * 32}],
        [{"type": "phone", "pseudonym": "00" * 31}],
        [{"type": "phone", "pseudonym": "zz" * 32}],
    ],
)
def test_an_answer_of_the_wrong_shape_is_an_error(node: Any, pseudonyms: list[Any]) -> None:
    node(lambda request: httpx.Response(200, json={"pseudonyms": pseudonyms}))
    with pytest.raises(AuthoringError, match="/pseudonyms"):
        NodePseudonyms("http://node.test", "t0ken").refs([("phone", PHONE)])


# ---------------------------------------------------------------------- the dealer


@pytest.mark.parametrize(("members", "threshold"), [(4, 2), (5, 3), (4, 4), (7, 3)])
def test_every_threshold_subset_of_dealt_shares_gives_the_whole_key_s_pseudonym(
    members: int, threshold: int
) -> None:
    dealing = deal(members, threshold)
    value = normalize("phone", PHONE)
    point = oprf.input_point("phone", value)
    want = oprf.pseudonym_with_key(dealing.key, "phone", value)
    for subset in itertools.combinations(range(1, members + 1), threshold):
        parts = [
            mul(oprf.evaluator_key(dealing.secrets[j - 1], j, list(subset)), point) for j in subset
        ]
        assert oprf.finalize("phone", value, sum_points(parts)) == want
    # One member fewer than the threshold combines to something else.
    short = list(range(1, threshold))
    parts = [mul(oprf.evaluator_key(dealing.secrets[j - 1], j, short), point) for j in short]
    if parts:
        assert oprf.finalize("phone", value, sum_points(parts)) != want


def test_a_seeded_dealing_is_the_same_every_time_and_an_unseeded_one_never() -> None:
    assert deal(4, 2, seed="x") == deal(4, 2, seed="x")
    assert deal(4, 2, seed="x").public_key != deal(4, 2, seed="y").public_key
    assert deal(4, 2).public_key != deal(4, 2).public_key
    assert deal(4, 2, key_from_label("k")).key == key_from_label("k")
    for members, threshold in [(4, 1), (4, 5)]:
        with pytest.raises(ValueError, match="threshold"):
            deal(members, threshold)
    # Neither the key nor a share shows in a repr (a test log, a failed assertion).
    dealing = deal(4, 2)
    shown = repr(dealing)
    assert dealing.key.hex() not in shown
    assert not any(secret.hex() in shown for secret in dealing.secrets)


def test_a_dealt_genesis_has_the_shares_public_keys_and_is_bound_to_its_shares(
    homes: list[Path],
) -> None:
    draft = load_genesis(load_config(homes[0] / CONFIG_FILE).node.genesis_file).draft()
    genesis, shares, dealing = dealt_genesis(draft, TEST_KEY)
    p = genesis.pseudonyms
    assert p.threshold == draft.pseudonyms.threshold
    assert p.public_key == dealing.public_key and p.public_shares == dealing.public_shares
    assert [s.index for s in shares] == [1, 2, 3, 4]
    assert all(s.genesis_hash == genesis.hash() for s in shares)
    assert dealing.key == TEST_KEY and dealing.key.hex() not in repr(dealing)


def test_redealt_homes_evaluate_the_offline_pseudonyms(tmp_path: Path) -> None:
    _, made = make_testnet(tmp_path / "net", 4, p2p_base_port=24600, api_base_port=24700)
    paths = [h.path for h in made]
    genesis, _ = redeal_homes(paths, TEST_KEY)
    value = normalize("phone", PHONE)
    point = oprf.input_point("phone", value)
    shares = []
    for home in paths:
        config = load_config(home / CONFIG_FILE)
        assert load_genesis(config.node.genesis_file) == genesis
        shares.append(load_share(config.tracing.pseudonym_share_file, None))
    assert [s.index for s in shares] == [1, 2, 3, 4]
    subset = [2, 4][: genesis.pseudonyms.threshold]
    assert len(subset) == genesis.pseudonyms.threshold
    parts = [mul(oprf.evaluator_key(shares[j - 1].secret, j, subset), point) for j in subset]
    got = oprf.finalize("phone", value, sum_points(parts))
    assert EntityRef("phone", got) == KeyedPseudonyms(TEST_KEY).refs([("phone", PHONE)])[0]


def test_a_draft_with_a_custom_threshold_and_quota_is_dealt_as_drafted(
    homes: list[Path],
) -> None:
    base = load_genesis(load_config(homes[0] / CONFIG_FILE).node.genesis_file)
    draft = assemble_draft("custom", base.members, 3, threshold=3, report_quota_per_day=12_345)
    genesis, shares, _ = dealt_genesis(draft, seed="custom")
    assert genesis.pseudonyms.threshold == 3
    assert genesis.pseudonyms.report_quota_per_day == 12_345
    assert len(shares) == 4
