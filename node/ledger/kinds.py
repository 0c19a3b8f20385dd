"""Body types of the transaction kinds.

A body's ``__post_init__`` checks what holds regardless of context (fixed
vocabularies, the attribute schema of ``node.ledger.attributes``, commitment sizes,
ordering); the codec turns its ``ValueError`` into a decode error, so a body that breaks
them can neither be built nor decoded. Size limits and the raw-identifier screen
(``node.identifiers.screen``) need their own rejection codes and live in validation.

No field is free text. A report's attributes are typed fields from a closed schema per
category; a case's purpose is one of ``PURPOSES``, and its written justification is a
private detail (``node.details.records``) that only its salted commitment
(``justification_commitment``) puts on the ledger.

What people do under a case (open, approve, close it, query, intersect) carries
``actor``: the acting user's pseudonymous id (``node.setup.users``), 16 bytes fixed when
the user was created. The member that signed can resolve it to the person; the others
see only that the same officer acted. ``NODE_ACTOR`` (all zero) is the node's own
policy (answering a PSI run, say).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from consensus.crypto import DIGEST_SIZE
from node.identifiers.normalize import EntityType
from node.identifiers.pseudonym import EntityRef

# The report categories are defined with their attribute schema; re-exported here.
from node.ledger.attributes import CATEGORIES as CATEGORIES
from node.ledger.attributes import check_keys, check_together, parse

# The acting user's id: its size, and the node's own (re-exported).
from node.setup.users import ACTOR_SIZE as ACTOR_SIZE
from node.setup.users import NODE_ACTOR as NODE_ACTOR

EVALUATION_ID_SIZE = 16

# Why a case is opened, in the consortium's words; the reasons behind one case are its
# justification, which stays off the ledger.
PURPOSES = (
    "telecom_fraud",
    "money_laundering",
    "account_takeover",
    "identity_theft",
    "phishing",
    "investment_scam",
    "organised_crime",
    "other_serious_crime",
)
RELATIONS = (
    "owns",
    "uses",
    "transferred_to",
    "called",
    "messaged",
    "registered_with",
    "logged_in_from",
    "same_person",
)
QUERY_KINDS = ("trace", "graph", "history", "psi")
# The queries that are about one entity; a PSI run is about two members' sets.
SUBJECT_QUERIES = ("trace", "graph", "history")

_ENTITY_TYPES = tuple(t.value for t in EntityType)
# Case ids are chosen by people and typed into queries: keep them to one token.
_CASE_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:/-]*[A-Za-z0-9])?")


def _check_commitment(value: bytes | None, name: str) -> None:
    if value is not None:
        _check_digest(value, name)


def _check_digest(value: bytes, name: str) -> None:
    """A transaction id or commitment: exactly one digest long."""
    if len(value) != DIGEST_SIZE:
        raise ValueError(f"{name} must be {DIGEST_SIZE} bytes, got {len(value)}")


def _check_actor(actor: bytes) -> None:
    if len(actor) != ACTOR_SIZE:
        raise ValueError(f"actor must be {ACTOR_SIZE} bytes, got {len(actor)}")


def _check_case_id(case_id: str) -> None:
    if not _CASE_ID.fullmatch(case_id):
        raise ValueError("case_id must be letters and digits, optionally joined by . _ : / -")


@dataclass(frozen=True)
class Attribute:
    """One typed field of a report: a key of the schema and its value in the one
    spelling the key's type allows (``node.ledger.attributes``)."""

    key: str
    value: str

    def __post_init__(self) -> None:
        parse(self.key, self.value)


@dataclass(frozen=True)
class Report:
    """A member's observation about one entity."""

    kind: ClassVar[str] = "report"

    subject: EntityRef
    category: str
    attributes: tuple[Attribute, ...]
    case_id: str | None
    observed_ms: int
    details_commitment: bytes | None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(CATEGORIES)}")
        keys = [a.key for a in self.attributes]
        # One order per attribute set, so equal reports encode (and hash) equally.
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise ValueError("attribute keys must be unique and sorted")
        check_keys(self.category, keys)
        if len(keys) > 1:
            check_together({a.key: parse(a.key, a.value) for a in self.attributes})
        if self.case_id is not None:
            _check_case_id(self.case_id)
        _check_commitment(self.details_commitment, "details_commitment")


@dataclass(frozen=True)
class Link:
    """An edge between two entities, as the signing member observed it."""

    kind: ClassVar[str] = "link"

    a: EntityRef
    b: EntityRef
    relation: str
    observed_ms: int
    evidence_commitment: bytes | None

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {', '.join(RELATIONS)}")
        if self.a == self.b:
            raise ValueError("a link needs two different entities")
        _check_commitment(self.evidence_commitment, "evidence_commitment")


