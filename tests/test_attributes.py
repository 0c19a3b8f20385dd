"""The attribute schema (``node.ledger.attributes``): every valid value round-trips and
has one spelling; everything else (a wrong type, out of range, an unknown key, a key of
another category, a second spelling of a valid value) is refused with the key named,
what is allowed said, and the value never quoted. Refusals are compared with the exact
message the schema owes, which does not depend on the value."""

from __future__ import annotations

import datetime
import re

import pytest
from attribute_strategies import amount_text, attribute_pairs, values
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from consensus.codec import decode_value, encode_value, pack, to_wire
from consensus.crypto import Signer
from node.ledger.attributes import (
    CATEGORIES,
    CATEGORY_KEYS,
    COMMON_KEYS,
    CURRENCIES,
    KEYS,
    MAX_AMOUNT_DIGITS,
    Amount,
    Count,
    Date,
    Enumeration,
    Money,
    SchemaError,
    attributes_of,
    describe,
    json_schema,
    parse,
    spell,
)
from node.ledger.kinds import Attribute, Report
from node.ledger.transactions import (
    MemberInfo,
    TxContext,
    TxRejected,
    encode_tx,
    make_tx,
    sign_tx,
    validate_tx,
)
from node.testing.dealer import TEST_KEY, keyed_ref

CHAIN = "attributes-test"
NOW = 1_780_000_000_000
BANK = Signer(bytes([2]) * 32)
MEMBERS = {"bank": MemberInfo(BANK.public_key, frozenset({"reporter"}))}
PHONE = keyed_ref(TEST_KEY, "phone", "+86 138 0013 8000")
ALL_KEYS = st.sampled_from(sorted(KEYS))
UNKNOWN = "unknown attribute key; the schema's keys are " + ", ".join(KEYS)


def allowed(key: str) -> str:
    """The refusal a bad value of ``key`` gets, whatever the value."""
    return f"attribute {key} must be {KEYS[key].type.allowed()}"


def refused(key: str, text: str) -> str:
    with pytest.raises(SchemaError) as info:
        parse(key, text)
    assert info.value.key == key
    return str(info.value)


def report(category: str, pairs: tuple[tuple[str, str], ...]) -> Report:
    attributes = tuple(Attribute(k, v) for k, v in pairs)
    return Report(PHONE, category, attributes, None, NOW - 1000, None)


def context() -> TxContext:
    return TxContext(chain_id=CHAIN, members=MEMBERS, now_ms=NOW, nonce_seen=lambda m, n: False)


# --- valid values ------------------------------------------------------------------------


@given(key=ALL_KEYS, data=st.data())
@settings(max_examples=400)
def test_every_valid_value_round_trips_with_its_one_spelling(key: str, data: st.DataObject) -> None:
    value, text = data.draw(values(key))
    assert parse(key, text) == value
    assert spell(key, value) == text
    attribute = Attribute(key, text)
    assert decode_value(Attribute, encode_value(attribute)) == attribute


@given(category=st.sampled_from(CATEGORIES), data=st.data())
@settings(max_examples=200)
def test_every_valid_report_is_admitted_and_decodes_to_itself(
    category: str, data: st.DataObject
) -> None:
    pairs = data.draw(attribute_pairs(category))
    body = report(category, pairs)
    assert attributes_of(category, reversed(pairs)) == pairs
    tx = encode_tx(make_tx(BANK, CHAIN, "bank", "report", body, 1, NOW))
    # Attribute values are not screened for identifiers: an amount of eleven digits or a
    # date is what the schema says it is, nothing more.
    assert validate_tx(tx, context()).body == body


@given(key=ALL_KEYS, text=st.text(max_size=24) | st.from_regex(r"[0-9 .,+eE-]{1,16}[A-Z]{0,3}"))
@settings(max_examples=600)
def test_any_text_is_refused_or_is_the_one_spelling_of_its_value(key: str, text: str) -> None:
    try:
        value = parse(key, text)
    except SchemaError as exc:
        assert (exc.key, str(exc)) == (key, allowed(key))
    else:
        assert spell(key, value) == text


# --- second spellings ----------------------------------------------------------------------

FULL_WIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))
ARABIC = str.maketrans("0123456789", "".join(chr(0x0660 + i) for i in range(10)))


