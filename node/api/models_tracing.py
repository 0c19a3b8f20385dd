"""The request and response bodies of the case, tracing and audit endpoints
(``node.api.tracing``), as pydantic models.

Request models take what the handlers always took: no unknown fields, no nulls for
optional fields, each field refused with the API's code and a message naming it. The
rules that belong to the tracing service (what a case id or an identifier looks like)
are the service's own checks (``node.tracing.service``), called from the field types.
Response models list every field the handlers always send, with its type, so a fuzzer
checking responses against the document (``tests/test_api_fuzz.py``) catches a field
that goes missing or changes type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    create_model,
    model_validator,
)
from pydantic import WithJsonSchema as Schema

from node.api.fields import (
    MAX_TIME_MS,
    NOT_AN_OBJECT,
    WHERE,
    DigestText,
    TimeMs,
    absent,
    decimal,
    json_integer,
    query_integer,
    refused,
    service_check,
    text,
)
from node.api.models import Count, DigestStr, HexStr, JsonObject, Omitted, one_of
from node.details.records import MAX_JUSTIFICATION_CHARS, justification_problem
from node.identifiers.normalize import EntityType
from node.ledger.attributes import json_schema as attribute_schema
from node.ledger.cases import CaseState
from node.ledger.kinds import CATEGORIES, PSI_OUTCOMES, PURPOSES, QUERY_KINDS, RELATIONS
from node.ledger.transactions import MAX_SCOPE, MAX_STRING_CHARS
from node.refusals import Invalid
from node.tracing.audit import DEFAULT_LIMIT, MAX_LIMIT
from node.tracing.queries import DEFAULT_TRACE_LIMIT, MAX_GRAPH_DEPTH, Reference, TimeWindow
from node.tracing.service import ENTITY_TYPES, check_case_id, check_purpose, identifier_parts

DEFAULT_GRAPH_DEPTH = 2
# The examples of the request bodies; the fuzz test opens this very case, so the
# document's examples are answered, not only refused.
EXAMPLE_CASE_ID = "HZ-2026-0193"
EXAMPLE_ENTITY = "phone:+86 139 0000 0001"
EXAMPLE_WINDOW: dict[str, JsonValue] = {
    "start_ms": 1_767_225_600_000,
    "end_ms": 4_102_444_800_000,
}  # 2026 to 2100
RECORD_KINDS = ("report", "link", "case", "approve", "close", "access", "psi")

# ------------------------------------------------------------------ requests


def _identifier(value: object) -> str:
    identifier_parts(value, WHERE)  # the shape; the value is normalised with the key later
    assert isinstance(value, str)
    return value


def _scope(value: object) -> object:
    if not isinstance(value, list):
        raise refused("bad_scope", "scope must be a list of TYPE:VALUE strings")
    return value  # how many, and each one: the service (its messages)


def _not_null(value: object) -> object:
    if value is None:
        raise refused("bad_request", NOT_AN_OBJECT)
    return value


def _location(value: object) -> object:
    if not isinstance(value, list) or len(value) != 2:
        raise refused("bad_request", f"{WHERE} must be [height, index]")
    return value


def _shape(value: object) -> str:
    if text(value) not in ("json", "dot"):
        raise refused("bad_request", f"{WHERE} must be json or dot")
    return str(value)


def _justification(value: object) -> str:
    problem = justification_problem(value)
    if problem is not None:
        raise Invalid("bad_justification", problem)
    assert isinstance(value, str)
    return value


CaseId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_STRING_CHARS),
    BeforeValidator(service_check(check_case_id)),
]
Purpose = Annotated[
    str,
    BeforeValidator(service_check(check_purpose)),
    one_of(PURPOSES),
    Field(description="why the case is opened, one of the consortium's purposes"),
]
Justification = Annotated[
    str,
    BeforeValidator(service_check(_justification)),
    Field(
        min_length=1,
        max_length=MAX_JUSTIFICATION_CHARS,
        description="the written reasons for the case, for the approvers: free text, kept "
        "off the ledger (the case carries a salted commitment to it) and sent over the "
        "secure channel to the members that approve cases only",
    ),
]
Identifier = Annotated[
    str,
    Field(
        description="TYPE:VALUE in the clear, e.g. `phone:+86 138 0013 8000`; TYPE is one of "
        + ", ".join(ENTITY_TYPES)
    ),
    BeforeValidator(service_check(_identifier)),
]
Location = Annotated[list[TimeMs], Field(min_length=2, max_length=2)]


class WindowRequest(JsonObject):
    start_ms: TimeMs
    end_ms: TimeMs

    @model_validator(mode="after")
    def _ordered(self) -> WindowRequest:
        if self.start_ms > self.end_ms:
            raise refused("bad_window", "window.start_ms is after window.end_ms")
        return self

    @property
    def time_window(self) -> TimeWindow:
        return TimeWindow(self.start_ms, self.end_ms)


OptionalWindow = Annotated[WindowRequest | Omitted, BeforeValidator(_not_null)]


def time_window(window: WindowRequest | None) -> TimeWindow | None:
    return None if window is None else window.time_window


class OpenCaseRequest(JsonObject):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "case_id": "HZ-2026-0194",
                "purpose": "telecom_fraud",
                "justification": "Report no. 1187 of 2026: fourteen victims of calls from "
                "this number transferred money to the account in scope.",
                "scope": [EXAMPLE_ENTITY, "account:6222020200112233445"],
                "window": EXAMPLE_WINDOW,
                "expires_ms": EXAMPLE_WINDOW["end_ms"],
            }
        }
    )

    case_id: CaseId
    purpose: Purpose
    justification: Justification
    scope: Annotated[
        list[Identifier],
        Field(json_schema_extra={"minItems": 1, "maxItems": MAX_SCOPE}),
        BeforeValidator(_scope),
    ]
    window: WindowRequest
    expires_ms: TimeMs


class TraceRequest(JsonObject):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"case_id": EXAMPLE_CASE_ID, "entity": EXAMPLE_ENTITY, "limit": 100}
        }
    )

    case_id: CaseId
    entity: Identifier
    window: OptionalWindow = absent()
    limit: Annotated[
        int, Field(ge=1, le=DEFAULT_TRACE_LIMIT), json_integer(1, DEFAULT_TRACE_LIMIT)
    ] = DEFAULT_TRACE_LIMIT
    after: Annotated[Location | Omitted, BeforeValidator(_location)] = absent(
        description="`next_after` of the previous page"
    )


class GraphRequest(JsonObject):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"case_id": EXAMPLE_CASE_ID, "entity": EXAMPLE_ENTITY, "depth": 3}
        }
    )

    case_id: CaseId
    entity: Identifier
    depth: Annotated[int, Field(ge=0, le=MAX_GRAPH_DEPTH), json_integer(0, MAX_GRAPH_DEPTH)] = (
        DEFAULT_GRAPH_DEPTH
    )
    window: OptionalWindow = absent()
    format: Annotated[Literal["json", "dot"], BeforeValidator(_shape)] = "json"


class HistoryRequest(JsonObject):
    model_config = ConfigDict(
        json_schema_extra={"example": {"case_id": EXAMPLE_CASE_ID, "tx_id": "3f" * 32}}
    )

    case_id: CaseId
    tx_id: DigestText
    window: OptionalWindow = absent()


@dataclass(frozen=True)
class LedgerPosition:
    """``HEIGHT:INDEX`` (not a tuple: FastAPI would read a sequence type as a repeated
    parameter)."""

    height: int
    index: int


def _after(value: object) -> LedgerPosition:
    height, sep, index = str(value).partition(":")
    if not sep:
        raise refused("bad_query", f"{WHERE} must be HEIGHT:INDEX")
    return LedgerPosition(
        decimal(height, f"{WHERE} height", 0, MAX_TIME_MS),
        decimal(index, f"{WHERE} index", 0, MAX_TIME_MS),
    )


def _query_kind(value: object) -> object:
    if value not in QUERY_KINDS:
        raise refused("bad_query", f"{WHERE} must be one of {', '.join(QUERY_KINDS)}")
    return value


class AuditQuery(BaseModel):
    """The filters of ``GET /audit``, and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case: Annotated[str | Omitted, BeforeValidator(service_check(check_case_id))] = absent(
        min_length=1, max_length=MAX_STRING_CHARS
    )
    member: str | Omitted = absent()
    query: Annotated[str | Omitted, BeforeValidator(_query_kind), one_of(QUERY_KINDS)] = absent()
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), query_integer(1, MAX_LIMIT)] = DEFAULT_LIMIT
    after: Annotated[
        LedgerPosition | Omitted,
        PlainValidator(_after),
        Schema({"type": "string", "pattern": "^[0-9]{1,19}:[0-9]{1,19}$"}),
    ] = absent(description="HEIGHT:INDEX, as `next_after` gives it")

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.keys() <= cls.model_fields.keys():
            names = ", ".join(cls.model_fields)
            raise refused("bad_query", f"unexpected parameters; they are {names}")
        return data


