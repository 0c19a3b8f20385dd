"""Report attributes: typed fields from a closed schema per category, never free text.

A report says what its member observed about one entity: a category (``CATEGORIES``)
and a few attributes. Free text on the ledger is where identifiers leak ("victim Li Wei
of 12 Xinhua Rd" defeats any screen for digits), so an attribute is not a key/value
note: its key comes from the schema below, the category decides which keys it may
carry, and the key decides the value's type. Free text belongs in the private details
(``node.details.records``), which never go on the ledger.

Keys every category may carry (``COMMON_KEYS``):

============  ============  ===========================================================
key           type          meaning
============  ============  ===========================================================
source        enumeration   how the member learnt it: victim_statement,
                            customer_complaint, internal_monitoring, law_enforcement,
                            partner_alert, automated_detection
confidence    enumeration   low, medium, high
first_seen    date          first observation
last_seen     date          last observation (not before first_seen)
channel       enumeration   voice, sms, app, web, branch, atm, email
============  ============  ===========================================================

and per category (``CATEGORY_KEYS``; ``other`` takes the common keys only):

=================  ===================================================================
category           further keys
=================  ===================================================================
fraud_call         complaints, calls, victims (counts)
money_mule         amount, transfers (count), withdrawn_within_hours (hours)
phishing           lure (enumeration), messages (count)
sim_swap           sims_seen (count), swap_channel (enumeration)
account_takeover   method (enumeration)
scam_transfer      amount, transfers (count), scam_type (enumeration)
suspicious_device  sims_seen, accounts_seen (counts)
=================  ===================================================================

A key means the same and has the same type in every category that takes it.

Types, each with exactly one spelling per value (``spell(parse(text)) == text`` for
every accepted text, and nothing else is accepted):

- **enumeration**: one of a closed list of lower-case tokens.
- **count**: a whole number from 0 to ``MAX_COUNT``, in ASCII digits, no sign, no
  spaces, no leading zeros ("0", "7", "1200"; not "007", "+7", " 7", "1e3", "7.0").
- **hours**: a count of hours, 0 to ``MAX_HOURS`` (a year).
- **date**: ``YYYY-MM-DD``, a real calendar date from ``MIN_DATE`` to ``MAX_DATE``
  (not "2026-02-30", "2026-2-3", "20260203").
- **amount**: a decimal and an ISO 4217 currency code from ``CURRENCIES``, one space
  apart ("48000 CNY", "1250.5 USD", "0.99 EUR"): more than 0, at most
  ``MAX_AMOUNT_DIGITS`` digits before the point, at most as many after it as the
  currency has minor digits (2, or 0 for JPY, KRW and VND), no trailing zeros after
  the point and no point without digits after it ("48000.00 CNY" is "48000 CNY").

On the ledger an attribute stays ``Attribute(key, value)``, two strings, with the value
in its one canonical spelling: ``Attribute.__post_init__`` checks the value against its
key's type and ``Report.__post_init__`` the keys against the category, so the codec
refuses a body that breaks the schema (``bad_body``), a value can only be what the
schema allows, and it is spelt one way, so equal reports encode and hash equally. Why
not a typed encoding (an integer for a count, a pair for an amount): the wire codec
knows no unions but ``X | None``, so a typed value would be a record of four optional
fields with exactly one set, which is more bytes and one more invariant for the same
information; the schema has to be checked on decoding either way (a count's bound, a
real date, a known currency), and with strings the body, the trace answers'
``{key: value}`` objects and the command line's ``--attr KEY=VALUE`` write a value the
same way.

Refusals name the key and say what is allowed; they never quote the value, and never a
key that is not in the schema (it could be anything, an identifier included).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_COUNT = 1_000_000
MAX_HOURS = 8_760
MIN_DATE = datetime.date(2000, 1, 1)
MAX_DATE = datetime.date(2099, 12, 31)
MAX_AMOUNT_DIGITS = 12
# ISO 4217 codes the consortium's members deal in, with their minor digits.
CURRENCIES: Mapping[str, int] = {
    "AED": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "IDR": 2,
    "INR": 2,
    "JPY": 0,
    "KRW": 0,
    "MOP": 2,
    "MYR": 2,
    "PHP": 2,
    "RUB": 2,
    "SGD": 2,
    "THB": 2,
    "TWD": 2,
    "USD": 2,
    "VND": 0,
}

_COUNT = re.compile(r"0|[1-9][0-9]*")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_AMOUNT = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))? ([A-Z]{3})")
_TOKEN = re.compile(r"[a-z][a-z0-9_]*")


class SchemaError(ValueError):
    """An attribute the schema refuses. ``key`` is the schema key it concerns (None for
    a key outside the schema); the message never holds the value."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Money:
    """An amount in the currency's minor units (cents for CNY, yen for JPY)."""

    minor: int
    currency: str


