"""The raw-identifier screen: does a free-text string hold an identifier in the clear?

The ledger holds keyed pseudonyms only, so every string of a transaction (a case id,
say) is screened before a member admits it; a report's attributes and a case's purpose
come from closed vocabularies (``node.ledger.attributes``) and hold no free text, which
goes to the private details. The screen catches the honest mistake and the tool that
formats a number its own way (an operator pasting "victim 139.1234.5678", a spreadsheet
writing "13,912,345,678", a phone keyboard producing full-width or Arabic-Indic digits),
not a member set on smuggling data out: that one can spell digits as words. It errs
towards refusing: a refused transaction says which field to fix, a leaked identifier is
on every member's disk for good. It names the kind of identifier it saw, never the text.

How a string is read (``fold``, then the checks):

* Invisible characters go: zero-width and other format characters (U+200B..U+200D,
  U+2060, U+FEFF, soft hyphen, bidi controls, tags), combining marks (keycaps,
  variation selectors), Hangul fillers. Any kind of space becomes " ".
* Digits of any script (``unicodedata.decimal``: Arabic-Indic, Devanagari, full-width,
  mathematical ...) and other digit characters (``unicodedata.digit``: superscripts,
  circled and dingbat digits) become ASCII digits; NFKC does the rest (⑩, full-width
  letters and "@").
  Chinese numerals (〇零一二三四五六七八九幺 and 壹..玖) become digits too: a number read
  out and transcribed is written with them.
* Separators of every script become one of ``- / \\ _ ( ) [ ] { } + ' | ~ . , : ;``.
* Letters written for digits count as digits when they touch one and are not part of a
  longer word: O and o, and their Cyrillic, Greek and Armenian twins (0); l, I, "|",
  Cyrillic I and palochka, Greek Iota (1); Cyrillic Ze (3) and be (6). "138OO138OOO" is
  a phone number, "Oil 2026" is not.

Then, in this order: an email address (also "name [at] host.cn"), an IBAN (length and
mod-97 checked), digit groups, and a MAC address. A digit group is digits joined by
runs of at most four separators; ``. , : ;`` right after a digit join only when no space
follows them, so a sentence or a list ("days 3, 14, 22, 27") is not one number. A group
of seven digits or more is refused unless all of it is one of:

* dates and times: 2026-12-07, 07.12.2026, 12/07/2026, 2026-12-07T14:30:00+08:00,
  14:30, 14:30-15:45, 2019-2024, "Dec 7, 2026 14:30" (years 1800..2099). They may be
  joined to a number of one or two digits ("2026-12-07 3 calls") or a year, and after
  spaces to an amount; joined to other digits it is not trusted ("06.12.2034-56-78",
  "12:34:56 78 90");
* an amount: thousands grouped by "," or "'" (1,234,567.89; Indian 12,34,567), or by
  "." or a space with a decimal comma (1.234.567,89; 1 234 567,89), or at most six
  digits with a decimal part of one or two (12345.67); at most nine digits before the
  decimal mark. Next to a currency sign or code (¥, €, CNY, USD, BTC ...) also a "."
  or space grouping without decimals (1.500.000 EUR), up to fifteen digits, and
  decimals up to eight (0.12345678 BTC);
* a version after "v", "version", "build" ... or "Product/": version 10.0.19045.3803,
  Chrome/120.0.6099.109;
* a latitude and longitude pair: 30.274084, 120.155070.

``structured`` is for case ids, where dash-separated digit groups ("HZ-2024-0001") are
the norm: only unbroken digit runs count there (after folding and the letters above).

Known costs and gaps: an unbroken run of seven digits or more is refused whatever it
is (a plain amount of a million or more, a compact date 20261207, an epoch time); a
list of small numbers joined by spaces ("12 13 14 15") is refused; two amounts or
versions in a row need a word between them. Identifiers of fewer than seven digits
(short national numbers, "10.0.0.1") pass, as do numbers written like what passes: like
an amount ("612,345,678", "EUR 612 345 678"), a date ("20.12.2034"), a time and a short
number ("12:34:56 78"), a version ("v139.1234.5678"); a list ("139, 1234, 5678"),
digits spelled as words, letters used as separators, and masked numbers ("139****5678":
"*" is no separator). Hex digests belong in commitment fields: their digit runs count.
Names and addresses cannot be caught by any digit screen.

Layer: ``node.identifiers``; imports the standard library and ``normalize``.
"""

