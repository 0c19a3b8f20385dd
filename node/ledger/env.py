"""One LMDB environment, safe to share between threads, that grows when full.

py-lmdb rules this module exists to enforce:

- ``set_mapsize`` invalidates every transaction open in the process, and is refused
  while a write transaction is open. Read transactions therefore pass through a
  shared/exclusive gate; growing the map takes it exclusively, after the failed
  write transaction has been aborted.
- ``MapFullError`` aborts the whole write transaction, so a write is a function that
  can be run again from the start: ``write`` aborts, grows the map and retries it.
  Nothing partial is ever committed.
- A write transaction must begin and commit on one OS thread: ``write`` does both
  inside one call, so it is safe inside ``trio.to_thread.run_sync``.
- An environment must not be used after fork: the owning pid is checked.

Every LMDB failure leaves this module as a ``StoreError`` whose message says what
happened to which store, never as an LMDB traceback.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar

import lmdb

from consensus.codec import DecodeError, decode_value

T = TypeVar("T")

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_MAP_SIZE = 64 * MiB
DEFAULT_MAX_MAP_SIZE = 1024 * GiB
MAX_DBS = 16
MAX_READERS = 256

# Strings: py-lmdb's classes are generic in its stubs only, not at run time.
ReadTxn: TypeAlias = "lmdb.Transaction[memoryview]"
WriteTxn: TypeAlias = "lmdb.Transaction[bytes]"
ReadCursor: TypeAlias = "lmdb.Cursor[memoryview]"
Database: TypeAlias = "lmdb._Database"

_DAMAGE = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.PanicError,
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.IncompatibleError,
    lmdb.BadDbiError,
    # A transaction LMDB failed inside (it found a bad page) refuses further use.
    lmdb.BadTxnError,
)


class StoreError(Exception):
    """The ledger store cannot do what was asked; the message says why."""


class StoreFullError(StoreError):
    """The map reached its configured maximum, or the disk is full."""


class StoreCorruptError(StoreError):
    """The data files are damaged or are not a ledger store."""


def decode_record(cls: type[T], value: bytes | memoryview, store: str) -> T:
    """A record read back from ``store`` (its name and path, for the message); a damaged
    one is a ``StoreCorruptError``, never a crash deeper in."""
    try:
        return decode_value(cls, bytes(value))
    except DecodeError as exc:
        raise StoreCorruptError(f"{store} holds a damaged record: {exc}") from None


@dataclass(frozen=True)
class DbSpec:
    name: bytes
    dupsort: bool = False
    dupfixed: bool = False


class _Gate:
    """Many readers, or one remapper; a waiting remapper holds off new readers.

    Re-entrant for readers (a thread already inside may enter again), so a read
    helper can call another without deadlocking against a waiting remapper.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._remapping = False
        self._local = threading.local()

    def _depth(self) -> int:
        depth: int = getattr(self._local, "depth", 0)
        return depth

    def acquire_shared(self) -> None:
        depth = self._depth()
        if depth == 0:
            with self._cond:
                while self._remapping:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1

    def release_shared(self) -> None:
        depth = self._depth() - 1
        self._local.depth = depth
        if depth == 0:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        if self._depth():
            raise RuntimeError("cannot resize the ledger map from inside a read")
        with self._cond:
            while self._remapping:
                self._cond.wait()
            self._remapping = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._remapping = False
                self._cond.notify_all()