Value = str | int | datetime.date | Money


# ------------------------------------------------------------------ value types


class ValueType:
    """How values of one type are read and written; ``allowed`` says it for a person."""

    name = ""

    def parse(self, text: str) -> Value | None:
        """The value ``text`` spells, or None if it spells none (canonically or not)."""
        raise NotImplementedError

    def spell(self, value: Any) -> str:
        raise NotImplementedError

    def allowed(self) -> str:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Enumeration(ValueType):
    values: tuple[str, ...]
    name = "enumeration"

    def __post_init__(self) -> None:
        assert self.values and all(_TOKEN.fullmatch(v) for v in self.values)
        assert len(set(self.values)) == len(self.values)

    def parse(self, text: str) -> Value | None:
        return text if text in self.values else None

    def spell(self, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError("an enumeration's value is a string")
        return value

    def allowed(self) -> str:
        return f"one of {', '.join(self.values)}"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


@dataclass(frozen=True)
class Count(ValueType):
    maximum: int
    unit: str = ""
    name = "count"

    def parse(self, text: str) -> Value | None:
        # ASCII digits only (re's [0-9] is not \d), and short: int() of a huge numeral
        # costs time, and one past the maximum's length is already out of range.
        if len(text) > len(str(self.maximum)) or not _COUNT.fullmatch(text):
            return None
        number = int(text)
        return number if number <= self.maximum else None

    def spell(self, value: Any) -> str:
        if type(value) is not int:
            raise TypeError("a count is an int")
        return str(value)

    def allowed(self) -> str:
        of = f" of {self.unit}" if self.unit else ""
        return (
            f"a whole number{of} from 0 to {self.maximum}, in ASCII digits without sign, "
            "spaces or leading zeros"
        )

    def json_schema(self) -> dict[str, Any]:
        digits = len(str(self.maximum))
        return {
            "type": "string",
            "pattern": f"^(0|[1-9][0-9]{{0,{digits - 1}}})$",
            "description": f"a count{f' of {self.unit}' if self.unit else ''}, 0 to "
            f"{self.maximum}, as a decimal string",
        }


@dataclass(frozen=True)
class Date(ValueType):
    name = "date"

    def parse(self, text: str) -> Value | None:
        match = _DATE.fullmatch(text)
        if match is None:
            return None
        try:
            day = datetime.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return None  # 2026-02-30
        return day if MIN_DATE <= day <= MAX_DATE else None

    def spell(self, value: Any) -> str:
        if type(value) is not datetime.date:
            raise TypeError("a date is a datetime.date")
        return value.isoformat()

    def allowed(self) -> str:
        return f"a real date from {MIN_DATE} to {MAX_DATE}, written YYYY-MM-DD"

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            "description": f"a date, YYYY-MM-DD, {MIN_DATE} to {MAX_DATE}",
        }


