"""One canonical written form per identifier, so every member derives the same pseudonym.

Two members only find each other's reports if they normalise an identifier to the
same string before keying it, so each rule here is part of the consortium protocol:
changing one silently splits the ledger's entity index in two. Rules are strict
(reject rather than guess) because a wrong guess links unrelated people, and every
canonical form normalises to itself, so a stored value can always be re-checked.

Decisions worth knowing:

* phone: E.164 through ``phonenumbers`` (its metadata decides validity, so all members
  should pin one version). Letters are refused, not mapped to keypad digits: "O" for
  "0" is a typo far more often than a vanity number.
* account: an IBAN (mod-97, registry length, check digits 02..98) in compact upper
  case, or a domestic account of 8 to 34 digits. No bank-code prefix: reporters outside
  banks (telecoms, police) usually know only the number, and UnionPay card numbers
  carry their issuer in the BIN already; a prefix nobody can fill in consistently would
  split one account into several pseudonyms.
* device: a 15-digit IMEI (Luhn-checked); a 16-digit IMEISV, as core networks log it,
  becomes the IMEI of the same handset. Or a MAC address as ``aa:bb:cc:dd:ee:ff``.
  All-zero and broadcast values are refused: they would join unrelated devices.
* email: trimmed and lower-cased whole; unquoted ASCII local part; domain as below.
  Provider tricks (Gmail dots, "+tags") are kept, as they are not universal.
* domain: the host of a URL or a bare host name, IDNA 2008 / UTS 46 as browsers use
  it, lower-case A-labels, no trailing dot. Paths are dropped: phishing kits vary them
  per victim, and the host is what links the reports.
* person_id: upper-case alphanumerics. A Chinese resident ID (18 characters) must
  carry a valid ISO 7064 check digit and birth date; a first-generation 15-digit ID is
  upgraded to its 18-character form so both spellings meet.
* wallet: trimmed, case preserved, except where the address format says case carries
  no meaning (0x-hex EVM addresses, bech32): those are lower-cased, because otherwise
  one address would get two pseudonyms.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

import idna
import phonenumbers

MAX_RAW_CHARS = 256


class EntityType(enum.StrEnum):
    # The values are part of the pseudonym personalisation (at most 12 bytes each).
    PHONE = "phone"
    ACCOUNT = "account"
    DEVICE = "device"
    EMAIL = "email"
    IP = "ip"
    PERSON_ID = "person_id"
    WALLET = "wallet"
    DOMAIN = "domain"


class NormalizationError(ValueError):
    """An input that is not a well-formed identifier of the stated type."""


def as_entity_type(value: EntityType | str) -> EntityType:
    try:
        return EntityType(value)
    except ValueError:
        raise NormalizationError(f"unknown entity type {value!r}") from None


def normalize(entity_type: EntityType | str, raw: str, default_region: str = "CN") -> str:
    """The canonical form of ``raw``; raises ``NormalizationError`` saying why not.

    ``default_region`` (ISO 3166 alpha-2) only matters for phone numbers written
    without a country code.
    """
    et = as_entity_type(entity_type)
    if not isinstance(raw, str):
        raise NormalizationError(f"{et}: expected a string, got {type(raw).__name__}")
    if len(raw) > MAX_RAW_CHARS:
        raise NormalizationError(f"{et}: input of {len(raw)} characters is too long")
    # NFKC folds full-width digits and letters, common in Chinese input methods.
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise NormalizationError(f"{et}: empty value")
    if et is EntityType.PHONE:
        return _phone(text, raw, default_region)
    return _NORMALIZERS[et](text, raw)


def _fail(et: EntityType, raw: str, why: str) -> NormalizationError:
    shown = raw if len(raw) <= 64 else raw[:61] + "..."
    return NormalizationError(f"{et}: {shown!r} {why}")


# --- phone -------------------------------------------------------------------------

_PHONE_CHARS = re.compile(r"(?:tel:)?[0-9+\-(). /]+", re.IGNORECASE)


def _phone(text: str, raw: str, region: str) -> str:
    et = EntityType.PHONE
    if not _PHONE_CHARS.fullmatch(text):
        raise _fail(et, raw, "is not a valid phone number")
    try:
        number = phonenumbers.parse(text, region.upper())
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise _fail(
                et, raw, f"is not a valid phone number (no country code for region {region!r})"
            ) from None
        raise _fail(et, raw, "is not a valid phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise _fail(et, raw, "is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- account -----------------------------------------------------------------------

# SWIFT IBAN registry lengths. Countries missing here are accepted on mod-97 and the
# generic 15..34 length, so a newly joined country does not lock out its accounts.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_DOMESTIC = re.compile(r"[0-9]{8,34}")


def iban_is_valid(compact: str) -> bool:
    """Whether an upper-case IBAN without separators passes length and mod-97."""
    if not _IBAN_SHAPE.fullmatch(compact):
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    # 00, 01 and 99 pass mod-97 exactly when 97, 98 and 02 do; only 02..98 are issued,
    # so refusing the others keeps one spelling per account.
    if not 2 <= int(compact[2:4]) <= 98:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _account(text: str, raw: str) -> str:
    et = EntityType.ACCOUNT
    compact = re.sub(r"[\s\-]", "", text).upper()
    if re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]*", compact):
        if not iban_is_valid(compact):
            raise _fail(et, raw, "is not a valid IBAN")
        return compact
    if _DOMESTIC.fullmatch(compact):
        return compact
    raise _fail(et, raw, "is neither an IBAN nor a domestic account number of 8 to 34 digits")


# --- device ------------------------------------------------------------------------


def luhn_digit(payload: str) -> str:
    """The Luhn check digit that completes ``payload`` (ASCII digits)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _device(text: str, raw: str) -> str:
    et = EntityType.DEVICE
    digits = re.sub(r"[\s\-/]", "", text)
    if re.fullmatch(r"[0-9]{15}", digits):
        if luhn_digit(digits[:14]) != digits[14]:
            raise _fail(et, raw, "is not a valid IMEI (check digit mismatch)")
        imei = digits
    elif re.fullmatch(r"[0-9]{16}", digits):
        # IMEISV = TAC + serial + software version: the handset is TAC + serial.
        imei = digits[:14] + luhn_digit(digits[:14])
    else:
        hexdigits = re.sub(r"[\s:\-.]", "", text).lower()
        if not re.fullmatch(r"[0-9a-f]{12}", hexdigits):
            raise _fail(et, raw, "is neither an IMEI nor a MAC address")
        if hexdigits in ("000000000000", "ffffffffffff"):
            raise _fail(et, raw, "is a placeholder MAC address, not a device")
        return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))
    if imei[:14] == "0" * 14:
        raise _fail(et, raw, "is a placeholder IMEI, not a device")
    return imei


