"""The query parameters and response bodies of the PSI endpoints (``node.api.psi``), as
pydantic models. The request bodies are identifier sets as text, one a line
(``SET_BODY``), checked by the PSI service. Response models list every field the
handlers always send, with its type."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from node.api.fields import Flag, Needed
from node.api.models import Count, Error, Omitted, one_of
from node.identifiers.normalize import EntityType
from node.psi.inputs import ENTITY_TYPES
from node.psi.run import RunState

EXAMPLE_SET = "+86 138 0013 8000\n+86 139 0000 0001\n"
DEDUPE = "Keep the first of identifiers that repeat once normalised, not refuse."


Dedupe = Annotated[Flag, Field(description=DEDUPE)]


class DedupeQuery(BaseModel):
    dedupe: Dedupe = False


class StartQuery(BaseModel):
    """``POST /psi/runs``: with whom, under which case, over which entity type."""

    case: Needed
    with_: Needed = Field(alias="with")
    # Any text: the service refuses an unknown type with the set's own refusal (bad_type).
    type: Annotated[Needed, one_of(ENTITY_TYPES)]
    dedupe: Dedupe = False


class Progress(BaseModel):
    done: Count
    total: Count | None
    own_sent: Count
    peer_received: Count
    peer_tagged: Count
    tags_received: Count


class RunRecord(BaseModel):
    tx_id: str
    height: Count | None


class PsiRun(BaseModel):
    run_id: Annotated[str, Field(pattern="^[0-9a-fA-F]{32}$")]
    role: Literal["initiator", "responder"]
    peer: str
    case_id: str
    entity_type: EntityType
    state: RunState
    outcome: str | None
    message: str
    own_size: Count
    peer_size: Count | None
    result_size: Count | None
    prepared: bool
    progress: Progress
    record: RunRecord | None
    started_ms: Count
    finished_ms: Count | None
    timings_s: dict[str, float]


class InputSummary(BaseModel):
    lines: Count
    identifiers: Count
    dropped: Count
    seconds: float = Field(description="Normalising and checking the set.")


class PsiRunStarted(PsiRun):
    input: InputSummary


class PsiRunResult(PsiRun):
    intersection: list[str] | None


class PsiRunList(BaseModel):
    runs: list[PsiRun]
    answering: bool
    answer_sets: dict[str, Any]
    loading: list[str] | Omitted = None
    workers: Count
    stats: dict[str, Any]


class Problem(BaseModel):
    line: Count
    message: str


class PsiInputError(Error):
    """A set refused: ``bad_lines``, ``empty``, ``duplicates``, ``not_text``, ``bad_type``
    or ``too_large``, with the lines at fault."""

    problems: list[Problem]


class AnswerSetInfo(BaseModel):
    size: Count
    source: str
    loaded_ms: Count
    prepared: bool


class PsiAnswerSets(BaseModel):
    answering: bool
    answer_sets: dict[str, AnswerSetInfo]
    loading: list[str]


class PsiAnswerSet(BaseModel):
    entity_type: EntityType
    size: Count
    source: str
    loaded_ms: Count
