"""The project's refusals: what a service says when it will not do what it was asked.

A refusal is a kind (the class), a stable snake_case ``code`` a program can branch on, a
``message`` for a person, and ``details``, extra fields that belong with it (the
per-transaction results of a refused batch, the bad lines of a set). Messages never
quote what the caller sent: it may be an identifier. They may name a case, a member or a
transaction id, which the caller chose to name.

The kinds say what went wrong, not how a transport reports it: the services (tracing,
details, PSI) raise them and know nothing of HTTP; ``node.api`` alone maps each kind to
its status. A new kind is added only for a refusal none of these describes.

Layer: the bottom of ``node``; imports nothing from ``node`` (nor ``net``, ``consensus``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Refusal(Exception):
    """A request that will not be carried out. Raise one of the kinds below, never this."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class Invalid(Refusal):
    """Malformed: a value, field or parameter that cannot be what it claims to be."""


class Unauthenticated(Refusal):
    """No caller the node knows: no credential, or one that is unknown, revoked or expired."""


class Forbidden(Refusal):
    """Well formed, but not allowed: a role this member lacks, a case that does not cover it."""


class NotFound(Refusal):
    """What it names is not here: no such case, transaction, record or run."""


class Conflict(Refusal):
    """It clashes with what is already so: taken, done before, closed, expired."""


class TooLarge(Refusal):
    """More than the node takes: a body, a set."""


class Unsupported(Refusal):
    """In a form (a media type) the node does not take."""


class Rejected(Refusal):
    """Understood, but what it carries is refused: a transaction admission turns down,
    details that do not match their commitment."""


class Unavailable(Refusal):
    """The node cannot do it now, or not without something it lacks: a service, a key,
    a quorum in time, room in the mempool."""


class Busy(Refusal):
    """Not now, but soon: the node holds what it can commit in about a second (its
    admission bound) and this caller is past its fair share of it. Nothing of the
    request was kept; the same request may be sent again after ``retry_after_s``
    seconds. (``Unavailable`` is for what waiting alone does not cure.)"""

    def __init__(
        self,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        retry_after_s: int = 1,
    ) -> None:
        super().__init__(code, message, {"retry_after": retry_after_s} | dict(details or {}))
        self.retry_after_s = retry_after_s


KINDS: tuple[type[Refusal], ...] = (
    Invalid,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    Unsupported,
    Rejected,
    Unavailable,
    Busy,
)
