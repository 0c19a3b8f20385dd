"""Writing transactions as a member: the operator's side of ``crosstrace submit``.

A member's home has what is needed to sign a transaction without the node: the config
names the key and the genesis. Pseudonyms are another matter: no member holds the
pseudonym key (each holds a share, and t members together evaluate the threshold
pseudonym function), so an ``Author`` asks a ``PseudonymSource`` for them. The one
real source is the member's running node (``node.client.pseudonyms.NodePseudonyms``,
which the node answers with a ``report`` evaluation counted against the member's daily
quota); tests and fixtures use a source built on a key they dealt themselves
(``node.testing.dealer``). Identifiers are normalised here first, so a malformed one
is refused before anything leaves this process, and no message ever repeats a value.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from consensus.codec import MAX_UINT
from consensus.crypto import Signer
from node.identifiers.normalize import EntityType, NormalizationError, normalize
from node.identifiers.pseudonym import EntityRef
from node.ledger.attributes import SchemaError, attributes_of
from node.ledger.kinds import CATEGORIES, RELATIONS, Attribute, Body, Link, Report
from node.ledger.transactions import encode_tx, make_tx
from node.setup.config import ConfigError, load_config
from node.setup.genesis import Genesis, GenesisError, load_genesis
from node.setup.keys import KeyFileError, load_key

ENTITY_TYPES = tuple(t.value for t in EntityType)
# The most identifiers one request for pseudonyms may carry (the node's limit too).
PSEUDONYM_BATCH = 10_000
NO_SOURCE = (
    "pseudonyms come from this member's running node, which evaluates them together "
    "with the other members (crosstrace start); no node was given to ask"
)


class AuthoringError(ValueError):
    """The transaction cannot be written as asked; the message says why."""


class PseudonymSource(Protocol):
    """Where an ``Author`` gets pseudonyms: ``refs`` takes (entity type, value as typed)
    pairs, normalises them (an ``AuthoringError`` names the position of a malformed one,
    never its value) and answers one reference per pair, in order."""

    def refs(self, items: Sequence[tuple[str, str]]) -> list[EntityRef]: ...


def _without_value(message: str, raw: str) -> str:
    # The normaliser quotes the input in its reasons; an identifier must not travel on
    # in an error message, so its spelling (whole or shortened) is cut out.
    for shown in (raw, raw[:61] + "..."):
        message = message.replace(repr(shown), "(value withheld)")
    return message if raw not in message else "not a well-formed identifier"


def normalize_items(items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(type, normal form) for each (type, value as typed); ``AuthoringError`` names the
    first bad position (``identifiers[i]``) and why, without the value."""
    normalized: list[tuple[str, str]] = []
    for i, (entity_type, raw) in enumerate(items):
        if entity_type not in ENTITY_TYPES:
            raise AuthoringError(
                f"identifiers[{i}]: unknown entity type {entity_type!r}; "
                f"one of {', '.join(ENTITY_TYPES)}"
            )
        try:
            normalized.append((entity_type, normalize(entity_type, raw)))
        except NormalizationError as exc:
            raise AuthoringError(f"identifiers[{i}]: {_without_value(str(exc), raw)}") from None
    return normalized


def sample_identifiers(count: int, first: int = 0) -> list[tuple[str, str]]:
    """Distinct made-up phone numbers for demos and load, in the +86 170 range the
    operators reserve for virtual carriers."""
    return [
        ("phone", f"+86 170 {i // 10000 % 10000:04d} {i % 10000:04d}")
        for i in range(first, first + count)
    ]


