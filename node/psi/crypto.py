"""The arithmetic of the private set intersection, and the process pool that runs it.

Pure functions over bytes (no I/O, no clock); the node's PSI service calls them through
``ChunkPool`` on chunks of a few thousand elements, so the work uses every core and
never runs on the event loop.

The group is the prime-order subgroup of Ed25519 (order L = 2^252 + ...), through
PyNaCl's bindings of libsodium (PyNaCl has no ristretto255); the primitives themselves
live in ``node.identifiers.group`` and are re-exported here:

* **Hash to the group.** ``hash_to_group`` derives 64 bytes from the element with
  BLAKE2b-512 (personalised, prefixed with the run-independent ``domain``: chain id and
  entity type), maps each half with ``crypto_core_ed25519_from_uniform`` (Elligator 2,
  then the cofactor is cleared) and adds the two points. One map alone is not a random
  oracle: its image is about half the group and distinguishable; the sum of two
  independent maps is (the construction of RFC 9380's ``hash_to_curve``). Nobody knows
  the discrete logarithm of the result, which is what keeps a blinded element from
  being tested against guesses.
* **Blinding.** ``crypto_scalarmult_ed25519_noclamp`` with a scalar drawn uniformly
  from [1, L) per run. libsodium's ``crypto_core_ed25519_scalar_random`` is not bound by
  PyNaCl 1.6, so ``random_scalar`` reduces 64 random bytes mod L
  (``crypto_core_ed25519_scalar_reduce``; libsodium documents 64 bytes as enough for a
  uniform result) and rejects zero. Unclamped, so that (x^a)^b = (x^b)^a exactly.
* **Validation.** A point received from the other member is only ever used as the input
  of ``crypto_scalarmult_ed25519_noclamp``, which refuses (and we then name the position)
  exactly what ``crypto_core_ed25519_is_valid_point`` refuses: a non-canonical encoding,
  a point not on the curve, a point of small order (the identity among them) and a point
  outside the prime-order subgroup (libsodium, ``scalarmult_ed25519_ref10.c``); it also
  refuses a result that is the identity. Calling ``is_valid_point`` first would repeat
  the same subgroup check, about half of the multiplication's cost, for every point.
  The tests check that the two agree on every kind of bad point.
* **Tags.** What comes back from the other member for comparison is not points but
  16-byte tags: BLAKE2b-128 of the doubly blinded point, keyed with the run id. A tag is
  compared, never used in arithmetic, so there is nothing to validate; a forged tag can
  only fail to match. 128 bits keep a false match below 2^-90 for 10^7 x 10^7 elements.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

# The group primitives live with the identifiers (the threshold OPRF uses them too);
# re-exported here so PSI code and its tests keep importing them from this module.
from node.identifiers.group import POINT_SIZE as POINT_SIZE
from node.identifiers.group import SCALAR_SIZE as SCALAR_SIZE
from node.identifiers.group import hash_to_group as hash_to_group
from node.identifiers.group import is_valid_point as is_valid_point
from node.identifiers.group import raise_point as raise_point
from node.identifiers.group import random_scalar as random_scalar
from node.identifiers.normalize import NormalizationError, normalize

TAG_SIZE = 16
RUN_ID_SIZE = 16
_TAG_PERSON = b"crosstrace-psi-t"  # BLAKE2b personalisation: at most 16 bytes

T = TypeVar("T")


def domain(chain_id: str, entity_type: str) -> bytes:
    """The prefix every element is hashed under: the same identifier gives unrelated
    points in another consortium or as another entity type. Length-prefixed, so no
    (chain, type, value) triple can be read as another."""
    chain = chain_id.encode()
    kind = entity_type.encode()
    if len(chain) > 0xFFFF or len(kind) > 0xFF:
        raise ValueError("chain id or entity type too long for the PSI domain")
    return len(chain).to_bytes(2, "big") + chain + len(kind).to_bytes(1, "big") + kind


def tag(run_id: bytes, point: bytes) -> bytes:
    return hashlib.blake2b(point, digest_size=TAG_SIZE, key=run_id, person=_TAG_PERSON).digest()


# ---------------------------------------------------------------- work on one chunk
#
# Module-level functions with picklable arguments and results: they run in the pool's
# worker processes.


@dataclass(frozen=True)
class Normalised:
    """One chunk of input lines: ``values`` in line order, ``problems`` as
    (line number, message) for the lines that are not identifiers of the type."""

    values: tuple[tuple[int, str], ...]
    problems: tuple[tuple[int, str], ...]


def normalise_chunk(entity_type: str, lines: Sequence[tuple[int, str]]) -> Normalised:
    values: list[tuple[int, str]] = []
    problems: list[tuple[int, str]] = []
    for number, raw in lines:
        try:
            values.append((number, normalize(entity_type, raw)))
        except NormalizationError as exc:
            problems.append((number, str(exc)))
    return Normalised(tuple(values), tuple(problems))


def hash_chunk(prefix: bytes, values: Sequence[str]) -> list[bytes]:
    return [hash_to_group(prefix, v) for v in values]


def blind_chunk(scalar: bytes, points: Sequence[bytes]) -> list[bytes]:
    """Our own hashed points, blinded: they are valid by construction, so a refusal
    here is a bug (or the astronomically unlikely identity), never the peer's doing."""
    out = []
    for point in points:
        blinded = raise_point(scalar, point)
        if blinded is None:
            raise ValueError("a hashed element was refused by the group; this is a bug")
        out.append(blinded)
    return out


def hash_blind_chunk(scalar: bytes, prefix: bytes, values: Sequence[str]) -> list[bytes]:
    return blind_chunk(scalar, hash_chunk(prefix, values))


@dataclass(frozen=True)
class Reblinded:
    """Tags of the peer's points raised to our scalar, or the position (within the
    chunk) of the first point libsodium refused."""

    tags: tuple[bytes, ...]
    invalid: int | None = None


def reblind_chunk(scalar: bytes, run_id: bytes, points: Sequence[bytes]) -> Reblinded:
    tags = []
    for i, point in enumerate(points):
        raised = raise_point(scalar, point)
        if raised is None:
            return Reblinded((), i)
        tags.append(tag(run_id, raised))
    return Reblinded(tuple(tags))


# ---------------------------------------------------------------- the pool


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every platform
        return max(1, os.cpu_count() or 1)


def _context() -> Any:
    # Never fork the node itself: it holds an LMDB environment, trio's state and open
    # sockets. A forkserver is a fresh interpreter that forks the workers.
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["node.psi.crypto"])
        return context
    return multiprocessing.get_context("spawn")


class ChunkPool:
    """Worker processes for chunk functions, started on first use and kept, since a
    worker costs a third of a second to start. ``submit`` returns a ``Future``; the
    caller decides how to wait for it (the node waits without blocking its loop)."""

    def __init__(self, workers: int = 0) -> None:
        if workers < 0:
            raise ValueError("workers must be 0 (every core) or more")
        self.workers = workers or default_workers()
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=_context())
        try:
            return self._executor.submit(fn, *args)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the runs using it fail with it, and
            # the next work gets a fresh pool rather than the same error for good.
            self.close()
            self._executor = ProcessPoolExecutor(self.workers, mp_context=_context())
            return self._executor.submit(fn, *args)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
