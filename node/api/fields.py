"""The field types of the API's request models and query and path parameters, and how
their failures read.

Each type checks its value as the API always has, one field at a time, in the
project's words: a check that fails raises ``PydanticCustomError(code, message)``, whose
error type is the refusal's code (``bad_hex``, ``bad_query``, ...). ``{where}``
(``WHERE``) in a message stands for the field; ``refusal_of`` fills it in from the
error's location (``entity``, ``scope[1]``, ``start_ms``, ``after[0]``) when it turns
pydantic's errors into the ``Invalid`` refusal the API answers with. Values are never
quoted back: they may be identifiers.

A type is ``Annotated`` with its check and, where the Python type does not say it, the
JSON schema the OpenAPI document shows (hex strings that arrive as bytes, say).
"""

from __future__ import annotations

import binascii
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from consensus.crypto import DIGEST_SIZE
from node.refusals import Invalid

T = TypeVar("T")

WHERE = "{where}"
NEEDED = f"the query needs {WHERE}=..."
NOT_AN_OBJECT = "the body must be a JSON object"
MAX_TIME_MS = 2**63 - 1
MAX_WAIT_S = 60.0
DEFAULT_WAIT_S = 5.0
HEX_SCHEMA = {"type": "string", "pattern": "^([0-9a-fA-F]{2})*$"}
DIGEST_SCHEMA = {"type": "string", "pattern": f"^[0-9a-fA-F]{{{2 * DIGEST_SIZE}}}$"}
# pydantic's own error types; any other type is one of the project's codes.
_PYDANTIC_ERRORS = frozenset(typing.get_args(core_schema.ErrorType))
_NOT_AN_OBJECT = ("model_type", "dict_type", "model_attributes_type")