# --- domain and email --------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_\-]*[a-z0-9_])?")


def _hostname(host: str) -> str | None:
    """Canonical A-label form of a host name, or None if it is not one."""
    host = host.rstrip(".")
    if not host:
        return None
    try:
        # std3_rules off: browsers resolve underscores in subdomains, and so do kits.
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        labels = []
        for label in mapped.split("."):
            if not label.isascii():
                label = idna.alabel(label).decode("ascii")
            elif label.startswith("xn--") and idna.alabel(idna.ulabel(label)) != label.encode():
                return None
            labels.append(label)
    except (idna.IDNAError, UnicodeError):
        return None
    if len(labels) < 2 or any(len(x) > 63 or not _LABEL.fullmatch(x) for x in labels):
        return None
    tld = labels[-1]
    if tld.isdigit() or "_" in tld:
        return None
    name = ".".join(labels)
    return name if len(name) <= 253 else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _domain(text: str, raw: str) -> str:
    et = EntityType.DOMAIN
    try:
        parts = urlsplit(text if "://" in text else "//" + text)
        host = parts.hostname
    except ValueError:
        host = None
    if not host or re.search(r"\s", text):
        raise _fail(et, raw, "is not a valid domain name or URL")
    if _is_ip(host):
        raise _fail(et, raw, "is an IP address; use the ip entity type")
    name = _hostname(host)
    if name is None:
        raise _fail(et, raw, "is not a valid domain name or URL")
    return name


