"""Pseudonyms: equal identifiers meet, different keys and types stay apart, and the
function is the threshold OPRF's, never a keyed hash anyone could hold."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import DecodeError, decode_value, encode_value
from node.identifiers import oprf
from node.identifiers.group import mul, scalar_from_int
from node.identifiers.normalize import EntityType, luhn_digit, normalize
from node.identifiers.pseudonym import EntityRef
from node.testing.dealer import KeyedPseudonyms

KEY = scalar_from_int(0x1234_5678_9ABC_DEF0 << 64 | 0x0FED_CBA9_8765_4321)
SOURCE = KeyedPseudonyms(KEY)


def ref(kind: str, raw: str) -> EntityRef:
    [out] = SOURCE.refs([(kind, raw)])
    return out


def test_known_construction() -> None:
    # Pins the construction: a change here splits every member's entity index.
    value = "+8613800138000"
    point = mul(KEY, oprf.input_point("phone", value))
    data = len(value.encode()).to_bytes(4, "big") + value.encode() + point
    expected = hashlib.blake2b(data, digest_size=32, person=b"ct2/phone").digest()
    assert oprf.pseudonym_with_key(KEY, "phone", value) == expected
    # Not the keyed BLAKE2b of ledger format 4, whatever the key.
    old = hashlib.blake2b(value.encode(), digest_size=32, key=KEY, person=b"ct1/phone").digest()
    assert expected != old


def test_equal_phone_numbers_written_differently_meet() -> None:
    a = ref("phone", "+86 138 0013 8000")
    b = ref(EntityType.PHONE, "13800138000")
    c = ref("phone", "0086-138-0013-8000")
    assert a == b == c
    assert a.type == "phone" and type(a.type) is str


SPELLINGS = [
    ("phone", ["+86 138 0013 8000", "13800138000", "tel:+86-138-0013-8000", "(+86) 13800138000"]),
    ("account", ["DE89 3704 0044 0532 0130 00", "de89370400440532013000"]),
    ("device", ["35-209900-176148-1", "352099001761481", "3520990017614899"]),
    ("email", ["Alice@Example.com", " alice@example.COM"]),
    ("ip", ["::ffff:192.0.2.7", "192.0.2.7"]),
    ("person_id", ["11010519491231002x", "110105491231002"]),
    ("wallet", ["0xAB" + "0" * 38, "0xab" + "0" * 38]),
    ("domain", ["https://Bücher.de/x", "xn--bcher-kva.de."]),
]


@pytest.mark.parametrize(("kind", "spellings"), SPELLINGS)
def test_spellings_of_one_identifier_meet(kind: str, spellings: list[str]) -> None:
    refs = {ref(kind, s) for s in spellings}
    assert len(refs) == 1


@given(
    subscriber=st.text("0123456789", min_size=8, max_size=8),
    prefix=st.sampled_from(["138", "139", "150", "186", "199"]),
    form=st.sampled_from(["{p}{s}", "+86 {p} {a} {b}", "0086-{p}-{a}-{b}", "+86{p}{s}"]),
)
@settings(max_examples=50, deadline=None)
def test_chinese_mobile_forms_meet(subscriber: str, prefix: str, form: str) -> None:
    written = form.format(p=prefix, s=subscriber, a=subscriber[:4], b=subscriber[4:])
    assert ref("phone", written) == ref("phone", prefix + subscriber)


@given(k1=st.integers(1, 2**252), k2=st.integers(1, 2**252))
@settings(max_examples=50, deadline=None)
def test_different_keys_give_different_pseudonyms(k1: int, k2: int) -> None:
    if k1 == k2:
        return
    value = "+8613800138000"
    first = oprf.pseudonym_with_key(scalar_from_int(k1), "phone", value)
    second = oprf.pseudonym_with_key(scalar_from_int(k2), "phone", value)
    assert first != second


def test_types_separate_equal_strings() -> None:
    digits = "35209900176148" + luhn_digit("35209900176148")
    assert normalize("account", digits) == normalize("device", digits) == digits
    account = oprf.pseudonym_with_key(KEY, "account", digits)
    assert account != oprf.pseudonym_with_key(KEY, "device", digits)


def test_entity_ref_codec_round_trip_and_checks() -> None:
    entity = ref("email", "a@example.com")
    assert decode_value(EntityRef, encode_value(entity)) == entity
    assert entity.entity_type is EntityType.EMAIL
    with pytest.raises(ValueError, match="unknown entity type"):
        EntityRef("colour", bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        EntityRef("phone", bytes(31))
    with pytest.raises(DecodeError, match="unknown entity type"):
        decode_value(
            EntityRef, encode_value(EntityRef("phone", bytes(32))).replace(b"phone", b"phony")
        )
    assert EntityRef(EntityType.IP, bytes(32)) == EntityRef("ip", bytes(32))


def test_no_whole_key_in_the_product() -> None:
    # The shared key's class, its file and its function are gone from the code base.
    import node.identifiers.pseudonym as module

    for name in ("PseudonymKey", "PseudonymKeyError", "pseudonym", "entity_ref"):
        assert not hasattr(module, name), name
