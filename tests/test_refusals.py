"""The project's refusals (``node.refusals``): each kind has exactly one HTTP status, and
only ``node.api`` knows it; the services raise refusals that carry no status; pydantic's
validation errors become ``Invalid`` refusals with the API's codes and messages."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from node.api.errors import STATUS, refusal_response, status_of
from node.api.fields import refusal_of
from node.api.models import DetailsRequest, SubmitRequest
from node.api.models_tracing import AuditQuery, GraphRequest, TraceRequest
from node.psi.inputs import PsiInputError, check_entity_type, decode_text, split_lines
from node.refusals import (
    KINDS,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Refusal,
    Rejected,
    TooLarge,
    Unavailable,
    Unsupported,
)
from node.tracing.service import check_case_id, identifier_parts

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("tracing", "psi", "details")


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (Invalid, 400),
        (Forbidden, 403),
        (NotFound, 404),
        (Conflict, 409),
        (TooLarge, 413),
        (Unsupported, 415),
        (Rejected, 422),
        (Unavailable, 503),
    ],
)
def test_every_kind_of_refusal_has_its_status(kind: type[Refusal], status: int) -> None:
    refusal = kind("some_code", "what went wrong", {"results": [{"tx_id": "00"}]})
    assert status_of(refusal) == status
    response = refusal_response(refusal)
    assert response.status_code == status
    assert json.loads(response.body) == {
        "error": "some_code",
        "message": "what went wrong",
        "results": [{"tx_id": "00"}],
    }


def test_the_mapping_covers_exactly_the_kinds() -> None:
    assert set(STATUS) == set(KINDS)
    assert len(set(STATUS.values())) == len(KINDS)
    # A refusal that is no kind is a bug, not a status.
    with pytest.raises(TypeError):
        status_of(Refusal("x", "y"))
    # A service's own subclass of a kind answers with its kind's status.
    assert status_of(PsiInputError("bad_lines", "2 lines are not phone identifiers")) == 400


def _refusals_raised_by_the_services() -> list[Refusal]:
    raised: list[Refusal] = []
    for attempt in (
        lambda: check_case_id("a b"),
        lambda: check_case_id(5),
        lambda: identifier_parts(13800138000, "entity"),
        lambda: identifier_parts("gsm:1", "scope[2]"),
        lambda: check_entity_type("gsm"),
        lambda: decode_text(b"ok\n\xff\n"),
        lambda: split_lines("1\n2\n3\n", 2),
    ):
        with pytest.raises(Refusal) as caught:
            attempt()
        raised.append(caught.value)
    return raised


def test_services_raise_refusals_that_carry_no_http_status() -> None:
    raised = _refusals_raised_by_the_services()
    assert {type(r) for r in raised} == {Invalid, PsiInputError, TooLarge}
    for refusal in raised:
        assert isinstance(refusal, KINDS)
        assert not hasattr(refusal, "status") and not hasattr(refusal, "status_code")
        assert set(vars(refusal)) <= {"code", "message", "details", "problems"}
        assert refusal.code.replace("_", "").isalpha() and refusal.code.islower()
    assert raised[2].message == "entity must be a string TYPE:VALUE"
    assert raised[6].details == {"problems": []}


def test_service_packages_know_no_http() -> None:
    """No HTTP framework is imported below ``node.api``, and no refusal is constructed
    with a number (a status) in node/tracing, node/psi or node/details."""
    kinds = {kind.__name__ for kind in (*KINDS, Refusal)}
    found = []
    for package in SERVICES:
        for path in sorted((ROOT / "node" / package).glob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom | ast.Import):
                    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                    names += [alias.name for alias in node.names]
                    if any(n.split(".")[0] in ("starlette", "fastapi", "http") for n in names):
                        found.append(f"{path.name}: imports {names}")
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in kinds
                    and any(
                        isinstance(arg, ast.Constant) and isinstance(arg.value, int)
                        for arg in [*node.args, *(k.value for k in node.keywords)]
                    )
                ):
                    found.append(f"{path.name}:{node.lineno}: {node.func.id} with a number")
                if isinstance(node, ast.keyword) and node.arg in ("status", "status_code"):
                    found.append(f"{path.name}:{node.value.lineno}: {node.arg}=")
    assert found == []


def _invalid(model: type[BaseModel], doc: object) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(doc)
    refusal = refusal_of(caught.value.errors())
    return refusal.code, refusal.message


@pytest.mark.parametrize(
    ("model", "doc", "code", "message"),
    [
        (TraceRequest, [], "bad_request", "the body must be a JSON object"),
        (TraceRequest, {"entity": "phone:1"}, "bad_request", "case_id is required"),
        (
            GraphRequest,
            {"case_id": "C", "entity": "phone:1", "x": 1},
            "bad_request",
            "unexpected fields; the fields are case_id, entity, depth, window, format",
        ),
        (TraceRequest, {"case_id": "C", "entity": 5}, "bad_identifier",
         "entity must be a string TYPE:VALUE"),
        (TraceRequest, {"case_id": "C", "entity": "phone:1", "after": [1, -1]}, "bad_request",
         f"after[1] must be 0 to {2**63 - 1}"),
        (TraceRequest, {"case_id": "C", "entity": "phone:1", "window": {"start_ms": "x",
         "end_ms": 1}}, "bad_request", "start_ms must be an integer"),
        (TraceRequest, {"case_id": "C", "entity": "phone:1", "window": None}, "bad_request",
         "the body must be a JSON object"),
        (GraphRequest, {"case_id": "C", "entity": "phone:1", "format": None}, "bad_request",
         "format must be a string"),
        (SubmitRequest, {"txs": ["00", "0"]}, "bad_hex",
         "txs[1] is not an even number of hex digits"),
        (SubmitRequest, {"tx": ""}, "empty_tx", "tx is empty"),
        (SubmitRequest, {"tx": "00", "x": 1}, "bad_request",
         'expected an object with one field: "tx" or "txs"'),
        (DetailsRequest, {"tx": "00"}, "bad_request",
         'expected an object with "tx", "salt", "details" and optionally "share_with"'),
        (DetailsRequest, {"tx": "00", "salt": 5, "details": {}}, "bad_hex",
         "salt must be a string of hex digits"),
        (AuditQuery, {"who": "x"}, "bad_query",
         "unexpected parameters; they are case, member, query, limit, after"),
        (AuditQuery, {"after": "1:x"}, "bad_query",
         f"after index must be a whole number, 0 to {2**63 - 1}"),
    ],
)  # fmt: skip
def test_validation_errors_become_invalid_refusals_naming_the_field(
    model: type[BaseModel], doc: object, code: str, message: str
) -> None:
    assert _invalid(model, doc) == (code, message)


def test_a_value_is_never_quoted_back() -> None:
    secret = "+8613800138000"
    for model, doc in [
        (TraceRequest, {"case_id": "C", "entity": secret, "limit": secret}),
        (TraceRequest, {"case_id": secret, "entity": "phone:1"}),
        (SubmitRequest, {"tx": secret}),
        (DetailsRequest, {"tx": "00", "salt": secret, "details": {}}),
    ]:
        code, message = _invalid(model, doc)
        assert secret not in message and "13800138000" not in message, (code, message)