@dataclass(frozen=True)
class Amount(ValueType):
    name = "amount"

    def parse(self, text: str) -> Value | None:
        if len(text) > MAX_AMOUNT_DIGITS + 7:  # digits, point, 2 decimals, space, code
            return None
        match = _AMOUNT.fullmatch(text)
        if match is None:
            return None
        whole, fraction, currency = match[1], match[2] or "", match[3]
        digits = CURRENCIES.get(currency)
        if digits is None or len(whole) > MAX_AMOUNT_DIGITS or len(fraction) > digits:
            return None
        minor = int(whole) * 10**digits + int(fraction.ljust(digits, "0") or "0")
        return Money(minor, currency) if minor > 0 else None

    def spell(self, value: Any) -> str:
        if not isinstance(value, Money) or type(value.minor) is not int:
            raise TypeError("an amount is a Money")
        digits = CURRENCIES[value.currency]
        whole, fraction = divmod(value.minor, 10**digits)
        text = str(whole)
        if fraction:
            text += "." + f"{fraction:0{digits}d}".rstrip("0")
        return f"{text} {value.currency}"

    def allowed(self) -> str:
        none = ", ".join(c for c, d in CURRENCIES.items() if d == 0)
        return (
            "an amount above 0 and a currency, one space apart (48000 CNY, 1250.5 USD): at "
            f"most {MAX_AMOUNT_DIGITS} digits before the point, at most 2 after it (none "
            f"for {none}) and no trailing zeros after it; the currency one of "
            f"{', '.join(CURRENCIES)}"
        )

    def json_schema(self) -> dict[str, Any]:
        codes = "|".join(CURRENCIES)
        return {
            "type": "string",
            "pattern": (
                f"^(0|[1-9][0-9]{{0,{MAX_AMOUNT_DIGITS - 1}}})(\\.[0-9]{{0,1}}[1-9])? ({codes})$"
            ),
            "description": "an amount and an ISO 4217 currency code, e.g. `48000 CNY`, "
            "`1250.5 USD`",
        }


# ------------------------------------------------------------------ the schema


@dataclass(frozen=True)
class Key:
    """One key of the schema: its type and what it means."""

    name: str
    type: ValueType
    meaning: str


COUNT = Count(MAX_COUNT)
HOURS = Count(MAX_HOURS, unit="hours")
DATE = Date()
AMOUNT = Amount()

KEYS: Mapping[str, Key] = {
    k.name: k
    for k in (
        Key(
            "source",
            Enumeration(
                (
                    "victim_statement",
                    "customer_complaint",
                    "internal_monitoring",
                    "law_enforcement",
                    "partner_alert",
                    "automated_detection",
                )
            ),
            "how the member learnt what it reports",
        ),
        Key("confidence", Enumeration(("low", "medium", "high")), "the member's confidence"),
        Key("first_seen", DATE, "the day it was first observed"),
        Key("last_seen", DATE, "the day it was last observed (not before first_seen)"),
        Key(
            "channel",
            Enumeration(("voice", "sms", "app", "web", "branch", "atm", "email")),
            "the channel it came through",
        ),
        Key("complaints", COUNT, "complaints received about the subject"),
        Key("calls", COUNT, "calls made by the subject"),
        Key("victims", COUNT, "distinct victims"),
        Key("messages", COUNT, "messages sent"),
        Key("transfers", COUNT, "transfers"),
        Key("amount", AMOUNT, "the total amount involved"),
        Key(
            "withdrawn_within_hours",
            HOURS,
            "hours between the money arriving and its withdrawal",
        ),
        Key("sims_seen", COUNT, "distinct SIM cards seen"),
        Key("accounts_seen", COUNT, "distinct accounts seen"),
        Key(
            "swap_channel",
            Enumeration(
                ("retail_store", "call_center", "online", "mobile_app", "agent", "unknown")
            ),
            "where the SIM swap was requested",
        ),
        Key(
            "lure",
            Enumeration(
                (
                    "bank_notice",
                    "parcel_delivery",
                    "tax_refund",
                    "prize",
                    "account_suspension",
                    "investment",
                    "job_offer",
                    "government_notice",
                    "romance",
                    "other",
                )
            ),
            "what the message pretended to be",
        ),
        Key(
            "method",
            Enumeration(
                (
                    "credential_stuffing",
                    "phishing",
                    "sim_swap",
                    "malware",
                    "remote_access",
                    "social_engineering",
                    "insider",
                    "unknown",
                )
            ),
            "how the account was taken over",
        ),
        Key(
            "scam_type",
            Enumeration(
                (
                    "police_impersonation",
                    "bank_impersonation",
                    "customer_service_impersonation",
                    "investment",
                    "romance",
                    "online_shopping",
                    "loan",
                    "part_time_job",
                    "prize",
                    "other",
                )
            ),
            "the kind of scam the victim fell for",
        ),
    )
}