def other_spellings(key: str, value: object, text: str) -> list[str]:
    """Ways a person or a tool might write the same value, none of them the schema's."""
    out = [f" {text}", f"{text} ", f"\t{text}", f"{text}\n", text.upper(), text.title()]
    out += [text.translate(FULL_WIDTH), text.translate(ARABIC), text + "\u200b"]
    kind = KEYS[key].type
    if isinstance(kind, Count):
        assert isinstance(value, int)
        out += [f"0{value}", f"00{value}", f"+{value}", f"{value}.0", f"{value:e}"]
        out += [f"{value:_}", f"{value:,}", f"-{value}" if value else "-0", f"0x{value:x}"]
    elif isinstance(kind, Date):
        assert isinstance(value, datetime.date)
        out += [
            f"{value.year}-{value.month}-{value.day}",
            f"{value:%Y/%m/%d}",
            f"{value:%Y%m%d}",
            f"{value:%d.%m.%Y}",
            f"{value.isoformat()}T00:00",
            f"{value.isoformat()}Z",
            f"+{value.isoformat()}",
        ]
    elif isinstance(kind, Amount):
        assert isinstance(value, Money)
        number, currency = text.split(" ")
        whole = number.partition(".")[0]
        out += [
            f"{number}.00 {currency}" if "." not in number else f"{number}0 {currency}",
            f"{number}.0 {currency}" if "." not in number else f"{number}00 {currency}",
            f"0{number} {currency}",
            f"{number} {currency.lower()}",
            f"{number}{currency}",
            f"{number}  {currency}",
            f"{currency} {number}",
            f"+{number} {currency}",
            f"{int(whole):,}{number[len(whole) :]} {currency}",
            f"{number}. {currency}" if "." not in number else f"{whole}.{currency}",
        ]
    else:
        assert isinstance(kind, Enumeration)
        out += [text.replace("_", "-"), text.replace("_", " "), f"'{text}'"]
    return [o for o in dict.fromkeys(out) if o != text]


@given(key=ALL_KEYS, data=st.data())
@settings(max_examples=300)
def test_no_value_has_a_second_spelling(key: str, data: st.DataObject) -> None:
    value, text = data.draw(values(key))
    for other in other_spellings(key, value, text):
        assert refused(key, other) == allowed(key), other


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("calls", "007"),
        ("calls", "1e3"),
        ("calls", " 5"),
        ("calls", "5 "),
        ("calls", "5.0"),
        ("calls", "+5"),
        ("calls", "-1"),
        ("calls", "1_000"),
        ("calls", "١٢"),
        ("calls", ""),
        ("first_seen", "2026-02-30"),
        ("first_seen", "2025-02-29"),
        ("first_seen", "2026-13-01"),
        ("first_seen", "2026-2-3"),
        ("first_seen", "20260203"),
        ("first_seen", "2026-W05-2"),
        ("amount", "48000.00 CNY"),
        ("amount", "48000.50 CNY"),
        ("amount", "48000. CNY"),
        ("amount", ".5 CNY"),
        ("amount", "0 CNY"),
        ("amount", "0.00 CNY"),
        ("amount", "1.5 JPY"),
        ("amount", "1.234 USD"),
        ("amount", "48000 cny"),
        ("amount", "48000 XBT"),
        ("amount", "48,000 CNY"),
        ("amount", "1000000000000 USD"),
        ("channel", "Voice"),
        ("channel", "fax"),
        ("source", "victim statement"),
    ],
)
def test_examples_of_what_is_refused(key: str, text: str) -> None:
    assert refused(key, text) == allowed(key)


def test_examples_of_what_is_accepted() -> None:
    assert parse("calls", "0") == 0 and parse("calls", "1000000") == 1_000_000
    assert parse("withdrawn_within_hours", "8760") == 8760
    assert refused("withdrawn_within_hours", "8761") == allowed("withdrawn_within_hours")
    assert parse("first_seen", "2024-02-29") == datetime.date(2024, 2, 29)
    assert parse("amount", "48000 CNY") == Money(4_800_000, "CNY")
    assert parse("amount", "0.5 EUR") == Money(50, "EUR")
    assert parse("amount", "0.05 EUR") == Money(5, "EUR")
    assert parse("amount", "1250 JPY") == Money(1250, "JPY")
    assert parse("amount", "999999999999.99 USD") == Money(99_999_999_999_999, "USD")
    assert amount_text(48000, 50, "CNY") == "48000.5 CNY"


# --- wrong types, out of range ---------------------------------------------------------


@given(key=ALL_KEYS, other=ALL_KEYS, data=st.data())
@settings(max_examples=300)
def test_a_value_of_another_type_is_refused(key: str, other: str, data: st.DataObject) -> None:
    mine, theirs = KEYS[key].type, KEYS[other].type
    assume(type(mine) is not type(theirs) or isinstance(mine, Enumeration))
    text = data.draw(values(other))[1]
    if isinstance(mine, Enumeration):
        assume(text not in mine.values)
    elif isinstance(mine, Count) and isinstance(theirs, Count):
        assume(False)
    assert refused(key, text) == allowed(key)


@given(data=st.data())
@settings(max_examples=200)
def test_values_out_of_range_are_refused(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(k for k in KEYS if isinstance(KEYS[k].type, Count))))
    maximum = KEYS[key].type.maximum  # type: ignore[attr-defined]
    assert refused(key, str(data.draw(st.integers(maximum + 1, 10**20)))) == allowed(key)
    year = data.draw(st.integers(1000, 1999) | st.integers(2100, 9999))
    day = datetime.date(year, data.draw(st.integers(1, 12)), data.draw(st.integers(1, 28)))
    assert refused("first_seen", day.isoformat()) == allowed("first_seen")
    currency = data.draw(st.sampled_from(sorted(CURRENCIES)))
    huge = data.draw(st.integers(10**MAX_AMOUNT_DIGITS, 10**30))
    assert refused("amount", f"{huge} {currency}") == allowed("amount")
    if CURRENCIES[currency] == 0:
        assert refused("amount", f"1.{data.draw(st.integers(1, 9))} {currency}")


