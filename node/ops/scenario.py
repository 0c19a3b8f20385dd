"""A synthetic but realistic case for the demo: a telecom-fraud ring seen in pieces by
six partners, none of which can see the ring alone.

The story (every identifier is made up, in formats that normalise):

* Victims report calls from two numbers to the police; Telecom A has complaints about
  the same numbers and sees one of them call the victims.
* Bank A sees a victim's transfer to a mule account opened with a third number; Bank B
  sees the mule forward the money to a second mule, logged in from one handset.
* Telecom B sees that handset carry a swapped SIM of one of the callers' numbers; the
  utility has one customer behind two of the numbers.

A trace of the first caller's number under an approved case shows what each partner
reported about it; the link graph from it reaches the handset, both mules and the
customer behind the numbers: the ring.

Each report carries what its partner counted, as typed attributes of its category's
schema (``node.ledger.attributes``): complaints, calls and victims, an amount and its
currency, how fast a mule withdrew, how many SIM cards a handset carried, where a
sighting came from and when it was first and last seen. Nothing in them is free text.

Observation times lie in the past ``DAYS`` days, so a case window of that span covers
them (first sightings may lie a little further back). ``fraud_ring`` returns
transactions signed by each institution's member, in the order they would have been
reported.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from node.identifiers.pseudonym import EntityRef
from node.ledger.attributes import attributes_of
from node.ledger.authoring import Author
from node.ledger.kinds import Attribute, Link, Report

DAYS = 30
DAY_MS = 86_400_000

# The institutions the story needs, as ``crosstrace testnet`` names their kinds.
INSTITUTIONS = ("police", "bank", "telecom", "utility")

CALLER = ("phone", "+86 170 2311 4587")  # the number the case is opened on
CALLER_2 = ("phone", "+86 171 0955 3208")
MULE_PHONE = ("phone", "+86 186 4420 7719")
VICTIMS = (("phone", "+86 138 0013 8000"), ("phone", "+86 139 2101 6634"))
VICTIM_ACCOUNT = ("account", "6222 0212 3456 7890 123")
MULE_1 = ("account", "6217 0033 2001 8845 671")
MULE_2 = ("account", "DE89 3704 0044 0532 0130 00")
HANDSET = ("device", "35-209900-176148-1")
CUSTOMER = ("person_id", "CN-110101199003071234")


@dataclass(frozen=True)
class Record:
    """One record of the story: who reports it, and what."""

    reporter: str  # "police", "bank:0", "bank:1", "telecom:0", "telecom:1", "utility"
    kind: str  # "report" or "link"
    subject: tuple[str, str]
    category_or_relation: str
    other: tuple[str, str] | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    days_ago: float = 0.0
    # (first, last) sighting in days before now: the first_seen and last_seen dates.
    seen_days_ago: tuple[int, int] | None = None


STORY: tuple[Record, ...] = (
    Record(
        "telecom:0",
        "report",
        CALLER,
        "fraud_call",
        attributes=(
            ("calls", "212"),
            ("channel", "voice"),
            ("complaints", "14"),
            ("confidence", "high"),
            ("source", "customer_complaint"),
            ("victims", "9"),
        ),
        days_ago=27,
        seen_days_ago=(34, 27),
    ),
    Record(
        "telecom:0",
        "report",
        CALLER_2,
        "fraud_call",
        attributes=(
            ("calls", "143"),
            ("channel", "voice"),
            ("complaints", "9"),
            ("confidence", "medium"),
            ("source", "customer_complaint"),
        ),
        days_ago=26,
        seen_days_ago=(31, 26),
    ),
    Record("telecom:0", "link", CALLER, "called", VICTIMS[0], days_ago=21),
    Record("telecom:0", "link", CALLER, "called", VICTIMS[1], days_ago=20),
    Record(
        "police",
        "report",
        CALLER,
        "fraud_call",
        attributes=(
            ("channel", "voice"),
            ("confidence", "high"),
            ("source", "victim_statement"),
            ("victims", "2"),
        ),
        days_ago=20,
    ),
    Record("police", "link", CALLER_2, "called", VICTIMS[1], days_ago=19),
    Record("bank:0", "link", VICTIM_ACCOUNT, "transferred_to", MULE_1, attributes=(), days_ago=20),
    Record(
        "bank:0",
        "report",
        MULE_1,
        "scam_transfer",
        attributes=(
            ("amount", "48000 CNY"),
            ("channel", "app"),
            ("scam_type", "police_impersonation"),
            ("source", "customer_complaint"),
            ("transfers", "3"),
        ),
        days_ago=20,
        seen_days_ago=(21, 20),
    ),
    Record("bank:0", "link", MULE_1, "registered_with", MULE_PHONE, days_ago=19),
    Record("bank:1", "link", MULE_1, "transferred_to", MULE_2, days_ago=19),
    Record(
        "bank:1",
        "report",
        MULE_2,
        "money_mule",
        attributes=(
            ("amount", "46500 CNY"),
            ("channel", "atm"),
            ("confidence", "high"),
            ("source", "internal_monitoring"),
            ("transfers", "4"),
            ("withdrawn_within_hours", "2"),
        ),
        days_ago=18,
    ),
    Record("bank:1", "link", MULE_2, "logged_in_from", HANDSET, days_ago=18),
    Record(
        "telecom:1",
        "report",
        CALLER_2,
        "sim_swap",
        attributes=(
            ("confidence", "medium"),
            ("sims_seen", "2"),
            ("source", "internal_monitoring"),
            ("swap_channel", "retail_store"),
        ),
        days_ago=17,
    ),
    Record("telecom:1", "link", HANDSET, "uses", CALLER_2, days_ago=17),
    Record("telecom:1", "link", HANDSET, "uses", CALLER, days_ago=16),
    Record(
        "telecom:1",
        "report",
        HANDSET,
        "suspicious_device",
        attributes=(
            ("confidence", "high"),
            ("sims_seen", "6"),
            ("source", "automated_detection"),
        ),
        days_ago=16,
        seen_days_ago=(29, 16),
    ),
    Record("utility", "link", CUSTOMER, "registered_with", CALLER, days_ago=12),
    Record("utility", "link", CUSTOMER, "registered_with", MULE_PHONE, days_ago=12),
)


def reporter_names(members: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Map the story's reporters ("bank:1" = the second bank) to member names, given
    the consortium's (name, institution) pairs in genesis order."""
    by_kind: dict[str, list[str]] = {}
    for name, institution in members:
        by_kind.setdefault(institution, []).append(name)
    out: dict[str, str] = {}
    for record in STORY:
        kind, _, index = record.reporter.partition(":")
        names = by_kind.get(kind, [])
        position = int(index or 0)
        if position >= len(names):
            raise ValueError(
                f"the scenario needs {position + 1} {kind} member(s); the consortium has "
                f"{len(names)} (crosstrace testnet --nodes 6 makes police, two banks, two "
                "telecom operators and a utility)"
            )
        out[record.reporter] = names[position]
    return out


