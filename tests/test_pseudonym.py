"""Pseudonyms: equal identifiers meet, different keys and types stay apart."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import DecodeError, decode_value, encode_value
from node.identifiers.normalize import EntityType, NormalizationError, luhn_digit
from node.identifiers.pseudonym import (
    EntityRef,
    PseudonymKey,
    PseudonymKeyError,
    entity_ref,
    personalization,
    pseudonym,
)

KEY = bytes(range(32))


def test_known_answer() -> None:
    # Pins the construction: a change here splits every member's entity index.
    expected = hashlib.blake2b(
        b"+8613800138000", digest_size=32, key=KEY, person=b"ct1/phone"
    ).digest()
    assert pseudonym(KEY, "phone", "+8613800138000") == expected
    assert personalization(EntityType.PERSON_ID) == b"ct1/person_id"


def test_equal_phone_numbers_written_differently_meet() -> None:
    a = entity_ref(KEY, "phone", "+86 138 0013 8000")
    b = entity_ref(KEY, EntityType.PHONE, "13800138000")
    c = entity_ref(PseudonymKey(KEY), "phone", "0086-138-0013-8000")
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
    refs = {entity_ref(KEY, kind, s) for s in spellings}
    assert len(refs) == 1


@given(
    subscriber=st.text("0123456789", min_size=8, max_size=8),
    prefix=st.sampled_from(["138", "139", "150", "186", "199"]),
    form=st.sampled_from(["{p}{s}", "+86 {p} {a} {b}", "0086-{p}-{a}-{b}", "+86{p}{s}"]),
)
@settings(max_examples=100)
def test_chinese_mobile_forms_meet(subscriber: str, prefix: str, form: str) -> None:
    written = form.format(p=prefix, s=subscriber, a=subscriber[:4], b=subscriber[4:])
    assert entity_ref(KEY, "phone", written) == entity_ref(KEY, "phone", prefix + subscriber)


@given(k1=st.binary(min_size=32, max_size=32), k2=st.binary(min_size=32, max_size=32))
@settings(max_examples=100)
def test_different_keys_give_different_pseudonyms(k1: bytes, k2: bytes) -> None:
    if k1 == k2:
        return
    assert pseudonym(k1, "phone", "+8613800138000") != pseudonym(k2, "phone", "+8613800138000")


def test_types_separate_equal_strings() -> None:
    digits = "35209900176148" + luhn_digit("35209900176148")
    assert pseudonym(KEY, "account", digits) != pseudonym(KEY, "device", digits)


def test_pseudonym_refuses_values_not_in_normal_form() -> None:
    with pytest.raises(NormalizationError, match="not in normal form"):
        pseudonym(KEY, "phone", "13800138000")
    with pytest.raises(NormalizationError, match="is not a valid phone number"):
        pseudonym(KEY, "phone", "12ab")
    with pytest.raises(ValueError, match="32 bytes"):
        pseudonym(b"short", "phone", "+8613800138000")
    with pytest.raises(NormalizationError, match="unknown entity type"):
        pseudonym(KEY, "colour", "red")


def test_entity_ref_codec_round_trip_and_checks() -> None:
    ref = entity_ref(KEY, "email", "a@example.com")
    assert decode_value(EntityRef, encode_value(ref)) == ref
    assert ref.entity_type is EntityType.EMAIL
    with pytest.raises(ValueError, match="unknown entity type"):
        EntityRef("colour", bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        EntityRef("phone", bytes(31))
    with pytest.raises(DecodeError, match="unknown entity type"):
        decode_value(
            EntityRef, encode_value(EntityRef("phone", bytes(32))).replace(b"phone", b"phony")
        )
    assert EntityRef(EntityType.IP, bytes(32)) == EntityRef("ip", bytes(32))


# --- the key file ----------------------------------------------------------------------


def test_generate_save_load(tmp_path: Path) -> None:
    key = PseudonymKey.generate()
    assert key != PseudonymKey.generate()
    path = tmp_path / "pseudonym.key"
    key.save(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert PseudonymKey.load(path) == key
    assert key.secret.hex() not in repr(key)
    assert len(key.fingerprint()) == 16
    assert key.ref("phone", "13800138000") == entity_ref(key.secret, "phone", "+8613800138000")
    with pytest.raises(PseudonymKeyError, match="refusing to overwrite"):
        key.save(path)


def test_load_refuses_group_or_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(KEY.hex())
    path.chmod(0o640)
    with pytest.raises(PseudonymKeyError, match=r"accessible to others \(mode 0640\)"):
        PseudonymKey.load(path)
    path.chmod(0o600)
    assert PseudonymKey.load(path).secret == KEY


@pytest.mark.parametrize("content", ["", "abcd", "zz" * 32, KEY.hex() * 2, "\x00" * 5000])
def test_load_refuses_malformed_content(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    with pytest.raises(PseudonymKeyError, match="expected 64 hex digits"):
        PseudonymKey.load(path)


def test_load_refuses_symlinks_and_missing_files(tmp_path: Path) -> None:
    target = tmp_path / "real"
    PseudonymKey(KEY).save(target)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(PseudonymKeyError, match="cannot open"):
        PseudonymKey.load(link)
    with pytest.raises(PseudonymKeyError, match="cannot open"):
        PseudonymKey.load(tmp_path / "missing")
    with pytest.raises(PseudonymKeyError, match="regular file"):
        PseudonymKey.load(tmp_path)


def test_key_size_is_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PseudonymKey(b"\x00" * 16)