class Environment:
    """An open LMDB environment with its named databases."""

    def __init__(
        self,
        path: Path,
        specs: tuple[DbSpec, ...],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        sync: bool = True,
        readonly: bool = False,
    ) -> None:
        self.path = path
        self.readonly = readonly
        self._max_map_size = max(max_map_size, map_size)
        self._gate = _Gate()
        self._write_lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        if not readonly:
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the ledger store at {path}: {exc}") from None
        elif not (path / "data.mdb").is_file():
            raise StoreError(f"there is no ledger store at {path}")
        try:
            self._env = lmdb.open(
                str(path),
                map_size=map_size,
                subdir=True,
                readonly=readonly,
                sync=sync,
                metasync=True,
                # Not writemap: with a writable map a full disk is a SIGBUS when the
                # dirty page is touched, instead of an error from write().
                writemap=False,
                max_dbs=MAX_DBS,
                max_readers=MAX_READERS,
                lock=True,
                mode=0o700,
                create=not readonly,
            )
        except lmdb.Error as exc:
            raise _translate(path, "open", exc) from None
        self.dbs: dict[bytes, Database] = {}
        try:
            used = self._check_not_truncated()
            if readonly:
                self._open_existing_dbs(specs)
            else:
                self._leave_headroom(used)
                self.write(lambda txn: self._create_dbs(txn, specs))
        except BaseException:
            self._env.close()
            raise

    def _check_not_truncated(self) -> int:
        """The bytes the committed pages span (after checking the file holds them)."""
        # LMDB trusts the meta page: a data file shorter than the pages it lists (a
        # copy cut short, a bad restore) makes the first touch of a missing page a
        # SIGBUS inside LMDB, which no Python code can catch.
        needed = (self._env.info()["last_pgno"] + 1) * self._env.stat()["psize"]
        size = (self.path / "data.mdb").stat().st_size
        if size < needed:
            raise StoreCorruptError(
                f"the ledger store at {self.path} is damaged (its data file is truncated: "
                f"{size} bytes, its pages need {needed}); restore it from a backup or "
                "resynchronise it from the other members"
            )
        return needed

    def _leave_headroom(self, used: int) -> None:
        # LMDB raises a map smaller than the data to exactly the data's size, so a
        # reopened store would be full at its first write: start with room to grow.
        current = self.map_size()
        if current < 2 * used:
            self._set_map_size(min(max(2 * used, current), self._max_map_size))

    def _create_dbs(self, txn: WriteTxn, specs: tuple[DbSpec, ...]) -> None:
        for spec in specs:
            self.dbs[spec.name] = self._env.open_db(
                spec.name, txn=txn, dupsort=spec.dupsort, dupfixed=spec.dupfixed
            )

    def _open_existing_dbs(self, specs: tuple[DbSpec, ...]) -> None:
        for spec in specs:
            try:
                self.dbs[spec.name] = self._env.open_db(
                    spec.name, dupsort=spec.dupsort, dupfixed=spec.dupfixed, create=False
                )
            except lmdb.NotFoundError:
                raise StoreCorruptError(
                    f"{self.path} is not a ledger store: database {spec.name.decode()!r} is missing"
                ) from None
            except lmdb.Error as exc:
                raise _translate(self.path, "open", exc) from None

    def add_db(self, spec: DbSpec) -> Database:
        """Open (creating it if need be) another named database in this environment,
        for a sibling store: LMDB allows one environment per file and process."""
        if self.readonly:
            self._open_existing_dbs((spec,))
        else:
            self.write(lambda txn: self._create_dbs(txn, (spec,)))
        return self.dbs[spec.name]

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreError(f"the ledger store at {self.path} is closed")
        if os.getpid() != self._pid:
            raise StoreError("a ledger store cannot be used across fork(); open it in the child")

    @contextmanager
    def read(self) -> Iterator[ReadTxn]:
        """A short read transaction; values are zero-copy views valid inside it only."""
        self._check_usable()
        txn = self._begin_read()
        try:
            yield txn
        except lmdb.Error as exc:
            raise _translate(self.path, "read", exc) from None
        finally:
            txn.abort()
            self._gate.release_shared()

    def _begin_read(self) -> ReadTxn:
        while True:
            self._gate.acquire_shared()
            try:
                return self._env.begin(buffers=True)
            except lmdb.MapResizedError:
                self._gate.release_shared()
                self._adopt_map_size()
            except lmdb.Error as exc:
                self._gate.release_shared()
                raise _translate(self.path, "read", exc) from None
            except BaseException:
                self._gate.release_shared()
                raise

    def write(self, fn: Callable[[WriteTxn], T]) -> T:
        """Run ``fn`` in one write transaction and commit it (fsync'd when ``sync``).

        ``fn`` may run more than once: when the map fills up, the transaction is
        aborted, the map doubled and ``fn`` started again, so it must not have side
        effects outside ``txn``.
        """
        self._check_usable()
        if self.readonly:
            raise StoreError(f"the ledger store at {self.path} is open read-only")
        with self._write_lock:
            while True:
                try:
                    txn = self._env.begin(write=True)
                except lmdb.MapResizedError:
                    self._adopt_map_size()
                    continue
                except lmdb.Error as exc:
                    raise _translate(self.path, "write", exc) from None
                try:
                    result = fn(txn)
                    txn.commit()
                except lmdb.MapFullError:
                    txn.abort()
                    self._grow()
                    continue
                except lmdb.Error as exc:
                    txn.abort()
                    raise _translate(self.path, "write", exc) from None
                except BaseException:
                    txn.abort()
                    raise
                return result

    def map_size(self) -> int:
        self._check_usable()
        return int(self._env.info()["map_size"])

    def _grow(self) -> None:
        current = self.map_size()
        if current >= self._max_map_size:
            raise StoreFullError(
                f"the ledger store at {self.path} is full: its map reached the configured "
                f"maximum of {self._max_map_size} bytes"
            )
        self._set_map_size(min(current * 2, self._max_map_size))

    def _adopt_map_size(self) -> None:
        # Another process grew the map; 0 adopts the size it recorded.
        self._set_map_size(0)

    def _set_map_size(self, size: int) -> None:
        with self._gate.exclusive():
            try:
                self._env.set_mapsize(size)
            except lmdb.Error as exc:
                raise _translate(self.path, "resize", exc) from None

    def info(self) -> dict[str, int]:
        self._check_usable()
        info = self._env.info()
        return {"map_size": info["map_size"], "last_pgno": info["last_pgno"]}

    def page_size(self) -> int:
        self._check_usable()
        return int(self._env.stat()["psize"])

    def close(self) -> None:
        if self._closed or os.getpid() != self._pid:
            return
        with self._write_lock, self._gate.exclusive():
            self._closed = True
            self._env.close()