from __future__ import annotations

import re
import unicodedata

from node.identifiers.normalize import IBAN_LENGTHS, iban_is_valid, luhn_digit, resident_id_check

NUMBER = "a phone, account, IMEI or ID number"
CARD = "a card number"
IMEI_OR_CARD = "an IMEI or card number"
RESIDENT_ID = "a resident ID number"
IP_ADDRESS = "an IP address"
IBAN = "an IBAN"
EMAIL = "an email address"
MAC = "a MAC address"

MIN_DIGITS = 7
# The Cisco form of a MAC address (001a.2b3c.4d5e) is 14 characters; an IBAN at least 15.
_SHORTEST_PATTERN = 14

# --- fold ----------------------------------------------------------------------------

# Separators of other scripts and typographies, mapped to the ASCII one they stand for.
_SEPARATORS = {
    "-": "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\u02d7\u058a\u05be\u1806"
    "\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u30a0\u30fc\u2796\ufe31\ufe32\ufe58\ufe63\uff0d",
    "~": "\u02dc\u2053\u223c\u301c\u3030\uff5e",
    ".": "\u00b7\u0387\u2022\u2027\u2219\u22c5\u30fb\uff65\u2024\u2e31\u3002\uff61\ufe52"
    "\u06d4\u0589\u066b\u2981\u25cf\u25e6\u2e33",
    ",": "\u060c\u066c\u3001\uff64\ufe50\ufe51\u201a\u1802\u2e34",
    ":": "\u2236\ua789\ufe13\ufe55\uff1a\u05c3",
    ";": "\u061b\u037e\ufe14\ufe54\uff1b",
    "/": "\u2044\u2215\u29f8\u2571\uff0f",
    "\\": "\u2216\u29f5\u29f9\u2572\uff3c",
    "_": "\u2017\u203f\u2040\ufe33\ufe34\ufe4d\ufe4e\ufe4f\uff3f",
    "'": "\u2018\u2019\u201b\u2032\u02b9\u02bb\u02bc\u00b4\uff07",
    "+": "\u2795\ufe62\u207a\u208a\uff0b",
    "|": "\u01c0\u05c0\u2223\u2502\u23d0\u2758\u2759\u275a\uff5c\uffe8",
    "(": "\u3008\u300a\u300c\u300e\u3010\u3014\u3016\u3018\u301a\ufe59\ufe5b\ufe5d\uff08"
    "\uff3b\uff5b\uff5f\u2985\u27e6\u27e8\u27ea\u2768\u276a\u276c",
    ")": "\u3009\u300b\u300d\u300f\u3011\u3015\u3017\u3019\u301b\ufe5a\ufe5c\ufe5e\uff09"
    "\uff3d\uff5d\uff60\u2986\u27e7\u27e9\u27eb\u2769\u276b\u276d",
    " ": "\u2800",
}
_SEPARATOR_OF = {c: ascii_ for ascii_, chars in _SEPARATORS.items() for c in chars}
# Visible-but-empty letters, used as invisible characters.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0")
_CJK_DIGITS = {
    **dict.fromkeys("〇零", "0"),
    **{c: str(i) for i, c in enumerate("一二三四五六七八九", start=1)},
    **{c: str(i) for i, c in enumerate("壹贰叁肆伍陆柒捌玖", start=1)},
    "幺": "1",
}


def _fold_char(c: str) -> str:
    if c.isspace():
        return " "
    if c in _INVISIBLE or unicodedata.category(c) in ("Cc", "Cf", "Mn", "Me"):
        return ""
    value = unicodedata.decimal(c, None)
    if value is None:
        value = unicodedata.digit(c, None)
    if value is not None:
        return str(value)
    mapped = _SEPARATOR_OF.get(c) or _CJK_DIGITS.get(c)
    if mapped is not None:
        return mapped
    compat = unicodedata.normalize("NFKC", c)
    if compat != c:
        return "".join(_fold_char(x) if x != c else x for x in compat)
    return c


