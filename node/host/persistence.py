"""What the runtime writes: the replica's votes (made durable before anything leaves)
and the committed blocks with their indexes, in worker threads.

The replica's durable state is kept here as a copy of what is on disk, so the log can
be compacted to a snapshot of it every ``COMPACT_EVERY_RECORDS`` records."""

from __future__ import annotations

from collections.abc import Callable

import trio

from consensus.blocks import Block, Certificate
from consensus.durable import RECORDS, DurableState, Record, StableRecord
from node.ledger.application import Application
from node.ledger.interface import Ledger
from node.ledger.layout import BlockIndex

COMPACT_EVERY_RECORDS = 20_000

Stored = list[tuple[Block, Certificate, BlockIndex]]


class Persistence:
    def __init__(self, ledger: Ledger, app: Application) -> None:
        self.ledger = ledger
        self.app = app
        self.durable = DurableState()
        self._records = 0

    def restore(self) -> list[bytes]:
        """The replica's records from disk, applied to ``durable``."""
        encoded = self.ledger.consensus_records()
        for data in encoded:
            self.durable.apply(RECORDS.decode(data))
        self._records = len(encoded)
        return encoded

    async def persist(
        self, records: list[Record], commits: list[tuple[Block, Certificate]] | None = None
    ) -> Stored | None:
        """Make ``records`` durable; with ``commits``, store those blocks in the same
        write transaction and return them indexed (else None)."""
        encoded = [RECORDS.encode(r) for r in records]
        indexed: Stored | None = None
        if commits:
            job = self._index_job(commits)

            def write() -> Stored:
                blocks = job()
                self.ledger.append_records_and_blocks(encoded, blocks)
                return blocks

            indexed = await trio.to_thread.run_sync(write)
        else:
            await trio.to_thread.run_sync(self.ledger.append_consensus_records, encoded)
        self.durable.apply_all(records)
        self._records += len(encoded)
        if self._records > COMPACT_EVERY_RECORDS and any(
            isinstance(r, StableRecord) for r in records
        ):
            snapshot = [RECORDS.encode(r) for r in self.durable.snapshot()]
            await trio.to_thread.run_sync(self.ledger.compact_consensus_records, snapshot)
            self._records = len(snapshot)
        return indexed

    async def store_blocks(self, commits: list[tuple[Block, Certificate]]) -> Stored:
        job = self._index_job(commits)

        def write() -> Stored:
            blocks = job()
            self.ledger.append_blocks(blocks)
            return blocks

        return await trio.to_thread.run_sync(write)

    def _index_job(self, commits: list[tuple[Block, Certificate]]) -> Callable[[], Stored]:
        """The indexing of ``commits``, to run in a worker thread. The checked forms this
        node holds are picked up now, on the loop that owns them; the job then checks
        what was never checked here and looks the nonces up, off the loop."""
        blocks = [block for block, _ in commits]
        forms = self.app.checked_forms(blocks)

        def index() -> Stored:
            indexes = self.app.build_indexes(blocks, forms)
            return [
                (block, cert, index) for (block, cert), index in zip(commits, indexes, strict=True)
            ]

        return index
