"""Writing transactions as a member: the operator's side of ``crosstrace submit``.

A member's home has everything needed to author a transaction without the node: the
config names the key, the genesis and the pseudonym key. Identifiers are normalised
and pseudonymised here, so the clear value never leaves this process (the API only
ever sees the signed transaction).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from consensus.codec import MAX_UINT
from consensus.crypto import Signer
from node.identifiers.normalize import EntityType, NormalizationError
from node.identifiers.pseudonym import EntityRef, PseudonymKey, PseudonymKeyError
from node.ledger.attributes import SchemaError, attributes_of
from node.ledger.kinds import CATEGORIES, RELATIONS, Attribute, Body, Link, Report
from node.ledger.transactions import encode_tx, make_tx
from node.setup.config import ConfigError, load_config
from node.setup.genesis import Genesis, GenesisError, load_genesis
from node.setup.keys import KeyFileError, load_key

ENTITY_TYPES = tuple(t.value for t in EntityType)


class AuthoringError(ValueError):
    """The transaction cannot be written as asked; the message says why."""


@dataclass(frozen=True)
class Author:
    """One member, ready to sign transactions for its consortium."""

    genesis: Genesis
    member: str
    signer: Signer
    pseudonym_key: PseudonymKey

    def entity(self, entity_type: str, raw: str) -> EntityRef:
        if entity_type not in ENTITY_TYPES:
            raise AuthoringError(
                f"unknown entity type {entity_type!r}; one of {', '.join(ENTITY_TYPES)}"
            )
        try:
            return self.pseudonym_key.ref(entity_type, raw)
        except NormalizationError as exc:
            # The value itself stays out of the message: it may be an identifier.
            raise AuthoringError(str(exc)) from None

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
        if category not in CATEGORIES:
            raise AuthoringError(f"unknown category {category!r}; one of {', '.join(CATEGORIES)}")
        try:
            typed = attributes_of(category, attributes)
        except SchemaError as exc:
            raise AuthoringError(str(exc)) from None
        try:
            body = Report(
                subject=self.entity(entity_type, raw),
                category=category,
                attributes=tuple(Attribute(k, v) for k, v in typed),
                case_id=case_id,
                observed_ms=int(time.time() * 1000),
                details_commitment=details_commitment,
            )
        except ValueError as exc:
            raise AuthoringError(str(exc)) from None
        return self.sign(body)

    def link(
        self,
        a: tuple[str, str],
        b: tuple[str, str],
        relation: str,
        evidence_commitment: bytes | None = None,
    ) -> bytes:
        if relation not in RELATIONS:
            raise AuthoringError(f"unknown relation {relation!r}; one of {', '.join(RELATIONS)}")
        try:
            body = Link(
                a=self.entity(*a),
                b=self.entity(*b),
                relation=relation,
                observed_ms=int(time.time() * 1000),
                evidence_commitment=evidence_commitment,
            )
        except ValueError as exc:
            raise AuthoringError(str(exc)) from None
        return self.sign(body)

    def sample_reports(self, count: int, first: int = 0) -> Iterator[bytes]:
        """Synthetic fraud-call reports about distinct made-up phone numbers, for demos
        and load: numbers in the +86 170 range the operators reserve for virtual carriers."""
        for i in range(first, first + count):
            number = f"+86 170 {i // 10000 % 10000:04d} {i % 10000:04d}"
            yield self.report("phone", number, "fraud_call")


def load_author(home: Path, passphrase: str | None = None) -> Author:
    """The member whose home is ``home``; every problem is an ``AuthoringError``."""
    try:
        config = load_config(home / "config.toml")
        try:
            genesis = load_genesis(config.node.genesis_file)
        except GenesisError as exc:
            raise AuthoringError(f"{config.node.genesis_file}: {exc}") from None
        key = load_key(config.node.key_file, passphrase)
        pseudonym_key = PseudonymKey.load(config.tracing.pseudonym_key_file)
    except (ConfigError, KeyFileError, PseudonymKeyError, OSError) as exc:
        raise AuthoringError(str(exc)) from None
    member = genesis.member_by_key(key.public_key)
    if member is None:
        raise AuthoringError(
            f"{config.node.key_file}: this key is not a member of chain {genesis.chain_id!r}"
        )
    return Author(genesis, member.name, key.signer(), pseudonym_key)


def parse_entity(text: str) -> tuple[str, str]:
    """``TYPE:VALUE`` as typed on a command line, e.g. ``phone:+86 138 0013 8000``."""
    entity_type, sep, raw = text.partition(":")
    if not sep or not raw:
        raise AuthoringError(f"an entity is TYPE:VALUE with TYPE one of {', '.join(ENTITY_TYPES)}")
    return entity_type.strip().lower(), raw