class _FoldTable(dict[int, str]):
    """``str.translate`` table that computes (and, up to a bound, remembers) each
    character's fold the first time it is seen."""

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        if len(self) < 65_536:
            self[code] = folded
        return folded


_FOLD = _FoldTable()


def fold(text: str) -> str:
    """``text`` as the screen reads it: invisible characters removed, digits of every
    script in ASCII, separators in their ASCII form. Printable ASCII is unchanged."""
    if text.isascii() and text.isprintable():
        return text
    return text.translate(_FOLD)


# --- patterns ------------------------------------------------------------------------

# Separators that always join digits, and those that do not when they follow a digit and
# a space follows them (a sentence's full stop, a list's comma).
_ALWAYS = r"\s\-/\\_()\[\]{}+'|~"
_UNLESS_SPACE = r".,:;"
_SEPARATOR_CHARS = frozenset(" \t\n\r\f\v-/\\_()[]{}+'|~.,:;")
# The alternatives never match the same text, or a failing match would backtrack through
# every way of reading a run of separators.
_JOIN = rf"(?:[{_ALWAYS}]|[{_UNLESS_SPACE}](?!\s)|(?<![0-9])[{_UNLESS_SPACE}](?=\s))"
_GROUP = re.compile(rf"[0-9](?:{_JOIN}{{0,4}}[0-9])*")
# Starts only where a group of MIN_DIGITS or more starts (a shorter group fails at its
# first digit, and every later digit of it has fewer left); never right after a digit.
_LONG_GROUP = re.compile(rf"[0-9](?<![0-9][0-9])(?:{_JOIN}{{0,4}}[0-9]){{{MIN_DIGITS - 1},}}")
_RUN = re.compile(rf"[0-9]{{{MIN_DIGITS},}}")
_DIGIT = re.compile(r"[0-9]")

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_AT_WORD = re.compile(r"[\[(<{]\s*at\s*[\])>}]", re.IGNORECASE)
_AT_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]+\s*[\[(<{]\s*at\s*[\])>}]\s*[A-Za-z0-9\-]+"
    r"(?:\s*(?:\.|[\[(<{]\s*dot\s*[\])>}])\s*[A-Za-z0-9\-]+)+",
    re.IGNORECASE,
)
# Each pattern starts with a character class rarer than letters, so a search skips to
# candidates fast; look-behinds then check what comes before.
_HEX = "0-9A-Fa-f"
# 00:1a:2b:3c:4d:5e, also with - . or _; and 001a.2b3c.4d5e. One pattern, found at its
# first separator.
_MAC = re.compile(
    rf"([:\-._])(?:(?<=(?<![{_HEX}:\-._])[{_HEX}]{{2}}.)[{_HEX}]{{2}}(?:\1[{_HEX}]{{2}}){{4}}"
    rf"|(?<=(?<![{_HEX}.])[{_HEX}]{{4}}\.)[{_HEX}]{{4}}\.[{_HEX}]{{4}})(?![{_HEX}])"
)
# Two letters and two check digits, then 11 to 32 letters or digits, separators allowed
# between them; found at the check digits, without consuming the rest (overlaps count).
_IBAN = re.compile(
    rf"[0-9][0-9](?<=(?<![A-Za-z0-9])[A-Za-z]{{2}}[0-9]{{2}})"
    rf"(?=((?:{_JOIN}{{0,3}}[A-Za-z0-9]){{11,32}}))"
)
_IBAN_SEPARATORS = re.compile(rf"[{_ALWAYS}{_UNLESS_SPACE}]")

# Letters written for digits, and the digits they stand for.
_CONFUSABLE_DIGITS = {
    **dict.fromkeys("Oo\u041e\u043e\u039f\u03bf\u0555\u0585", "0"),
    **dict.fromkeys("lI|\u0406\u04c0\u04cf\u0399", "1"),
    **dict.fromkeys("\u0417\u0437", "3"),
    "\u0431": "6",
}
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLE_DIGITS)
_C = "".join(_CONFUSABLE_DIGITS).replace("|", r"\|")
_LETTER = r"[^\W\d_]"
# A run of them that touches a digit and is a whole word (no other letter next to it);
# the search for a digit next to one of them comes first, as it is faster.
_CONFUSABLE_RUN = re.compile(
    rf"[0-9{_C}](?:(?<=[0-9])[{_C}]+(?!{_LETTER})|(?<=[{_C}])(?<!{_LETTER}[{_C}])[{_C}]*(?=[0-9]))"
)
_NEXT_TO_CONFUSABLE = re.compile(rf"[0-9](?:(?=[{_C}])|(?<=[{_C}][0-9]))")

