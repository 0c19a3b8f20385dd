"""Canonical msgpack encoding for frozen dataclasses.

Every wire type is a frozen dataclass whose fields are ``int``, ``bool``, ``bytes``,
``str``, ``X | None``, ``tuple[X, ...]`` or another wire dataclass. A value encodes as
a msgpack array of its fields in declaration order; a top-level message is prefixed
with its registered tag. Decoding checks the size before parsing, checks every type,
and re-encodes the result: input that is not byte-for-byte the canonical encoding is
rejected, so signatures and hashes over encoded bytes can never be malleated.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_UINT = 2**64 - 1

T = TypeVar("T")


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of a known, well-formed value."""


def pack(obj: Any) -> bytes:
    data = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(data, bytes)
    return data


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


def unpack(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Parse msgpack with hard limits; every failure is a ``DecodeError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) == 0:
        raise DecodeError("empty message")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=False,
            ext_hook=_reject_ext,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=max_bytes,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except msgpack.exceptions.StackError:
        raise DecodeError("malformed msgpack: nested too deeply") from None
    except (ValueError, msgpack.UnpackException) as exc:
        raise DecodeError(f"malformed msgpack: {exc.__class__.__name__}: {exc}") from None
    except RecursionError:
        raise DecodeError("malformed msgpack: nested too deeply") from None


Decoder = Callable[[Any, str], Any]
FastDecoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]


class _Mismatch(Exception):
    """Raised by the fast decoders, which say nothing about where: the caller then
    decodes again with the checked decoders, which name the field that failed."""


def _int_decoder(value: Any, where: str) -> int:
    if type(value) is not int or value < 0 or value > MAX_UINT:
        raise DecodeError(f"{where}: expected an unsigned integer, got {_describe(value)}")
    return value


def _bool_decoder(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise DecodeError(f"{where}: expected a boolean, got {_describe(value)}")
    return value


def _bytes_decoder(value: Any, where: str) -> bytes:
    if type(value) is not bytes:
        raise DecodeError(f"{where}: expected bytes, got {_describe(value)}")
    return value


def _str_decoder(value: Any, where: str) -> str:
    if type(value) is not str:
        raise DecodeError(f"{where}: expected a string, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    return type(value).__name__


def _identity(value: Any) -> Any:
    return value


def _fast_int(value: Any) -> Any:
    if type(value) is not int or value < 0 or value > MAX_UINT:
        raise _Mismatch
    return value


def _fast_of_type(kind: type) -> FastDecoder:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise _Mismatch
        return value

    return check


def _fast_tuple_of_type(kind: type) -> FastDecoder:
    # One pass in C over the element types: a block's transactions are thousands of
    # bytes values, and a call per element was the codec's largest cost.
    def check(value: Any) -> Any:
        if type(value) is not tuple or (value and set(map(type, value)) != {kind}):
            raise _Mismatch
        if kind is int and value and (min(value) < 0 or max(value) > MAX_UINT):
            raise _Mismatch
        return value

    return check


class _Codec:
    """Field encoders and decoders of one dataclass, built once from its type hints.

    Two decoders per field: a fast one, which only says whether the value fits, and a
    checked one, which says where and why it does not. Decoding runs the fast one and
    falls back to the checked one only to explain a failure.
    """

    def __init__(self, cls: type) -> None:
        hints = typing.get_type_hints(cls)
        self.cls = cls
        self.names = [f.name for f in dataclasses.fields(cls)]
        made = [_make(hints[name]) for name in self.names]
        self.encoders = [m[0] for m in made]
        self.decoders = [m[1] for m in made]
        self.fast_decoders = [m[2] for m in made]
        self._get = operator.attrgetter(*self.names) if self.names else (lambda _obj: ())
        self._encoded_fields = [
            (i, enc) for i, enc in enumerate(self.encoders) if enc is not _identity
        ]

    def encode(self, obj: Any) -> list[Any]:
        values = self._get(obj)
        out = list(values) if len(self.names) != 1 else [values]
        for i, enc in self._encoded_fields:
            out[i] = enc(out[i])
        return out

    def decode_fast(self, value: Any) -> Any:
        if type(value) is not tuple or len(value) != len(self.names):
            raise _Mismatch
        args = [dec(item) for dec, item in zip(self.fast_decoders, value, strict=True)]
        try:
            return self.cls(*args)
        except (ValueError, TypeError):
            raise _Mismatch from None

    def decode(self, value: Any, where: str) -> Any:
        try:
            return self.decode_fast(value)
        except _Mismatch:
            pass
        return self.decode_checked(value, where)

    def decode_checked(self, value: Any, where: str) -> Any:
        if type(value) is not tuple:
            raise DecodeError(f"{where}: expected an array, got {_describe(value)}")
        if len(value) != len(self.names):
            raise DecodeError(
                f"{where}: {self.cls.__name__} has {len(self.names)} fields, got {len(value)}"
            )
        kwargs = {
            name: dec(item, f"{where}.{name}")
            for name, dec, item in zip(self.names, self.decoders, value, strict=True)
        }
        try:
            return self.cls(**kwargs)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"{where}: {exc}") from None


_CODECS: dict[type, _Codec] = {}


def _codec(cls: type) -> _Codec:
    codec = _CODECS.get(cls)
    if codec is None:
        codec = _CODECS[cls] = _Codec(cls)
    return codec


_PRIMITIVES: dict[Any, tuple[Decoder, FastDecoder]] = {
    int: (_int_decoder, _fast_int),
    bool: (_bool_decoder, _fast_of_type(bool)),
    bytes: (_bytes_decoder, _fast_of_type(bytes)),
    str: (_str_decoder, _fast_of_type(str)),
}


def _make(hint: Any) -> tuple[Encoder, Decoder, FastDecoder]:
    """Encoder, checked decoder and fast decoder for one field type."""
    origin = typing.get_origin(hint)
    if hint in _PRIMITIVES:
        checked, fast = _PRIMITIVES[hint]
        return _identity, checked, fast
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"only tuple[X, ...] is supported, not {hint}")
        item_enc, item_dec, item_fast = _make(args[0])

        def dec_tuple(value: Any, where: str) -> Any:
            if type(value) is not tuple:
                raise DecodeError(f"{where}: expected an array, got {_describe(value)}")
            return tuple(item_dec(v, f"{where}[{i}]") for i, v in enumerate(value))

        if args[0] in _PRIMITIVES:
            # msgpack packs a tuple as an array, so a tuple of primitives is its own
            # wire form.
            return _identity, dec_tuple, _fast_tuple_of_type(args[0])

        def enc_tuple(value: Any) -> Any:
            return [item_enc(v) for v in value]

        def fast_tuple(value: Any) -> Any:
            if type(value) is not tuple:
                raise _Mismatch
            return tuple([item_fast(v) for v in value])

        return enc_tuple, dec_tuple, fast_tuple
    if origin in (types.UnionType, typing.Union):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"only X | None unions are supported, not {hint}")
        inner_enc, inner_dec, inner_fast = _make(members[0])

        def enc_opt(value: Any) -> Any:
            return None if value is None else inner_enc(value)

        def dec_opt(value: Any, where: str) -> Any:
            return None if value is None else inner_dec(value, where)

        def fast_opt(value: Any) -> Any:
            return None if value is None else inner_fast(value)

        if inner_enc is _identity:
            return _identity, dec_opt, fast_opt
        return enc_opt, dec_opt, fast_opt
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        cls = hint

        def enc_obj(value: Any) -> Any:
            return _codec(cls).encode(value)

        def dec_obj(value: Any, where: str) -> Any:
            return _codec(cls).decode_checked(value, where)

        def fast_obj(value: Any) -> Any:
            return _codec(cls).decode_fast(value)

        return enc_obj, dec_obj, fast_obj
    raise TypeError(f"unsupported field type {hint!r}")