@dataclass(frozen=True)
class Case:
    """An investigation: what may be queried, why, and until when.

    ``purpose`` is one of ``PURPOSES``; the written justification is a private detail
    sent to the approvers, and ``justification_commitment`` its salted commitment
    (``node.details.records.commitment``), so an approver can check that what it read is
    what the opener committed to.
    """

    kind: ClassVar[str] = "case"

    case_id: str
    purpose: str
    justification_commitment: bytes
    scope: tuple[EntityRef, ...]
    window_start_ms: int
    window_end_ms: int
    expires_ms: int
    actor: bytes = NODE_ACTOR

    def __post_init__(self) -> None:
        _check_case_id(self.case_id)
        _check_actor(self.actor)
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}")
        _check_digest(self.justification_commitment, "justification_commitment")
        if not self.scope:
            raise ValueError("scope must name at least one entity")
        if len(set(self.scope)) != len(self.scope):
            raise ValueError("scope lists an entity twice")
        if self.window_start_ms > self.window_end_ms:
            raise ValueError("window_start_ms is after window_end_ms")


@dataclass(frozen=True)
class Approve:
    """One approver's consent to one case.

    ``case_tx`` is the id of the ``case`` transaction being approved: naming the
    case id alone would let a different case under the same id, committed first,
    collect approvals given for another scope or purpose.
    """

    kind: ClassVar[str] = "approve"

    case_id: str
    case_tx: bytes
    actor: bytes = NODE_ACTOR

    def __post_init__(self) -> None:
        _check_case_id(self.case_id)
        _check_actor(self.actor)
        _check_digest(self.case_tx, "case_tx")


@dataclass(frozen=True)
class Access:
    """The audit entry for one answered query."""

    kind: ClassVar[str] = "access"

    case_id: str
    query: str
    subject: EntityRef | None
    answered_ms: int
    actor: bytes = NODE_ACTOR
    # The pseudonym evaluation that gave the subject's pseudonym (its request id,
    # ``node.pseudonyms``); empty for a query that evaluated nothing (a graph from a
    # pseudonym, an audit query). Evaluators log the ids they answered, so an
    # evaluation under a case that no access record names stands out.
    evaluation: bytes = b""

    def __post_init__(self) -> None:
        _check_case_id(self.case_id)
        _check_actor(self.actor)
        if self.evaluation and len(self.evaluation) != EVALUATION_ID_SIZE:
            raise ValueError(f"evaluation is empty or {EVALUATION_ID_SIZE} bytes")
        if self.query not in QUERY_KINDS:
            raise ValueError(f"query must be one of {', '.join(QUERY_KINDS)}")
        if (self.subject is None) == (self.query in SUBJECT_QUERIES):
            need = "needs" if self.query in SUBJECT_QUERIES else "takes no"
            raise ValueError(f"a {self.query} query {need} subject")


@dataclass(frozen=True)
class Close:
    """The end of a case before its expiry: from then on it authorises nothing.

    Like ``Approve`` it names the exact ``case`` transaction, so closing one case
    can never be read as closing another that reuses the id.
    """

    kind: ClassVar[str] = "close"

    case_id: str
    case_tx: bytes
    actor: bytes = NODE_ACTOR

    def __post_init__(self) -> None:
        _check_case_id(self.case_id)
        _check_actor(self.actor)
        _check_digest(self.case_tx, "case_tx")


# How a private set intersection run ended: "completed", or why it failed
# (``node.psi.protocol`` explains each).
PSI_OUTCOMES = (
    "completed",
    "wrong_count",
    "out_of_order",
    "invalid_point",
    "duplicate",
    "unexpected",
    "malformed",
    "aborted",
    "timeout",
    "failed",
)
PSI_RUN_ID_SIZE = 16


