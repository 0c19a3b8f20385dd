"""What the runtime and the application need from the ledger store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from consensus.blocks import Block, Certificate
from node.ledger.layout import BlockIndex


class Ledger(Protocol):
    def tip(self) -> tuple[int, bytes]: ...

    def append_blocks(self, blocks: Sequence[tuple[Block, Certificate, BlockIndex]]) -> None: ...

    def blocks_range(self, start: int, end: int) -> list[tuple[Block, Certificate]]: ...

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None: ...

    def nonce_used(self, member: str, nonce: int) -> bool: ...

    def nonces_used(self, keys: Iterable[tuple[str, int]]) -> set[tuple[str, int]]: ...

    def append_consensus_records(self, records: Sequence[bytes]) -> None: ...

    def append_records_and_blocks(
        self,
        records: Sequence[bytes],
        items: Sequence[tuple[Block, Certificate, BlockIndex]],
    ) -> None: ...

    def consensus_records(self) -> list[bytes]: ...

    def compact_consensus_records(self, records: Sequence[bytes]) -> None: ...
