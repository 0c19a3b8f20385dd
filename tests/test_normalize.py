"""Normalisation: one canonical form per identifier, whatever way it was written."""

from __future__ import annotations

import datetime
import ipaddress

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from node.identifiers.normalize import (
    IBAN_LENGTHS,
    EntityType,
    NormalizationError,
    iban_is_valid,
    luhn_digit,
    normalize,
    resident_id_check,
)

# --- fixed examples ------------------------------------------------------------------

# Chinese input methods often produce full-width digits.
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))

VALID = [
    ("phone", "+86 138 0013 8000", "+8613800138000"),
    ("phone", "13800138000", "+8613800138000"),
    ("phone", "0086 138-0013-8000", "+8613800138000"),
    ("phone", "tel:+86-138-0013-8000", "+8613800138000"),
    ("phone", "13800138000".translate(FULLWIDTH), "+8613800138000"),
    ("phone", "(010) 6552 9988", "+861065529988"),
    ("phone", "+44 20 7946 0018", "+442079460018"),
    ("account", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
    ("account", "gb29-nwbk-6016-1331-9268-19", "GB29NWBK60161331926819"),
    ("account", "6222 0212 3456 7890", "6222021234567890"),
    ("account", "12345678", "12345678"),
    ("device", "35-209900-176148-1", "352099001761481"),
    ("device", "3520990017614823", "352099001761481"),
    ("device", "00:1A:2B:3C:4D:5E", "00:1a:2b:3c:4d:5e"),
    ("device", "00-1a-2b-3c-4d-5e", "00:1a:2b:3c:4d:5e"),
    ("device", "001a.2b3c.4d5e", "00:1a:2b:3c:4d:5e"),
    ("email", "  John.Doe@Example.COM ", "john.doe@example.com"),
    ("email", "mailto:a+tag@例子.中国", "a+tag@xn--fsqu00a.xn--fiqs8s"),
    ("ip", "::FFFF:192.0.2.1", "192.0.2.1"),
    ("ip", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("ip", "[2001:db8::1]", "2001:db8::1"),
    ("ip", " 192.0.2.1 ", "192.0.2.1"),
    ("person_id", "11010519491231002x", "11010519491231002X"),
    ("person_id", "110105 19491231 002X", "11010519491231002X"),
    ("person_id", "110105491231002", "11010519491231002X"),
    ("person_id", "e1234 5678", "E12345678"),
    ("person_id", "A123456(7)", "A1234567"),
    ("wallet", " 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa ", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
    (
        "wallet",
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x52908400098527886e0f7030069857d2e4169ee7",
    ),
    (
        "wallet",
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
    ),
    ("domain", "Example.COM.", "example.com"),
    ("domain", "https://user@Bücher.DE:8080/login?x=1#y", "xn--bcher-kva.de"),
    ("domain", "例子。中国", "xn--fsqu00a.xn--fiqs8s"),
    ("domain", "login_secure.bank.example", "login_secure.bank.example"),
    ("domain", "faß.de", "xn--fa-hia.de"),
]


@pytest.mark.parametrize(("kind", "raw", "expected"), VALID)
def test_valid_examples(kind: str, raw: str, expected: str) -> None:
    assert normalize(kind, raw) == expected
    assert normalize(kind, expected) == expected


INVALID = [
    ("phone", "12ab", "phone: '12ab' is not a valid phone number"),
    ("phone", "13800138OOO", "is not a valid phone number"),
    ("phone", "138", "is not a valid phone number"),
    ("phone", "+86 138 0013 8000 ext 12", "is not a valid phone number"),
    ("account", "DE89 3704 0044 0532 0130 01", "is not a valid IBAN"),
    ("account", "DE99370400440532013000", "is not a valid IBAN"),
    ("account", "1234567", "neither an IBAN nor a domestic account number of 8 to 34 digits"),
    ("account", "ACCT-1234-5678", "neither an IBAN nor a domestic account"),
    ("device", "352099001761482", "is not a valid IMEI (check digit mismatch)"),
    ("device", "000000000000000", "is a placeholder IMEI"),
    ("device", "FF:FF:FF:FF:FF:FF", "is a placeholder MAC address"),
    ("device", "00:1A:2B:3C:4D", "is neither an IMEI nor a MAC address"),
    ("email", "no-at-sign.example.com", "is not a valid email address"),
    ("email", "a..b@example.com", "is not a valid email address"),
    ("email", "a@localhost", "bad domain"),
    ("email", "a@192.0.2.1", "bad domain"),
    ("ip", "01.2.3.4", "is not a valid IP address"),
    ("ip", "fe80::1%eth0", "has a zone index"),
    ("person_id", "110105194912310021", "check digit mismatch"),
    ("person_id", "110105194902300025", "bad birth date"),
    ("person_id", "1101051949123100", "wrong length"),
    ("person_id", "AB#12345", "is not a valid identity document number"),
    ("wallet", "short", "is not a valid wallet address"),
    ("wallet", "bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "mixed case"),
    ("domain", "localhost", "is not a valid domain name or URL"),
    ("domain", "192.0.2.1", "is an IP address; use the ip entity type"),
    ("domain", "xn--zz.com", "is not a valid domain name or URL"),
    ("domain", "-bad-.com", "is not a valid domain name or URL"),
]


@pytest.mark.parametrize(("kind", "raw", "message"), INVALID)
def test_invalid_examples(kind: str, raw: str, message: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize(kind, raw)
    assert message in str(info.value)
    assert str(info.value).startswith(f"{kind}: ")


def test_error_messages() -> None:
    with pytest.raises(NormalizationError, match=r"^unknown entity type 'colour'$"):
        normalize("colour", "red")
    with pytest.raises(NormalizationError, match=r"^email: empty value$"):
        normalize("email", "   ")
    with pytest.raises(NormalizationError, match=r"too long"):
        normalize("wallet", "a" * 300)
    with pytest.raises(NormalizationError, match=r"no country code for region 'ZZ'"):
        normalize("phone", "13800138000", default_region="ZZ")


def test_phone_region_only_matters_without_country_code() -> None:
    assert normalize("phone", "+8613800138000", default_region="US") == "+8613800138000"
    assert normalize("phone", "(202) 555-0143", default_region="US") == "+12025550143"


def test_check_digit_helpers() -> None:
    assert luhn_digit("35209900176148") == "1"
    assert resident_id_check("11010519491231002") == "X"
    assert iban_is_valid("GB29NWBK60161331926819")
    assert not iban_is_valid("GB29NWBK6016133192681")


# --- generated identifiers, many spellings -------------------------------------------

REGIONS = ["CN", "US", "GB", "DE", "FR", "JP", "HK", "IN", "BR", "AU", "RU", "NG"]
PHONE_TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]


def separated(s: str, seps: str = " -") -> st.SearchStrategy[str]:
    """``s`` with separators sprinkled between its characters."""
    return st.lists(st.sampled_from(["", "", "", *seps]), min_size=len(s), max_size=len(s)).map(
        lambda gaps: "".join(c + g for c, g in zip(s, gaps, strict=True)).strip(seps)
    )


@st.composite
def phone_forms(draw: st.DrawFn) -> tuple[str, list[str]]:
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(PHONE_TYPES)))
    assume(example is not None)
    assert example is not None
    nsn = phonenumbers.national_significant_number(example)
    tail = draw(st.text("0123456789", min_size=3, max_size=3))
    number = phonenumbers.parse(f"+{example.country_code}{nsn[:-3]}{tail}")
    assume(phonenumbers.is_valid_number(number))
    fmt = phonenumbers.PhoneNumberFormat
    e164 = phonenumbers.format_number(number, fmt.E164)
    forms = [phonenumbers.format_number(number, f) for f in (fmt.INTERNATIONAL, fmt.RFC3966)]
    forms.append(phonenumbers.format_number(number, fmt.NATIONAL))
    forms.append("+" + draw(separated(e164[1:])))
    return region, [e164, *forms]


@given(phone_forms())
@settings(max_examples=80)
def test_phone_forms_agree(case: tuple[str, list[str]]) -> None:
    region, forms = case
    results = {normalize("phone", f, default_region=region) for f in forms}
    assert results == {forms[0]}


def iban_with_check(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


@st.composite
def account_forms(draw: st.DrawFn) -> list[str]:
    if draw(st.booleans()):
        country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        size = IBAN_LENGTHS[country] - 4
        iban = iban_with_check(country, draw(st.text(alphabet, min_size=size, max_size=size)))
        grouped = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        return [iban, grouped, grouped.lower(), iban.lower(), draw(separated(iban))]
    number = draw(st.text("0123456789", min_size=8, max_size=34))
    return [number, draw(separated(number)), f"  {number}\t"]


@st.composite
def device_forms(draw: st.DrawFn) -> list[str]:
    if draw(st.booleans()):
        body = draw(st.text("0123456789", min_size=14, max_size=14).filter(lambda s: s != "0" * 14))
        imei = body + luhn_digit(body)
        svn = draw(st.text("0123456789", min_size=2, max_size=2))
        dashed = f"{imei[:2]}-{imei[2:8]}-{imei[8:14]}-{imei[14]}"
        return [imei, dashed, body + svn, draw(separated(imei, " -/"))]
    raw = draw(st.binary(min_size=6, max_size=6).filter(lambda b: b not in (bytes(6), b"\xff" * 6)))
    h = raw.hex()
    pairs = [h[i : i + 2] for i in range(0, 12, 2)]
    return [
        ":".join(pairs),
        ":".join(pairs).upper(),
        "-".join(pairs).upper(),
        ".".join(h[i : i + 4] for i in range(0, 12, 4)),
        h.upper(),
    ]


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s[2:4] != "--"
)
TLD = st.from_regex(r"[a-z]{2,6}", fullmatch=True)
UNICODE_HOSTS = st.sampled_from(["bücher.de", "例子.中国", "пример.рф", "ελληνικά.gr", "faß.de"])
HOSTS = st.one_of(
    st.builds(lambda ls, t: ".".join([*ls, t]), st.lists(LABEL, min_size=1, max_size=3), TLD),
    UNICODE_HOSTS,
)


def mixed_case(s: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(s), max_size=len(s))
    return flips.map(
        lambda fs: "".join(
            c.upper() if f and c.isascii() else c for c, f in zip(s, fs, strict=True)
        )
    )


@st.composite
def domain_forms(draw: st.DrawFn) -> list[str]:
    host = draw(HOSTS)
    return [
        host,
        draw(mixed_case(host)),
        host + ".",
        f"https://{host}/login?next=/x",
        f"http://user@{draw(mixed_case(host))}:8080/",
        host.replace(".", "。"),
    ]


LOCAL = st.from_regex(r"[a-z0-9]([a-z0-9_+-]|\.(?!\.)){0,20}", fullmatch=True).filter(
    lambda s: not s.endswith(".")
)


@st.composite
def email_forms(draw: st.DrawFn) -> list[str]:
    address = f"{draw(LOCAL)}@{draw(HOSTS)}"
    return [address, draw(mixed_case(address)), f"  {address} ", f"mailto:{address}"]


@st.composite
def ip_forms(draw: st.DrawFn) -> list[str]:
    address = draw(st.ip_addresses())
    forms = [str(address), address.exploded, f" {address} "]
    if isinstance(address, ipaddress.IPv4Address):
        forms.append(f"::ffff:{address}")
    else:
        forms += [address.exploded.upper(), f"[{address}]"]
    return forms


@st.composite
def person_id_forms(draw: st.DrawFn) -> list[str]:
    if draw(st.booleans()):
        text = draw(st.from_regex(r"[A-Z][A-Z0-9]{4,20}", fullmatch=True))
        return [text, text.lower(), " ".join(text), f"{text[:3]}-{text[3:]}"]
    area = draw(st.from_regex(r"[1-8][0-9]{5}", fullmatch=True))
    born = draw(
        st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2099, 12, 31))
    )
    seq = draw(st.from_regex(r"[0-9]{3}", fullmatch=True))
    first17 = f"{area}{born:%Y%m%d}{seq}"
    full = first17 + resident_id_check(first17)
    forms = [full, full.lower(), f"{full[:6]} {full[6:14]} {full[14:]}"]
    if 1900 <= born.year <= 1999:
        forms.append(f"{area}{born:%y%m%d}{seq}")
    return forms


BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_encode(hrp: str, data: list[int]) -> str:
    def polymod(values: list[int]) -> int:
        gens = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
        chk = 1
        for v in values:
            top = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i, g in enumerate(gens):
                chk ^= g if (top >> i) & 1 else 0
        return chk

    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = polymod([*expanded, *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32[d] for d in data + checksum)


@st.composite
def wallet_forms(draw: st.DrawFn) -> list[str]:
    choice = draw(st.sampled_from(["evm", "bech32", "base58"]))
    if choice == "evm":
        h = draw(st.text("0123456789abcdef", min_size=40, max_size=40))
        return ["0x" + h, "0x" + draw(mixed_case(h)), "0X" + h.upper()]
    if choice == "bech32":
        data = draw(st.lists(st.integers(0, 31), min_size=20, max_size=60))
        address = bech32_encode(draw(st.sampled_from(["bc", "tb", "ltc"])), data)
        return [address, address.upper(), f" {address}\n"]
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    address = draw(st.text(alphabet, min_size=26, max_size=44))
    return [address, f"\t{address} "]


FORMS = {
    EntityType.ACCOUNT: account_forms(),
    EntityType.DEVICE: device_forms(),
    EntityType.EMAIL: email_forms(),
    EntityType.IP: ip_forms(),
    EntityType.PERSON_ID: person_id_forms(),
    EntityType.WALLET: wallet_forms(),
    EntityType.DOMAIN: domain_forms(),
}


@pytest.mark.parametrize("kind", sorted(FORMS))
@settings(max_examples=60)
@given(data=st.data())
def test_forms_agree_and_are_idempotent(kind: EntityType, data: st.DataObject) -> None:
    forms = data.draw(FORMS[kind])
    canonical = normalize(kind, forms[0])
    assert normalize(kind, canonical) == canonical
    for form in forms[1:]:
        assert normalize(kind, form) == canonical, form


def test_every_type_has_generated_forms() -> None:
    assert set(FORMS) | {EntityType.PHONE} == set(EntityType)


IDENTIFIERISH = st.text(
    st.sampled_from("0123456789abcdefxABCDEFX+-.:@/ ()[]_%例子。ß\u00a0\uff11"), max_size=40
)


@pytest.mark.parametrize("kind", list(EntityType))
@settings(max_examples=100)
@given(raw=st.one_of(st.text(max_size=60), IDENTIFIERISH))
def test_arbitrary_text_normalises_idempotently_or_fails_cleanly(
    kind: EntityType, raw: str
) -> None:
    try:
        value = normalize(kind, raw)
    except NormalizationError:
        return
    assert normalize(kind, value) == value