META_CHAIN_ID = b"chain_id"


def open_for_chain(
    path: Path,
    specs: tuple[DbSpec, ...],
    *,
    meta_db: bytes,
    chain_id: str,
    what: str,
    map_size: int = DEFAULT_MAP_SIZE,
    sync: bool = True,
) -> Environment:
    """An environment beside the ledger's that belongs to ``chain_id``: the first open
    records the chain in ``meta_db``; one of another chain is refused (``StoreError``
    naming ``what``, e.g. "the private store") and closed again."""
    env = Environment(path, specs, map_size=map_size, sync=sync)
    try:
        meta = env.dbs[meta_db]

        def claim(txn: WriteTxn) -> bytes:
            existing = txn.get(META_CHAIN_ID, db=meta)
            if existing is None:
                txn.put(META_CHAIN_ID, chain_id.encode(), db=meta)
                return chain_id.encode()
            return bytes(existing)

        found = env.write(claim)
        if found != chain_id.encode():
            raise StoreError(
                f"{what} at {path} belongs to chain "
                f"{found.decode(errors='replace')!r}, not {chain_id!r}"
            )
    except BaseException:
        env.close()
        raise
    return env


def _translate(path: Path, action: str, exc: lmdb.Error) -> StoreError:
    reason = exc.reason if exc.code else str(exc)
    if isinstance(exc, lmdb.DiskError) or exc.code in (28, 27):  # ENOSPC, EFBIG
        return StoreFullError(f"cannot {action} the ledger store at {path}: {reason}")
    if isinstance(exc, _DAMAGE):
        return StoreCorruptError(
            f"the ledger store at {path} is damaged ({reason}); restore it from a backup "
            "or resynchronise it from the other members"
        )
    if isinstance(exc, lmdb.LockError):
        return StoreError(f"the ledger store at {path} is locked by another process")
    if isinstance(exc, lmdb.ReadersFullError):
        return StoreError(f"too many concurrent readers of the ledger store at {path}")
    return StoreError(f"cannot {action} the ledger store at {path}: {reason}")