_YEAR = r"(?:1[89]|20)[0-9]{2}"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
_DATE = rf"(?:{_YEAR}[-/.]{_MONTH}[-/.]{_DAY}|{_DAY}[-/.]{_DAY}[-/.]{_YEAR})"
_TIME = (
    r"(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{1,6})?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9](?![-/.:][0-9]))?"  # not of a next date
)
_DATE_TIME = re.compile(
    rf"(?<![0-9])(?:{_DATE}(?:[T ]{_TIME})?|{_YEAR} {_TIME}"
    rf"|(?P<first>{_YEAR}) ?[-~/] ?(?P<last>{_YEAR})(?![-/.][0-9])|{_TIME})(?![0-9])"
)
# What dates and times are masked with: a control character, which ``fold`` removes.
_MASK = "\x01"
# A date or time joined to a number this short, or to a year, is still one:
# "2026-12-07 3 calls", "14:30 - 7 Dec 2026".
_AFTER_DATE_DIGITS = 2
_YEAR_ONLY = re.compile(_YEAR)

_CURRENCY = (
    r"(?:[$¢£¤¥֏؋৲৳฿៛\u20a0-\u20c0元円圆원]|(?i:CNY|RMB|USD|EUR|GBP|JPY|HKD|TWD|MOP|SGD|KRW"
    r"|INR|RUB|CHF|AUD|CAD|NZD|THB|VND|IDR|MYR|PHP|AED|SAR|BTC|ETH|USDT|USDC|yuan|dollars?"
    r"|euros?)(?![A-Za-z]))"
)
_CURRENCY_BEFORE = re.compile(rf"{_CURRENCY} ?$")
_CURRENCY_AFTER = re.compile(rf" ?{_CURRENCY}")
_DECIMALS = r"(?P<decimals>[0-9]{1,2})"
# Amounts, each with the most digits before the decimal mark it may have.
_AMOUNTS = tuple(
    (re.compile(pattern), 9)
    for pattern in (
        rf"[0-9]{{1,3}}(?:,[0-9]{{3}})+(?:\.{_DECIMALS})?",  # 1,234,567.89
        rf"[0-9]{{1,3}}(?:'[0-9]{{3}})+(?:[.,]{_DECIMALS})?",  # 1'234'567.89
        rf"[0-9]{{1,3}}(?:\.[0-9]{{3}})+,{_DECIMALS}",  # 1.234.567,89
        rf"[0-9]{{1,3}}(?: [0-9]{{3}})+[.,]{_DECIMALS}",  # 1 234 567,89
        rf"[0-9]{{1,2}}(?:,[0-9]{{2}})+,[0-9]{{3}}(?:\.{_DECIMALS})?",  # 12,34,567.89
        rf"[0-9]{{1,6}}[.,]{_DECIMALS}",  # 12345.67
    )
)
_CURRENCY_AMOUNTS = tuple(
    (re.compile(pattern), 15)
    for pattern in (
        r"[0-9]{1,3}([,.' ])[0-9]{3}(?:\1[0-9]{3})*(?:[.,](?P<decimals>[0-9]{1,8}))?",
        r"[0-9]{1,6}[.,](?P<decimals>[0-9]{1,8})",  # 0.12345678 BTC
    )
)