@dataclass(frozen=True)
class Author:
    """One member, ready to sign transactions for its consortium. ``pseudonyms`` is
    where entity references come from; without one, only transactions that name no
    entity (cases, approvals) can be written."""

    genesis: Genesis
    member: str
    signer: Signer
    pseudonyms: PseudonymSource | None = None

    def entity(self, entity_type: str, raw: str) -> EntityRef:
        return self.entities([(entity_type, raw)])[0]

    def entities(self, items: Sequence[tuple[str, str]]) -> list[EntityRef]:
        """One reference per (type, value as typed), asking the source once per
        ``PSEUDONYM_BATCH`` identifiers."""
        for i, (entity_type, _) in enumerate(items):
            if entity_type not in ENTITY_TYPES:
                raise AuthoringError(
                    f"identifiers[{i}]: unknown entity type {entity_type!r}; "
                    f"one of {', '.join(ENTITY_TYPES)}"
                )
        if self.pseudonyms is None:
            raise AuthoringError(NO_SOURCE)
        refs: list[EntityRef] = []
        for start in range(0, len(items), PSEUDONYM_BATCH):
            chunk = items[start : start + PSEUDONYM_BATCH]
            try:
                answer = self.pseudonyms.refs(chunk)
            except AuthoringError as exc:
                # The source counts within its chunk; the caller counts in its list.
                raise AuthoringError(_shift_position(str(exc), start)) from None
            if len(answer) != len(chunk):
                raise AuthoringError(
                    f"the pseudonym source answered {len(answer)} references "
                    f"for {len(chunk)} identifiers"
                )
            refs.extend(answer)
        return refs

    def sign(self, body: Body, *, nonce: int | None = None, time_ms: int | None = None) -> bytes:
        now = int(time.time() * 1000) if time_ms is None else time_ms
        # Any unused nonce will do; a random 63-bit one never needs local state.
        chosen = secrets.randbelow(MAX_UINT >> 1) + 1 if nonce is None else nonce
        tx = make_tx(self.signer, self.genesis.chain_id, self.member, body.kind, body, chosen, now)
        return encode_tx(tx)

    def report(
        self,
        entity_type: str,
        raw: str,
        category: str,
        attributes: Sequence[tuple[str, str]] = (),
        case_id: str | None = None,
        details_commitment: bytes | None = None,
    ) -> bytes:
        # The category is checked before a pseudonym is spent on a report that cannot be.
        self._check_category(category)
        return self.report_about(
            self.entity(entity_type, raw), category, attributes, case_id, details_commitment
        )

    def report_about(
        self,
        subject: EntityRef,
        category: str,
        attributes: Sequence[tuple[str, str]] = (),
        case_id: str | None = None,
        details_commitment: bytes | None = None,
    ) -> bytes:
        """A report on an entity whose pseudonym is already known (from ``entities``)."""
        self._check_category(category)
        try:
            typed = attributes_of(category, attributes)
        except SchemaError as exc:
            raise AuthoringError(str(exc)) from None
        try:
            body = Report(
                subject=subject,
                category=category,
                attributes=tuple(Attribute(k, v) for k, v in typed),
                case_id=case_id,
                observed_ms=int(time.time() * 1000),
                details_commitment=details_commitment,
            )
        except ValueError as exc:
            raise AuthoringError(str(exc)) from None
        return self.sign(body)

    def reports(self, items: Sequence[tuple[str, str]], category: str) -> Iterator[bytes]:
        """A report in ``category`` on each (type, value as typed), the pseudonyms asked
        for in batches: a chunk's transactions are signed before the next is asked."""
        self._check_category(category)
        for start in range(0, len(items), PSEUDONYM_BATCH):
            chunk = items[start : start + PSEUDONYM_BATCH]
            try:
                refs = self.entities(chunk)
            except AuthoringError as exc:
                raise AuthoringError(_shift_position(str(exc), start)) from None
            for ref in refs:
                yield self.report_about(ref, category)

    def link(
        self,
        a: tuple[str, str],
        b: tuple[str, str],
        relation: str,
        evidence_commitment: bytes | None = None,
    ) -> bytes:
        self._check_relation(relation)
        ref_a, ref_b = self.entities([a, b])
        return self.link_between(ref_a, ref_b, relation, evidence_commitment)

    def link_between(
        self,
        a: EntityRef,
        b: EntityRef,
        relation: str,
        evidence_commitment: bytes | None = None,
    ) -> bytes:
        """A link between two entities whose pseudonyms are already known."""
        self._check_relation(relation)
        try:
            body = Link(
                a=a,
                b=b,
                relation=relation,
                observed_ms=int(time.time() * 1000),
                evidence_commitment=evidence_commitment,
            )
        except ValueError as exc:
            raise AuthoringError(str(exc)) from None
        return self.sign(body)

    def sample_reports(self, count: int, first: int = 0) -> Iterator[bytes]:
        """Synthetic fraud-call reports about distinct made-up phone numbers (see
        ``sample_identifiers``), for demos and load: one request for pseudonyms per
        ``PSEUDONYM_BATCH`` reports."""
        for start in range(first, first + count, PSEUDONYM_BATCH):
            size = min(PSEUDONYM_BATCH, first + count - start)
            yield from self.reports(sample_identifiers(size, start), "fraud_call")

    @staticmethod
    def _check_category(category: str) -> None:
        if category not in CATEGORIES:
            raise AuthoringError(f"unknown category {category!r}; one of {', '.join(CATEGORIES)}")

    @staticmethod
    def _check_relation(relation: str) -> None:
        if relation not in RELATIONS:
            raise AuthoringError(f"unknown relation {relation!r}; one of {', '.join(RELATIONS)}")


def _shift_position(message: str, offset: int) -> str:
    """``identifiers[i]`` of a chunk starting at ``offset`` becomes ``identifiers[offset+i]``."""
    prefix = "identifiers["
    if not offset or not message.startswith(prefix):
        return message
    number, sep, rest = message[len(prefix) :].partition("]")
    if not sep or not number.isdigit():
        return message
    return f"{prefix}{int(number) + offset}]{rest}"


def load_author(
    home: Path, passphrase: str | None = None, *, pseudonyms: PseudonymSource | None = None
) -> Author:
    """The member whose home is ``home``, taking its pseudonyms from ``pseudonyms`` (its
    running node, see ``node.client.pseudonyms.author_for_home``); every problem is an
    ``AuthoringError``."""
    try:
        config = load_config(home / "config.toml")
        try:
            genesis = load_genesis(config.node.genesis_file)
        except GenesisError as exc:
            raise AuthoringError(f"{config.node.genesis_file}: {exc}") from None
        key = load_key(config.node.key_file, passphrase)
    except (ConfigError, KeyFileError, OSError) as exc:
        raise AuthoringError(str(exc)) from None
    member = genesis.member_by_key(key.public_key)
    if member is None:
        raise AuthoringError(
            f"{config.node.key_file}: this key is not a member of chain {genesis.chain_id!r}"
        )
    return Author(genesis, member.name, key.signer(), pseudonyms)


def parse_entity(text: str) -> tuple[str, str]:
    """``TYPE:VALUE`` as typed on a command line, e.g. ``phone:+86 138 0013 8000``."""
    entity_type, sep, raw = text.partition(":")
    if not sep or not raw:
        raise AuthoringError(f"an entity is TYPE:VALUE with TYPE one of {', '.join(ENTITY_TYPES)}")
    return entity_type.strip().lower(), raw