# --- keys ------------------------------------------------------------------------------


@given(
    key=st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True)
    | st.sampled_from(["caller", "note", "victim_name", "a13800138000", "li_wei"])
    | st.text(max_size=20),
    value=st.text(max_size=20),
)
@settings(max_examples=300)
def test_an_unknown_key_is_refused_and_not_quoted(key: str, value: str) -> None:
    assume(key not in KEYS)
    with pytest.raises(SchemaError) as info:
        Attribute(key, value)
    assert (info.value.key, str(info.value)) == (None, UNKNOWN)


@given(category=st.sampled_from(CATEGORIES), data=st.data())
@settings(max_examples=200)
def test_a_key_of_another_category_is_refused(category: str, data: st.DataObject) -> None:
    foreign = sorted(set(KEYS) - set(CATEGORY_KEYS[category]))
    assume(foreign)
    key = data.draw(st.sampled_from(foreign))
    text = data.draw(values(key))[1]
    expected = f"attribute {key} is not one of the keys of category {category}: " + ", ".join(
        CATEGORY_KEYS[category]
    )
    with pytest.raises(SchemaError) as info:
        report(category, ((key, text),))
    assert (info.value.key, str(info.value)) == (key, expected)
    with pytest.raises(SchemaError, match=f"^{re.escape(expected)}$"):
        attributes_of(category, [(key, text)])


def test_the_schema_is_what_the_issue_asks_for() -> None:
    assert COMMON_KEYS == ("source", "confidence", "first_seen", "last_seen", "channel")
    specific = {c: set(CATEGORY_KEYS[c]) - set(COMMON_KEYS) for c in CATEGORIES}
    assert specific == {
        "fraud_call": {"complaints", "calls", "victims"},
        "money_mule": {"amount", "transfers", "withdrawn_within_hours"},
        "phishing": {"lure", "messages"},
        "sim_swap": {"sims_seen", "swap_channel"},
        "account_takeover": {"method"},
        "scam_transfer": {"amount", "transfers", "scam_type"},
        "suspicious_device": {"sims_seen", "accounts_seen"},
        "other": set(),
    }
    for category in CATEGORIES:
        assert list(CATEGORY_KEYS[category]) == sorted(CATEGORY_KEYS[category])
        assert len(describe(category)) == len(CATEGORY_KEYS[category])
        schema = json_schema(category)
        assert schema["additionalProperties"] is False
        assert list(schema["properties"]) == list(CATEGORY_KEYS[category])


def test_rules_between_keys_and_repeated_keys() -> None:
    with pytest.raises(SchemaError, match=r"^attribute first_seen is after last_seen$"):
        report("other", (("first_seen", "2026-03-02"), ("last_seen", "2026-03-01")))
    report("other", (("first_seen", "2026-03-01"), ("last_seen", "2026-03-01")))
    with pytest.raises(SchemaError, match=r"^attribute calls is given twice$"):
        attributes_of("fraud_call", [("calls", "1"), ("calls", "2")])
    with pytest.raises(SchemaError, match=r"^an attribute key outside the schema is given twice$"):
        attributes_of("fraud_call", [("note", "1"), ("note", "2")])
    with pytest.raises(ValueError, match="unique and sorted"):
        report("fraud_call", (("calls", "1"), ("calls", "1")))


# --- on the ledger ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "key", "value", "expected"),
    [
        ("fraud_call", "calls", "139 8765 4321", allowed("calls")),
        ("fraud_call", "victims", "Li Wei of 12 Xinhua Rd", allowed("victims")),
        ("money_mule", "amount", "48000 CNY to 6222021234567890", allowed("amount")),
        ("fraud_call", "note", "Caller 139.8765.4321 and Li Wei of 12 Xinhua Rd", UNKNOWN),
        ("fraud_call", "caller_region", "Shanghai", UNKNOWN),
        ("phishing", "first_seen", "2026-02-30", allowed("first_seen")),
    ],
)
def test_a_hand_built_report_with_free_text_is_refused(
    category: str, key: str, value: str, expected: str
) -> None:
    """Bytes a member's own tool could write, past every constructor: the codec refuses
    the body, naming the attribute and what is allowed, never quoting the value."""
    wire = to_wire(report(category, (("confidence", "low"),)))
    wire[2] = [[key, value]]
    tx = sign_tx(BANK, CHAIN, "bank", "report", pack(wire), 1, NOW)
    with pytest.raises(TxRejected) as info:
        validate_tx(encode_tx(tx), context())
    assert info.value.code == "bad_body"
    assert info.value.message == f"report body: Report.attributes[0]: {expected}"
    for word in value.split():
        assert word not in info.value.message.replace(expected, "")
