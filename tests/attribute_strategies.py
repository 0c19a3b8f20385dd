"""Hypothesis strategies for report attributes (``node.ledger.attributes``): valid values
with their one spelling, written here independently of the schema's own ``spell``, and
whole attribute sets of a category."""

from __future__ import annotations

import datetime

from hypothesis import strategies as st

from node.ledger.attributes import (
    CATEGORY_KEYS,
    CURRENCIES,
    KEYS,
    MAX_AMOUNT_DIGITS,
    MAX_DATE,
    MIN_DATE,
    Amount,
    Count,
    Date,
    Enumeration,
    Money,
    Value,
)
from node.ledger.kinds import Attribute


def amount_text(whole: int, cents: int, currency: str) -> str:
    """How a person writes the amount: the cents only when there are any, without
    trailing zeros."""
    if not cents:
        return f"{whole} {currency}"
    return f"{whole}.{cents:02d}".rstrip("0") + f" {currency}"


@st.composite
def amounts(draw: st.DrawFn) -> tuple[Money, str]:
    currency = draw(st.sampled_from(sorted(CURRENCIES)))
    digits = CURRENCIES[currency]
    whole = draw(st.integers(0, 10**MAX_AMOUNT_DIGITS - 1))
    cents = draw(st.integers(0, 99)) if digits == 2 else 0
    if whole == 0 and cents == 0:
        cents = 1 if digits == 2 else 0
        whole = 0 if digits == 2 else 1
    return Money(whole * 10**digits + cents, currency), amount_text(whole, cents, currency)


def values(key: str) -> st.SearchStrategy[tuple[Value, str]]:
    """A valid value of ``key`` and its one spelling."""
    kind = KEYS[key].type
    if isinstance(kind, Enumeration):
        return st.sampled_from(kind.values).map(lambda v: (v, v))
    if isinstance(kind, Count):
        return st.integers(0, kind.maximum).map(lambda n: (n, str(n)))
    if isinstance(kind, Date):
        return st.dates(MIN_DATE, MAX_DATE).map(lambda d: (d, f"{d:%Y-%m-%d}"))
    assert isinstance(kind, Amount)
    return amounts()


def texts(key: str) -> st.SearchStrategy[str]:
    return values(key).map(lambda pair: pair[1])


@st.composite
def attribute_pairs(draw: st.DrawFn, category: str) -> tuple[tuple[str, str], ...]:
    """Valid attributes of a ``category`` report, sorted by key (first_seen never after
    last_seen)."""
    keys = draw(st.sets(st.sampled_from(CATEGORY_KEYS[category])))
    pairs = {key: draw(texts(key)) for key in keys}
    if "first_seen" in pairs and "last_seen" in pairs:
        low, high = sorted((pairs["first_seen"], pairs["last_seen"]))
        pairs["first_seen"], pairs["last_seen"] = low, high
    return tuple(sorted(pairs.items()))


def report_attributes(category: str) -> st.SearchStrategy[tuple[Attribute, ...]]:
    return attribute_pairs(category).map(lambda pairs: tuple(Attribute(k, v) for k, v in pairs))


def day(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)