_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")
_VERSION_BEFORE = re.compile(
    r"(?:(?<![A-Za-z])[vV]|(?<![A-Za-z])(?i:version|ver|build|release|rev|revision)\.? ?"
    r"|[A-Za-z]/)$"
)
_LATITUDE = r"-?(?:[0-8]?[0-9]|90)\.[0-9]{4,8}"
_LONGITUDE = r"-?(?:1[0-7][0-9]|0?[0-9]?[0-9]|180)\.[0-9]{4,8}"
_COORDINATE = re.compile(rf"{_LATITUDE}|{_LONGITUDE}")
_COORDINATES = re.compile(rf"{_LATITUDE},{_LONGITUDE}")
_LONGITUDE_AFTER = re.compile(rf" ?, ?{_LONGITUDE}(?![0-9])")
_LATITUDE_BEFORE = re.compile(rf"(?<![0-9.]){_LATITUDE} ?, ?-?$")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


# --- the screen ----------------------------------------------------------------------


def find_raw_identifier(text: str, structured: bool = False) -> str | None:
    """Name the kind of raw identifier ``text`` seems to contain, or None.

    ``structured`` is for identifiers such as case ids, where dash-separated digit
    groups ("HZ-2024-0001") are the norm: only unbroken digit runs count there.
    """
    if len(text) < _SHORTEST_PATTERN and text.isascii():
        # ASCII folds to itself but for control characters, which go or become spaces.
        # What could make an identifier of it: digits, letters read as digits, "@" and
        # brackets ("a(at)b.cn"); it is too short for an IBAN or a MAC address.
        kept = text.translate(_SHORTCUT_KEEPS)
        if len(kept) < MIN_DIGITS and not kept.strip(_DIGIT_LIKE):
            return None  # fewer than seven digits, no email
    return scan_for_raw_identifier(text, structured)


_DIGIT_LIKE = "0123456789OoIl|"
# Deletes every ASCII character but those.
_SHORTCUT_KEEPS = {c: None for c in range(128) if chr(c) not in _DIGIT_LIKE + "@([{<"}


def scan_for_raw_identifier(text: str, structured: bool = False) -> str | None:
    """``find_raw_identifier`` without its shortcut for short strings."""
    text = fold(text)
    if "@" in text and _EMAIL.search(text):
        return EMAIL
    at = _AT_WORD.search(text)
    if at is not None and _AT_EMAIL.search(text, max(0, at.start() - 64), at.end() + 256):
        return EMAIL
    if _DIGIT.search(text):
        if len(text) >= _SHORTEST_PATTERN and _IBAN.search(text) and _has_iban(text):
            return IBAN
        if _NEXT_TO_CONFUSABLE.search(text):
            text = _CONFUSABLE_RUN.sub(_as_digits, text)
        found = _find_number(text, structured)
        if found is not None:
            return found
    # Last, as a card number's groups can hold a MAC's shape ("5100 0000.0000.0008").
    if len(text) >= _SHORTEST_PATTERN and _MAC.search(text):
        return MAC
    return None


def _find_number(text: str, structured: bool) -> str | None:
    if structured:
        return NUMBER if _RUN.search(text) else None
    match = _LONG_GROUP.search(text)
    while match is not None:
        found = _judge_group(text, match.start(), match.end())
        if found is not None:
            return found
        match = _LONG_GROUP.search(text, match.end())
    return None


def _has_iban(text: str) -> bool:
    for match in _IBAN.finditer(text):
        compact = text[match.start() - 2 : match.end()] + _IBAN_SEPARATORS.sub("", match.group(1))
        compact = compact.upper()
        length = IBAN_LENGTHS.get(compact[:2])
        if length is not None and iban_is_valid(compact[:length]):
            return True
    return False


def _as_digits(match: re.Match[str]) -> str:
    return match.group().translate(_CONFUSABLE_TABLE)


def _judge_group(text: str, start: int, end: int) -> str | None:
    """The kind of identifier in the digit group ``text[start:end]``, or None when the
    group is dates, times, amounts, versions or coordinates."""
    masked = _mask_dates(text, start, end)
    if _MASK not in masked:
        return _judge_digits(text, start, end)
    for sub in _GROUP.finditer(masked):
        s, e = sub.span()
        digits = _count_digits(sub.group())
        verdict = _judge_digits(text, start + s, start + e)
        if not all(
            _date_may_neighbour(neighbour, spaces_only, sub.group(), digits, verdict)
            for neighbour, spaces_only in (_neighbour(masked, s, -1), _neighbour(masked, e, 1))
        ):
            # The date or time may be part of a number: judge the digits whole.
            return verdict if digits >= MIN_DIGITS else _judge_digits(text, start, end)
    return None