_LOCAL_PART = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~\-]+)*")


def _email(text: str, raw: str) -> str:
    et = EntityType.EMAIL
    if text[:7].lower() == "mailto:":
        text = text[7:]
    local, at, domain = text.lower().rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or len(local) > 64:
        raise _fail(et, raw, "is not a valid email address")
    if _is_ip(domain) or (name := _hostname(domain)) is None:
        raise _fail(et, raw, "is not a valid email address (bad domain)")
    address = f"{local}@{name}"
    if len(address) > 254:
        raise _fail(et, raw, "is not a valid email address (too long)")
    return address


# --- ip ------------------------------------------------------------------------------


def _ip(text: str, raw: str) -> str:
    et = EntityType.IP
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        raise _fail(et, raw, "has a zone index, which names no host outside one link")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise _fail(et, raw, "is not a valid IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:a.b.c.d is how dual-stack servers log an IPv4 client.
        return str(address.ipv4_mapped)
    return str(address)


# --- person_id ---------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def resident_id_check(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a Chinese resident ID (GB 11643)."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def _valid_birth_date(yyyymmdd: str) -> bool:
    try:
        born = datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return born.year >= 1850


def _person_id(text: str, raw: str) -> str:
    et = EntityType.PERSON_ID
    compact = re.sub(r"[\s\-()]", "", text).upper()
    if re.fullmatch(r"[0-9]{17}[0-9X]", compact):
        if not _valid_birth_date(compact[6:14]):
            raise _fail(et, raw, "is not a valid resident ID (bad birth date)")
        if resident_id_check(compact[:17]) != compact[17]:
            raise _fail(et, raw, "is not a valid resident ID (check digit mismatch)")
        return compact
    if re.fullmatch(r"[0-9]{15}", compact):
        # First-generation IDs: two-digit year (all 19xx), no check digit.
        first17 = compact[:6] + "19" + compact[6:]
        if not _valid_birth_date(first17[6:14]):
            raise _fail(et, raw, "is not a valid resident ID (bad birth date)")
        return first17 + resident_id_check(first17)
    if re.fullmatch(r"[0-9]{16,17}", compact):
        raise _fail(et, raw, "is not a valid resident ID (wrong length)")
    if not re.fullmatch(r"[A-Z0-9]{5,32}", compact):
        raise _fail(et, raw, "is not a valid identity document number")
    return compact


# --- wallet ------------------------------------------------------------------------

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_HRPS = ("bc", "tb", "bcrt", "ltc", "tltc")


def _bech32_valid(address: str) -> bool:
    hrp, _, data = address.rpartition("1")
    if hrp not in _BECH32_HRPS or len(data) < 6 or any(c not in _BECH32_CHARSET for c in data):
        return False
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    values += [_BECH32_CHARSET.index(c) for c in data]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            if (top >> i) & 1:
                chk ^= gen
    return chk in (1, 0x2BC830A3)  # bech32 (BIP 173) or bech32m (BIP 350)


def _wallet(text: str, raw: str) -> str:
    et = EntityType.WALLET
    if not re.fullmatch(r"[A-Za-z0-9]{20,128}", text):
        raise _fail(et, raw, "is not a valid wallet address (20 to 128 letters and digits)")
    if re.fullmatch(r"0[xX][0-9a-fA-F]{40}", text):
        return text.lower()
    lowered = text.lower()
    if lowered.split("1", 1)[0] in _BECH32_HRPS and _bech32_valid(lowered):
        if text != lowered and text != text.upper():
            raise _fail(et, raw, "is not a valid bech32 address (mixed case)")
        return lowered
    return text


_NORMALIZERS = {
    EntityType.ACCOUNT: _account,
    EntityType.DEVICE: _device,
    EntityType.EMAIL: _email,
    EntityType.IP: _ip,
    EntityType.PERSON_ID: _person_id,
    EntityType.WALLET: _wallet,
    EntityType.DOMAIN: _domain,
}
