"""How the ledger names an entity: its type and its pseudonym, never its value.

A pseudonym is the threshold OPRF of the normalised identifier (``node.identifiers.oprf``:
2HashDH under a key that the genesis members generated together and that nobody holds
whole), so computing one takes t members' evaluations (``node.pseudonyms``), each
gated, counted and recorded. Before ledger format 5 it was a keyed BLAKE2b under one key
every member held, which let any member invert every pseudonym by enumerating the small
space of phone numbers; that function is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.identifiers.normalize import EntityType

PSEUDONYM_SIZE = 32
_TYPE_NAMES = frozenset(t.value for t in EntityType)


@dataclass(frozen=True)
class EntityRef:
    """How a transaction names an entity: its type and threshold pseudonym."""

    type: str
    pseudonym: bytes

    def __post_init__(self) -> None:
        # Runs on decode too, so a malformed reference never leaves the codec.
        if self.type not in _TYPE_NAMES:
            raise ValueError(f"unknown entity type {self.type!r}")
        # An EntityType member is a str subclass; store the plain string so equality,
        # hashing and encoding never depend on which of the two a caller passed.
        object.__setattr__(self, "type", str(self.type))
        if len(self.pseudonym) != PSEUDONYM_SIZE:
            raise ValueError(f"a pseudonym is {PSEUDONYM_SIZE} bytes, got {len(self.pseudonym)}")

    @property
    def entity_type(self) -> EntityType:
        return EntityType(self.type)