def fraud_ring(
    authors: Mapping[str, Author], now_ms: int, rng: random.Random | None = None
) -> list[tuple[str, bytes]]:
    """The story's transactions as (member name, signed transaction), in report order.
    ``authors`` maps member names to their signing authors."""
    return [(member, tx) for member, tx, _ in fraud_ring_with_refs(authors, now_ms, rng)]


def fraud_ring_with_refs(
    authors: Mapping[str, Author], now_ms: int, rng: random.Random | None = None
) -> list[tuple[str, bytes, tuple[EntityRef, ...]]]:
    """``fraud_ring`` with the references each transaction names (as
    ``fraud_ring_entities`` lists their identifiers). Each member's pseudonyms are asked
    for in one batch, before anything is signed."""
    jitter = rng or random.Random(0)
    genesis = next(iter(authors.values())).genesis
    names = reporter_names([(m.name, m.institution) for m in genesis.members if m.name in authors])
    ordered = sorted(STORY, key=lambda r: -r.days_ago)
    # Per member, each identifier once (dicts keep their order).
    wanted: dict[str, dict[tuple[str, str], None]] = {}
    for record in ordered:
        ends = [record.subject] if record.other is None else [record.subject, record.other]
        wanted.setdefault(names[record.reporter], {}).update(dict.fromkeys(ends))
    known: dict[str, dict[tuple[str, str], EntityRef]] = {}
    for member, unique in wanted.items():
        items = list(unique)
        known[member] = dict(zip(items, authors[member].entities(items), strict=True))
    out: list[tuple[str, bytes, tuple[EntityRef, ...]]] = []
    for record in ordered:
        member = names[record.reporter]
        author = authors[member]
        refs = known[member]
        observed = now_ms - int(record.days_ago * DAY_MS) + jitter.randrange(3_600_000)
        body: Report | Link
        if record.kind == "report":
            pairs = list(record.attributes)
            if record.seen_days_ago is not None:
                first, last = record.seen_days_ago
                pairs += [("first_seen", _day(now_ms, first)), ("last_seen", _day(now_ms, last))]
            body = Report(
                subject=refs[record.subject],
                category=record.category_or_relation,
                attributes=tuple(
                    Attribute(k, v) for k, v in attributes_of(record.category_or_relation, pairs)
                ),
                case_id=None,
                observed_ms=observed,
                details_commitment=None,
            )
            named: tuple[EntityRef, ...] = (refs[record.subject],)
        else:
            assert record.other is not None
            body = Link(
                a=refs[record.subject],
                b=refs[record.other],
                relation=record.category_or_relation,
                observed_ms=observed,
                evidence_commitment=None,
            )
            named = (refs[record.subject], refs[record.other])
        out.append((member, author.sign(body), named))
    return out


def fraud_ring_entities() -> list[tuple[tuple[str, str], ...]]:
    """The (type, identifier) of the entities each transaction of ``fraud_ring`` names, in
    the same order: what each reporting member keeps for disclosure."""
    ordered = sorted(STORY, key=lambda r: -r.days_ago)
    return [(r.subject,) if r.other is None else (r.subject, r.other) for r in ordered]


def _day(now_ms: int, days_ago: int) -> str:
    """The UTC date ``days_ago`` days before ``now_ms``, as a date attribute is spelt."""
    when = datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC)
    return (when.date() - datetime.timedelta(days=days_ago)).isoformat()