# ------------------------------------------------------------------ responses


class Entity(BaseModel):
    type: EntityType
    pseudonym: DigestStr = Field(description="the threshold pseudonym of the normalised value")


class Window(BaseModel):
    start_ms: Count
    end_ms: Count
    start: str
    end: str


class LedgerEntry(BaseModel):
    tx_id: DigestStr
    member: str
    height: Count
    index: Count
    time_ms: Count
    time: str = Field(description="`time_ms` in UTC, ISO 8601")
    actor: HexStr | None = Field(
        None,
        description="for case opens, approvals, closes, queries and PSI runs: the acting "
        "user's pseudonymous id (32 hex digits; all zero: the node's own policy)",
    )
    actor_name: str | None = Field(
        None, description="the user's name, on the member whose user it is only"
    )


class ReportFactBase(LedgerEntry):
    kind: Literal["report"]
    subject: Entity
    case_id: str | None
    observed_ms: Count
    observed: str
    has_details: bool


def _report_fact(category: str) -> type[BaseModel]:
    """A report of one category, with that category's attribute schema
    (``node.ledger.attributes``): each value a string in its one spelling."""
    name = "Report" + "".join(part.title() for part in category.split("_"))
    model: type[BaseModel] = create_model(
        name,
        __base__=ReportFactBase,
        category=(cast(Any, Literal)[category], ...),
        attributes=(
            Annotated[dict[str, str], Schema(attribute_schema(category))],
            Field(description=f"the attributes of a {category} report: typed values"),
        ),
    )
    return model