def refused(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


def absent(**options: Any) -> Any:
    """The ``Field`` of an optional request field without a default: left out, or a value
    of its type; never null, so the document shows no default (its type refuses null)."""
    return Field(None, json_schema_extra=_no_default, **options)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def service_check(check: Callable[[Any], T]) -> Callable[[Any], T]:
    """A service's own check, which raises ``Invalid``, as a field check: the rule and
    its message stay in the service (told to name the field ``WHERE`` if it names it)."""

    def field_check(value: Any) -> T:
        try:
            return check(value)
        except Invalid as exc:
            raise refused(exc.code, exc.message) from None

    return field_check


# ------------------------------------------------------------------ failures


def refusal_of(errors: Sequence[Mapping[str, Any]]) -> Invalid:
    """The refusal for a request that failed validation: its first error (fields are
    checked in order, an object's shape before its fields), in the project's words."""
    error = errors[0]
    loc = tuple(error["loc"])
    place = loc[0] if loc and loc[0] in ("query", "path", "body") else "body"
    where = _where(loc)
    kind = error["type"]
    if kind not in _PYDANTIC_ERRORS:  # one of ours: the code, and the message
        return Invalid(kind, str(error["msg"]).replace(WHERE, where))
    if kind == "json_invalid":
        return Invalid("bad_json", "the body is not valid JSON")
    if kind == "missing" and place == "query":
        return Invalid("bad_query", NEEDED.replace(WHERE, where))
    if kind == "missing":
        return Invalid("bad_request", f"{where} is required")
    if kind in _NOT_AN_OBJECT:
        return Invalid("bad_request", NOT_AN_OBJECT)
    # A rule no field type of ours states (none should be left): pydantic's message
    # names what was expected, never the value.
    code = "bad_query" if place == "query" else "bad_request"
    return Invalid(code, f"{where}: {error['msg']}")


def _where(loc: tuple[Any, ...]) -> str:
    """The field a location names, as messages name it: the last field name, with the
    list positions after it (``("scope", 1)`` -> ``scope[1]``; ``("window", "end_ms")``
    -> ``end_ms``). A union's member labels (``list[int]``) are not field names."""
    start = 1 if loc and loc[0] in ("query", "path", "body") else 0
    names = [i for i, part in enumerate(loc) if i >= start and _is_name(part)]
    if not names:
        return "the body"
    last = names[-1]
    return str(loc[last]) + "".join(f"[{i}]" for i in loc[last + 1 :] if isinstance(i, int))


def _is_name(part: object) -> bool:
    return isinstance(part, str) and part.isidentifier()


# ------------------------------------------------------------------ checks


def text(value: object) -> str:
    if not isinstance(value, str):
        raise refused("bad_request", f"{WHERE} must be a string")
    return value


def json_integer(low: int, high: int) -> BeforeValidator:
    """An integer from ``low`` to ``high`` in a JSON body."""

    def check(value: object) -> int:
        # bool is an int in Python but not in JSON; an integral float is one in JSON Schema.
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise refused("bad_request", f"{WHERE} must be an integer")
        if not low <= value <= high:
            raise refused("bad_request", f"{WHERE} must be {low} to {high}")
        return value

    return BeforeValidator(check)


def decimal(value: object, where: str, low: int, high: int) -> int:
    """A whole number in a query string: digits only (``int`` would also take signs,
    underscores, spaces and non-ASCII digits, and a huge numeral costs time)."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20):
        raise refused("bad_query", f"{where} must be a whole number, {low} to {high}")
    number = int(value)
    if not low <= number <= high:
        raise refused("bad_query", f"{where} must be {low} to {high}")
    return number


def query_integer(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(lambda value: decimal(value, WHERE, low, high))


def flag(value: object) -> bool:
    text = str(value).lower()
    if text not in ("true", "false", "1", "0"):
        raise refused("bad_query", f"{WHERE} must be true or false")
    return text in ("true", "1")


def seconds(value: object) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise refused("bad_query", f"{WHERE} must be a number of seconds") from None
    if not (math.isfinite(number) and 0 < number <= MAX_WAIT_S):
        raise refused("bad_query", f"{WHERE} must be more than 0 and at most {MAX_WAIT_S:g}")
    return number


def needed(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise refused("bad_query", NEEDED)
    return value


def from_hex(value: object) -> bytes:
    # binascii, unlike bytes.fromhex, refuses whitespace: one spelling per value.
    if not isinstance(value, str) or not value.isascii():
        raise refused("bad_hex", f"{WHERE} must be a string of hex digits")
    try:
        return binascii.unhexlify(value)
    except binascii.Error:
        raise refused("bad_hex", f"{WHERE} is not an even number of hex digits") from None


def tx_bytes(value: object) -> bytes:
    data = from_hex(value)
    if not data:
        raise refused("empty_tx", f"{WHERE} is empty")
    return data


def digest(value: object) -> bytes:
    """A 32-byte id (transaction, block hash, salt) given as 64 hex digits."""
    if not isinstance(value, str):
        raise refused("bad_hex", f"{WHERE} must be a string of hex digits")
    if len(value) != 2 * DIGEST_SIZE:
        raise refused("bad_hex", f"{WHERE} must be {2 * DIGEST_SIZE} hex digits")
    return from_hex(value)


def height(value: object) -> int:
    """A block height in a path: digits only, as for ``decimal``."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20):
        raise refused("bad_height", "a height is a decimal number, 1 or more")
    return int(value)


# ------------------------------------------------------------------ types

Text = Annotated[str, BeforeValidator(text)]
TimeMs = Annotated[int, Field(ge=0, le=MAX_TIME_MS), json_integer(0, MAX_TIME_MS)]
Flag = Annotated[bool, BeforeValidator(flag)]
WaitSeconds = Annotated[float, Field(gt=0, le=MAX_WAIT_S), BeforeValidator(seconds)]
Needed = Annotated[str, BeforeValidator(needed)]
TxHex = Annotated[bytes, PlainValidator(tx_bytes), WithJsonSchema(HEX_SCHEMA)]
DigestHex = Annotated[bytes, PlainValidator(digest), WithJsonSchema(DIGEST_SCHEMA)]
# A digest that must first of all be a string (a 400 ``bad_request`` if not).
DigestText = Annotated[
    bytes, PlainValidator(lambda value: digest(text(value))), WithJsonSchema(DIGEST_SCHEMA)
]
Height = Annotated[int, PlainValidator(height), WithJsonSchema({"type": "integer", "minimum": 0})]
