"""Identifier sets for private set intersection: one identifier a line, normalised as
for pseudonyms (``node.identifiers.normalize``), and the checks that refuse a set before anything
about it leaves the node.

A set is refused, with every reason at once, when some lines are not identifiers of the
stated type (each reported by line number, at most ``MAX_PROBLEMS`` of them shown), when
it holds no identifier, when two lines are the same identifier once normalised (unless
the caller asked to keep the first of each), or when it is larger than the node allows.
Blank lines are skipped, so a trailing newline or a spacer line is not an error; line
numbers count every line of the input, blank or not, so they match the file.

The refusals are ``PsiInputError`` (``node.refusals.Invalid``, with the lines at fault)
and ``TooLarge`` for a set larger than the node takes. Messages never quote a line: it
may be an identifier, and the answer may end up in a log. The line number says where
to look.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from node.identifiers.normalize import EntityType
from node.psi.crypto import Normalised
from node.refusals import Invalid, TooLarge

MAX_PROBLEMS = 20
# Normalising stops once this many lines have failed: a file that far from a set of
# identifiers says so without costing the workers the rest of it.
STOP_AFTER_PROBLEMS = 1000
# Blank lines are skipped but still cost a line each: a body with more lines than this
# many per identifier allowed is refused from a count of its newlines, before any text
# is made of it.
LINES_PER_IDENTIFIER = 2
NORMALISE_CHUNK = 2000  # lines per worker task (about 0.1 s of phone-number parsing)
ENTITY_TYPES = tuple(t.value for t in EntityType)
Line = tuple[int, str]  # (line number, text)


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


class PsiInputError(Invalid):
    """A set the node will not use; ``code`` is stable, ``problems`` name the lines (and
    are in ``details`` as the caller is shown them)."""

    def __init__(self, code: str, message: str, problems: Sequence[Problem] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(code, message, problem_details(self.problems))


def problem_details(problems: Sequence[Problem]) -> dict[str, list[dict[str, object]]]:
    return {"problems": [{"line": p.line, "message": p.message} for p in problems]}


@dataclass(frozen=True)
class IdentifierSet:
    entity_type: str
    values: tuple[str, ...]  # normalised, distinct, in input order
    lines: int  # the identifier lines read (blank lines aside)
    dropped: int  # repeated identifiers left out (only when asked to)


def check_entity_type(entity_type: str) -> str:
    if entity_type not in ENTITY_TYPES:
        raise PsiInputError(
            "bad_type", f"unknown entity type {entity_type!r}; one of {', '.join(ENTITY_TYPES)}"
        )
    return entity_type


def decode_text(data: bytes) -> str:
    """The input as text: UTF-8, with or without a byte order mark."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PsiInputError(
            "not_text", "the input is not UTF-8 text", [Problem(line, "not UTF-8")]
        ) from None
    return text.removeprefix("\ufeff")


def check_line_count(data: bytes, max_count: int) -> None:
    """Refuse, from one count of newlines (a C loop over the bytes, no objects made), a
    body that cannot be a set of at most ``max_count`` identifiers."""
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if lines > LINES_PER_IDENTIFIER * max_count:
        raise TooLarge(
            "too_large",
            f"the input has {lines:,} lines; this node takes at most {max_count:,} identifiers "
            "(psi.max_set_size)",
            problem_details(()),
        )


def read_lines(data: bytes, max_count: int) -> list[Line]:
    """``check_line_count``, then the non-blank lines. Run it in a worker thread: the
    split makes an object per line."""
    check_line_count(data, max_count)
    return split_lines(decode_text(data), max_count)


class TooManyProblems(Exception):
    """Normalising stopped early: ``STOP_AFTER_PROBLEMS`` lines failed."""


def split_lines(text: str, max_count: int) -> list[Line]:
    """(line number, stripped line) for every non-blank line, numbered from 1."""
    lines = [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1)]
    kept = [(i, line) for i, line in lines if line]
    if len(kept) > max_count:
        raise TooLarge(
            "too_large",
            f"the input holds {len(kept):,} identifiers; this node takes at most {max_count:,} "
            "(psi.max_set_size)",
            problem_details(()),
        )
    return kept


def chunked(lines: Sequence[Line], size: int = NORMALISE_CHUNK) -> list[list[Line]]:
    return [list(lines[i : i + size]) for i in range(0, len(lines), size)]


def _redact(message: str) -> str:
    """``node.identifiers.normalize`` quotes the value it refuses (right on the submitter's own
    terminal); the line number stands in for it here."""
    head, sep, rest = message.partition(": ")
    if not sep:
        return message
    for quote in ("'", '"'):
        if rest.startswith(quote):
            end = rest.find(quote + " ", 1)
            if end > 0:
                return f"{head}: the value {rest[end + 2 :]}"
    return message


def count_problems(results: Iterable[Normalised]) -> int:
    return sum(len(chunk.problems) for chunk in results)


def assemble(
    entity_type: str, results: Iterable[Normalised], dedupe: bool, *, stopped: bool = False
) -> IdentifierSet:
    """The set from the normalised chunks, or ``PsiInputError`` with every reason
    (``stopped``: normalising gave up early, so the count is a lower bound)."""
    values: list[tuple[int, str]] = []
    problems: list[Problem] = []
    for chunk in results:
        values.extend(chunk.values)
        problems.extend(Problem(line, _redact(message)) for line, message in chunk.problems)
    if problems:
        problems.sort(key=lambda p: p.line)
        shown = problems[:MAX_PROBLEMS]
        more = f" (the first {len(shown)} are listed)" if len(problems) > len(shown) else ""
        count = f"{len(problems):,}"
        if stopped:
            count = f"at least {count}"
            more += "; the rest of the input was not read"
        raise PsiInputError(
            "bad_lines",
            f"{count} lines are not {entity_type} identifiers{more}",
            shown,
        )
    if not values:
        raise PsiInputError("empty", "the input holds no identifiers: PSI needs a non-empty set")
    first: dict[str, int] = {}
    repeats: list[Problem] = []
    for line, value in values:
        seen = first.setdefault(value, line)
        if seen != line:
            repeats.append(Problem(line, f"the same {entity_type} as line {seen}"))
    if repeats and not dedupe:
        shown = repeats[:MAX_PROBLEMS]
        raise PsiInputError(
            "duplicates",
            f"{len(repeats):,} lines repeat an earlier identifier once normalised; a set "
            "holds each once (remove them, or ask to keep the first of each)",
            shown,
        )
    return IdentifierSet(entity_type, tuple(first), len(values), len(repeats))