def _mask_dates(text: str, start: int, end: int) -> str:
    """``text[start:end]`` with its dates and times masked. A date and time may start
    before the group: "2026-12-07T14:30" is two groups."""
    after_t = text[start - 1 : start] == "T"  # then look from 11 before: "2026-12-07T"
    pieces, at = [], start
    for match in _DATE_TIME.finditer(text, max(0, start - 11) if after_t else start, end):
        first, last = match.group("first", "last")
        if first is not None and not 0 <= int(last) - int(first) <= 100:
            continue  # not a range of years
        s, e = max(match.start(), at), match.end()
        if s < e:
            pieces += [text[at:s], _MASK * (e - s)]
            at = e
    pieces.append(text[at:end])
    return "".join(pieces)


def _neighbour(masked: str, at: int, step: int) -> tuple[str, bool]:
    """What is next to the digits that start (``step`` -1) or end (1) at ``at``: a date
    or time (``_MASK``) or nothing (""), and whether only spaces are between."""
    i = at - 1 if step < 0 else at
    spaces_only = True
    while 0 <= i < len(masked) and masked[i] in _SEPARATOR_CHARS:
        spaces_only = spaces_only and masked[i].isspace()
        i += step
    return (masked[i] if 0 <= i < len(masked) else ""), spaces_only


def _date_may_neighbour(
    neighbour: str, spaces_only: bool, digits_text: str, digits: int, verdict: str | None
) -> bool:
    """Whether a date or time stays one next to these digits: next to a number of one or
    two digits or a year ("2026-12-07 3 calls", "14:30 - 7 Dec 2026"), or, after spaces,
    an amount."""
    if neighbour == "":
        return True
    if digits <= _AFTER_DATE_DIGITS or _YEAR_ONLY.fullmatch(digits_text):
        return True
    return spaces_only and verdict is None


def _count_digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))


def _judge_digits(text: str, start: int, end: int) -> str | None:
    """The kind of identifier in the digits ``text[start:end]``, or None when they are
    an amount, a version or a coordinate."""
    group = text[start:end]
    before = text[max(0, start - 24) : start]
    if _is_amount(group, before, text, end):
        return None
    if _VERSION.fullmatch(group) and _VERSION_BEFORE.search(before):
        return None
    if _COORDINATES.fullmatch(group) or (
        _COORDINATE.fullmatch(group)
        and (_LONGITUDE_AFTER.match(text, end) or _LATITUDE_BEFORE.search(before))
    ):
        return None
    digits = "".join(c for c in group if c in "0123456789")
    return _kind(digits, text[end : end + 1], group)


def _is_amount(group: str, before: str, text: str, end: int) -> bool:
    if any(_fits(pattern, most, group) for pattern, most in _AMOUNTS):
        return True
    return any(_fits(pattern, most, group) for pattern, most in _CURRENCY_AMOUNTS) and bool(
        _CURRENCY_BEFORE.search(before) or _CURRENCY_AFTER.match(text, end)
    )


def _fits(pattern: re.Pattern[str], most: int, group: str) -> bool:
    """Whether ``group`` is an amount of ``pattern`` with at most ``most`` digits before
    its decimal mark."""
    match = pattern.fullmatch(group)
    if match is None:
        return False
    return _count_digits(group) - len(match.group("decimals") or "") <= most


def _kind(digits: str, after: str, group: str) -> str:
    n = len(digits)
    if n == 17 and after in ("X", "x") and resident_id_check(digits) == "X":
        return RESIDENT_ID
    if n == 18 and resident_id_check(digits[:17]) == digits[17]:
        return RESIDENT_ID
    if 15 <= n <= 19 and luhn_digit(digits[:-1]) == digits[-1]:
        # E.164 numbers have at most 15 digits: longer ones are no phone number.
        return IMEI_OR_CARD if n == 15 else CARD
    if _IPV4.fullmatch(group) and all(int(part) <= 255 for part in group.split(".")):
        return IP_ADDRESS
    return NUMBER