REPORT_FACTS = tuple(_report_fact(category) for category in CATEGORIES)


class LinkFact(LedgerEntry):
    kind: Literal["link"]
    relation: Annotated[str, one_of(RELATIONS)]
    a: Entity
    b: Entity
    observed_ms: Count
    observed: str
    has_evidence: bool


# One schema per report category and the link: `kind` and `category` (constants in each)
# tell which one a record is. A plain union, as OpenAPI's discriminator cannot nest.
if TYPE_CHECKING:
    Fact = ReportFactBase | LinkFact
else:
    Fact = Union[(*REPORT_FACTS, LinkFact)]


class CaseStatus(BaseModel):
    opened: LedgerEntry
    case_id: str
    purpose: Annotated[str, one_of(PURPOSES)]
    justification_commitment: DigestStr = Field(
        description="salted BLAKE2b-256 commitment to the written justification"
    )
    scope: list[Entity]
    window: Window
    expires_ms: Count
    expires: str
    state: CaseState
    reason: str = Field(description="the state, for a person: approvals, expiry, closure")
    approvals: list[LedgerEntry] = Field(description="those that count")
    needed: Count = Field(description="approvals the genesis requires (k)")
    closed: LedgerEntry | None
    now_ms: Count = Field(description="the time the state was decided at")


class CaseJustification(BaseModel):
    status: Literal[
        "held", "not_entitled", "pending", "deleted", "no_commitment", "not_found", "unavailable"
    ] = Field(
        description="`held` when this node holds the justification; else why not: "
        "`not_entitled` (this member does not approve cases, or it has not arrived), "
        "`pending`, `deleted` (by retention), `unavailable` (no private details here)"
    )
    text: str | None = Field(description="the opener's written justification, when held")
    matches_commitment: bool | None = Field(
        description="whether what is held matches `justification_commitment` (null: not held)"
    )
    sender: str | None = Field(description="the member it came from (the opener)")
    message: str


class CaseShown(CaseStatus):
    justification: CaseJustification = Field(
        description="the justification this node holds for the case, checked against the "
        "ledger's commitment, or why it holds none"
    )


class CaseList(BaseModel):
    needed: Count
    height: Count
    cases: list[CaseStatus]


class CaseChange(BaseModel):
    tx_id: DigestStr
    committed: bool
    height: Count | None
    index: Count | None
    case: CaseStatus | None = Field(description="the case once committed")


class AccessRecord(BaseModel):
    tx_id: DigestStr
    committed: Literal[True]
    height: Count
    index: Count


class Answered(BaseModel):
    """What every answer to a query starts with: the grant, and the access record."""

    case_id: str
    case_tx: DigestStr
    query: Literal["trace", "graph", "history"]
    entity: Entity = Field(description="the subject (for history: the record's)")
    window: Window = Field(description="the case's window, narrowed as asked")
    access: AccessRecord


PageMark = Annotated[list[Count], Field(min_length=2, max_length=2)]


class TraceAnswer(Answered):
    records: list[Fact] = Field(description="reports and links, in ledger order")
    truncated: bool
    next_after: PageMark | None = Field(description="pass as `after` for the next page")


class GraphNode(BaseModel):
    type: EntityType
    pseudonym: DigestStr
    depth: Count


class GraphEdge(LedgerEntry):
    relation: Annotated[str, one_of(RELATIONS)]
    a: Entity
    b: Entity
    observed_ms: Count
    observed: str


class GraphAnswer(Answered):
    depth: Count
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool = Field(description="a cap on nodes or edges left some out")


class HistoryRecord(LedgerEntry):
    kind: Annotated[str, one_of(RECORD_KINDS)]


class Referrer(HistoryRecord):
    how: Reference


class HistoryAnswer(Answered):
    record: HistoryRecord
    referred_by: list[Referrer]
    truncated: bool


class PsiAudit(BaseModel):
    run_id: HexStr
    initiator: str
    responder: str
    entity_type: EntityType
    initiator_size: Count
    responder_size: Count
    result_size: Count
    outcome: Annotated[str, one_of(PSI_OUTCOMES)]


class AuditRecord(LedgerEntry):
    case_id: str
    query: Annotated[str, one_of(QUERY_KINDS)]
    subject: Entity | None = Field(description="null for a PSI run")
    answered_ms: Count
    answered: str
    psi: PsiAudit | None = Field(
        description="a PSI run's record (the two members, set sizes, outcome)"
    )
    evaluation: HexStr | None = Field(
        None,
        description="the pseudonym evaluation that gave the subject's pseudonym (its "
        "request id, as the evaluating members logged it); null when none was needed",
    )


class AuditList(BaseModel):
    records: list[AuditRecord]
    next_after: PageMark | None = Field(
        description="pass as `after=HEIGHT:INDEX` for the next page"
    )
