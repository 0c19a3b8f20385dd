"""Strict JSON for the genesis and its kin (draft, member descriptor): a file of
bounded size read with duplicate keys and NaN/Infinity refused, and typed field readers
whose ``GenesisError`` names the field's path (``members[2].public_key``)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from node.setup.genesis_errors import GenesisError
from node.setup.keys import reject_duplicate_keys

MAX_FILE_BYTES = 4 * 1024 * 1024
T = TypeVar("T")


def json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def object_fields(value: object, fields: Sequence[str], path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GenesisError(f"expected an object, got {json_type(value)}", path)
    prefix = f"{path}." if path else ""
    for name in fields:
        if name not in value:
            raise GenesisError("missing", prefix + name)
    for name in value:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GenesisError(f"unknown field{hint}", prefix + name)
    return value


def string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise GenesisError(f"expected a string, got {json_type(value)}", path)
    return value


def integer(value: object, path: str) -> int:
    if type(value) is not int:
        raise GenesisError(f"expected an integer, got {json_type(value)}", path)
    return value


def hex_bytes(value: object, size: int, path: str) -> bytes:
    text = string(value, path)
    if len(text) != 2 * size:
        raise GenesisError(f"expected {2 * size} hex characters, got {len(text)}", path)
    # bytes.fromhex would accept spaces; a genesis value has exactly one spelling.
    if not text.isascii() or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise GenesisError(f"expected {2 * size} hex characters, got {text!r}", path)
    return bytes.fromhex(text)


def array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise GenesisError(f"expected an array, got {json_type(value)}", path)
    return value


def dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise GenesisError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise GenesisError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=reject_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise GenesisError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise GenesisError(f"{path}: invalid JSON: {exc}") from None


def load_json(path: Path | str, parse: Callable[[object], T]) -> T:
    """``parse`` of the file at ``path``; its errors name the file."""
    path = Path(path)
    doc = read_json(path)
    try:
        return parse(doc)
    except GenesisError as exc:
        raise GenesisError(f"{path}: {exc}") from None