def to_wire(obj: Any) -> list[Any]:
    """The msgpack-ready array form of a wire dataclass (no tag)."""
    return _codec(type(obj)).encode(obj)


def from_wire(cls: type[T], value: Any, where: str | None = None) -> T:
    result: T = _codec(cls).decode(value, where or cls.__name__)
    return result


def encode_value(obj: Any) -> bytes:
    """Canonical bytes of a wire dataclass without a tag (for hashing and storage)."""
    return pack(to_wire(obj))


def decode_value(cls: type[T], data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> T:
    """Strict inverse of ``encode_value``: rejects anything but canonical input."""
    obj = from_wire(cls, unpack(data, max_bytes))
    if encode_value(obj) != bytes(data):
        raise DecodeError(f"{cls.__name__}: not the canonical encoding")
    return obj


class Registry:
    """Tag <-> class table for one family of top-level messages."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._by_tag: dict[int, type] = {}
        self._by_cls: dict[type, int] = {}

    def register(self, tag: int) -> Callable[[type[T]], type[T]]:
        def wrap(cls: type[T]) -> type[T]:
            if tag in self._by_tag:
                raise ValueError(f"{self.family}: tag {tag} is already taken")
            self._by_tag[tag] = cls
            self._by_cls[cls] = tag
            return cls

        return wrap

    def tag_of(self, obj: Any) -> int:
        try:
            return self._by_cls[type(obj)]
        except KeyError:
            raise TypeError(f"{type(obj).__name__} is not a registered {self.family}") from None

    def classes(self) -> list[type]:
        return list(self._by_cls)

    def items(self) -> list[tuple[int, type]]:
        return sorted(self._by_tag.items())

    def encode(self, obj: Any) -> bytes:
        return pack([self.tag_of(obj), *to_wire(obj)])

    def decode(self, data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
        value = unpack(data, max_bytes)
        if type(value) is not tuple or not value:
            raise DecodeError(f"{self.family}: expected a non-empty array")
        tag = value[0]
        if type(tag) is not int:
            raise DecodeError(f"{self.family}: tag must be an integer")
        cls = self._by_tag.get(tag)
        if cls is None:
            raise DecodeError(f"{self.family}: unknown message tag {tag}")
        obj: Any = from_wire(cls, value[1:])
        if self.encode(obj) != bytes(data):
            raise DecodeError(f"{cls.__name__}: not the canonical encoding")
        return obj