@dataclass(frozen=True)
class PsiRun:
    """One member's record of a private set intersection run with another member under
    a case: who took part, the set sizes and how many elements they share, never the
    elements. Each of the two members records its own view; ``run_id`` pairs them.

    ``Access`` has no room for two members and three sizes, and changing its encoding
    would make committed access records undecodable, hence a kind of its own.
    """

    kind: ClassVar[str] = "psi"

    case_id: str
    case_tx: bytes  # the exact case transaction, as ``Approve`` names it
    run_id: bytes
    initiator: str
    responder: str
    entity_type: str
    initiator_size: int
    responder_size: int
    result_size: int
    outcome: str
    finished_ms: int
    actor: bytes = NODE_ACTOR

    def __post_init__(self) -> None:
        _check_case_id(self.case_id)
        _check_actor(self.actor)
        _check_digest(self.case_tx, "case_tx")
        if len(self.run_id) != PSI_RUN_ID_SIZE:
            raise ValueError(f"run_id must be {PSI_RUN_ID_SIZE} bytes, got {len(self.run_id)}")
        if self.initiator == self.responder:
            raise ValueError("a run needs two different members")
        if self.entity_type not in _ENTITY_TYPES:
            raise ValueError(f"entity_type must be one of {', '.join(_ENTITY_TYPES)}")
        if self.outcome not in PSI_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(PSI_OUTCOMES)}")
        if self.initiator_size < 1 or self.responder_size < 1:
            raise ValueError("set sizes are at least 1: empty sets never start a run")
        if self.result_size > min(self.initiator_size, self.responder_size):
            raise ValueError("result_size exceeds the smaller set")
        if self.outcome != "completed" and self.result_size:
            raise ValueError("a run that did not complete has no result")


# How a reporting member answered a disclosure request (``node.disclosure``): it sent
# the identifier, its operator refused, it holds no identifier for the entity, or the
# entity is outside the case's scope and graph depth as its own ledger shows it.
DISCLOSURE_OUTCOMES = ("allowed", "denied", "unknown", "outside_scope")
DISCLOSURE_REQUEST_ID_SIZE = 16


@dataclass(frozen=True)
class DisclosureRequest:
    """A member's request, under a case, for the clear identifier behind one entity
    from the members that reported it. The requesting member is the signer; the
    identifier itself never goes on the ledger, only the entity's pseudonym."""

    kind: ClassVar[str] = "disclosure_request"

    case_id: str
    case_tx: bytes  # the exact case transaction, as ``Approve`` names it
    request_id: bytes
    entity: EntityRef
    requested_ms: int
    actor: bytes = NODE_ACTOR  # the requesting user, as on the other records

    def __post_init__(self) -> None:
        _check_actor(self.actor)
        _check_case_id(self.case_id)
        _check_digest(self.case_tx, "case_tx")
        if len(self.request_id) != DISCLOSURE_REQUEST_ID_SIZE:
            raise ValueError(
                f"request_id must be {DISCLOSURE_REQUEST_ID_SIZE} bytes, got {len(self.request_id)}"
            )


@dataclass(frozen=True)
class DisclosureAnswer:
    """A reporting member's answer to one disclosure request: who asked, the outcome;
    never the identifier (it travels to the requester over the secure channel only).
    The answering member is the signer."""

    kind: ClassVar[str] = "disclosure_answer"

    request_id: bytes
    request_tx: bytes
    requester: str
    outcome: str
    answered_ms: int
    actor: bytes = NODE_ACTOR  # the operator who allowed or denied; the node's own by policy

    def __post_init__(self) -> None:
        _check_actor(self.actor)
        if len(self.request_id) != DISCLOSURE_REQUEST_ID_SIZE:
            raise ValueError(
                f"request_id must be {DISCLOSURE_REQUEST_ID_SIZE} bytes, got {len(self.request_id)}"
            )
        _check_digest(self.request_tx, "request_tx")
        if self.outcome not in DISCLOSURE_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(DISCLOSURE_OUTCOMES)}")


Body = (
    Report | Link | Case | Approve | Access | Close | PsiRun | DisclosureRequest | DisclosureAnswer
)
BODY_TYPES: dict[str, type[Body]] = {
    cls.kind: cls
    for cls in (
        Report,
        Link,
        Case,
        Approve,
        Access,
        Close,
        PsiRun,
        DisclosureRequest,
        DisclosureAnswer,
    )
}
KIND_ROLES: dict[str, frozenset[str]] = {
    "report": frozenset({"reporter"}),
    "link": frozenset({"reporter"}),
    "case": frozenset({"investigator"}),
    "approve": frozenset({"approver"}),
    "access": frozenset({"investigator", "auditor"}),
    "close": frozenset({"investigator"}),
    # Those who may query may intersect: both members of a run sign its record.
    "psi": frozenset({"investigator", "auditor"}),
    "disclosure_request": frozenset({"investigator"}),
    # Only a member that reported the entity is asked, and it answers.
    "disclosure_answer": frozenset({"reporter"}),
}


def body_strings(obj: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a body with its field path, for limits and scanning."""
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, tuple):
        for i, item in enumerate(obj):
            yield from body_strings(item, f"{path}[{i}]")
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from body_strings(getattr(obj, f.name), f"{path}.{f.name}")