COMMON_KEYS = ("source", "confidence", "first_seen", "last_seen", "channel")
_SPECIFIC: Mapping[str, tuple[str, ...]] = {
    "fraud_call": ("complaints", "calls", "victims"),
    "money_mule": ("amount", "transfers", "withdrawn_within_hours"),
    "phishing": ("lure", "messages"),
    "sim_swap": ("sims_seen", "swap_channel"),
    "account_takeover": ("method",),
    "scam_transfer": ("amount", "transfers", "scam_type"),
    "suspicious_device": ("sims_seen", "accounts_seen"),
    "other": (),
}
CATEGORIES: tuple[str, ...] = tuple(_SPECIFIC)
# Each category's keys in the order a body holds them (sorted).
CATEGORY_KEYS: Mapping[str, tuple[str, ...]] = {
    category: tuple(sorted((*COMMON_KEYS, *specific))) for category, specific in _SPECIFIC.items()
}
assert all(k in KEYS for keys in CATEGORY_KEYS.values() for k in keys)
assert set(KEYS) == {k for keys in CATEGORY_KEYS.values() for k in keys}


# ------------------------------------------------------------------ checks


def parse(key: str, text: str) -> Value:
    """The value ``text`` spells for ``key``; ``SchemaError`` unless ``text`` is that
    value's one spelling."""
    spec = KEYS.get(key)
    if spec is None:
        raise SchemaError(None, f"unknown attribute key; the schema's keys are {', '.join(KEYS)}")
    value = spec.type.parse(text)
    if value is None or spec.type.spell(value) != text:
        raise SchemaError(key, f"attribute {key} must be {spec.type.allowed()}")
    return value


def spell(key: str, value: Value) -> str:
    """The one spelling of ``value`` for ``key`` (a ``SchemaError`` if it has none)."""
    spec = KEYS.get(key)
    if spec is None:
        raise SchemaError(None, f"unknown attribute key; the schema's keys are {', '.join(KEYS)}")
    try:
        text = spec.type.spell(value)
    except (KeyError, TypeError, ValueError):
        raise SchemaError(key, f"attribute {key} must be {spec.type.allowed()}") from None
    parse(key, text)  # in range, and of the right type
    return text


def check_keys(category: str, keys: Sequence[str]) -> None:
    """Every key is one of ``category``'s (the values are checked on their own)."""
    allowed = CATEGORY_KEYS.get(category)
    if allowed is None:
        raise SchemaError(None, f"category must be one of {', '.join(CATEGORIES)}")
    for key in keys:
        if key not in allowed:
            named = (
                f"attribute {key} is" if key in KEYS else "an attribute key outside the schema is"
            )
            raise SchemaError(
                key if key in KEYS else None,
                f"{named} not one of the keys of category {category}: {', '.join(allowed)}",
            )


def check_together(values: Mapping[str, Value]) -> None:
    """Rules between keys: a first sighting is not after the last one."""
    first, last = values.get("first_seen"), values.get("last_seen")
    if isinstance(first, datetime.date) and isinstance(last, datetime.date) and first > last:
        raise SchemaError("first_seen", "attribute first_seen is after last_seen")


def check_attributes(category: str, pairs: Iterable[tuple[str, str]]) -> None:
    """All of a report's rules: keys of the category, each value in its one spelling,
    the rules between keys. Does not check order or uniqueness (the body does)."""
    items = list(pairs)
    check_keys(category, [k for k, _ in items])
    check_together({k: parse(k, v) for k, v in items})


def attributes_of(category: str, pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``pairs`` as a report carries them (sorted by key) once every rule holds: what the
    command line and other authors call. A key given twice is refused, not overwritten."""
    items = list(pairs)
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            what = f"attribute {key}" if key in KEYS else "an attribute key outside the schema"
            raise SchemaError(key if key in KEYS else None, f"{what} is given twice")
        seen.add(key)
    check_attributes(category, items)
    return tuple(sorted(items))


def describe(category: str) -> list[str]:
    """One line per key of ``category``: the key and what it may be (for help texts)."""
    return [f"{k}: {KEYS[k].type.allowed()}" for k in CATEGORY_KEYS[category]]


def json_schema(category: str) -> dict[str, Any]:
    """The JSON schema of a ``category`` report's attributes as the API shows them: an
    object of the category's keys, each a string of its type, no other keys."""
    return {
        "type": "object",
        "properties": {
            k: {**KEYS[k].type.json_schema(), "title": k, "description": _meaning(k)}
            for k in CATEGORY_KEYS[category]
        },
        "additionalProperties": False,
    }


def _meaning(key: str) -> str:
    spec = KEYS[key]
    return f"{spec.meaning}: {spec.type.allowed()}"
