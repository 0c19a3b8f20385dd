"""The genesis's pseudonym section: what the key ceremony agrees on beforehand (the
draft's ``PseudonymParameters``) and what it produces (``GenesisPseudonyms``).

The pseudonym function is a threshold OPRF: any ``threshold`` members together compute
a pseudonym, fewer learn nothing, and nobody holds the whole key. The checks here need
no other part of the genesis; the ones that do (one public share per member, dealers
who are members, the threshold at most n) are in ``Genesis``.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.identifiers.group import POINT_SIZE, is_valid_point
from node.setup.genesis_errors import GenesisError

PSEUDONYM_SCHEME = "2hashdh-ed25519/v1"
DEFAULT_REPORT_QUOTA = 200_000
DEFAULT_QUERY_QUOTA = 10_000
TRANSCRIPT_SIZE = 32


def default_threshold(members: int) -> int:
    """f + 1 with f = (n - 1) // 3 faulty members, and never below 2: f faulty members
    together hold too few shares to evaluate the pseudonym function alone."""
    return max(2, (members - 1) // 3 + 1)


def _check_int(value: object, low: int, path: str) -> None:
    if type(value) is not int:
        raise GenesisError(f"expected an integer, got {type(value).__name__}", path)
    if value < low:
        raise GenesisError(f"must be at least {low}, got {value}", path)


@dataclass(frozen=True)
class PseudonymParameters:
    """What the members agree on before the key ceremony: the draft's pseudonym section."""

    threshold: int
    report_quota_per_day: int = DEFAULT_REPORT_QUOTA
    query_quota_per_case_per_day: int = DEFAULT_QUERY_QUOTA
    scheme: str = PSEUDONYM_SCHEME

    def __post_init__(self) -> None:
        if self.scheme != PSEUDONYM_SCHEME:
            raise GenesisError(f"expected {PSEUDONYM_SCHEME!r}, got {self.scheme!r}", "scheme")
        # The range up to n is checked where n is known, in the draft or genesis.
        _check_int(self.threshold, 2, "threshold")
        _check_int(self.report_quota_per_day, 1, "report_quota_per_day")
        _check_int(self.query_quota_per_case_per_day, 1, "query_quota_per_case_per_day")


def _check_point(value: object, path: str) -> None:
    if not isinstance(value, bytes) or len(value) != POINT_SIZE:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise GenesisError(f"expected a {POINT_SIZE}-byte point, got {got}", path)
    if not is_valid_point(value):
        raise GenesisError("not a valid point of the group", path)


@dataclass(frozen=True)
class GenesisPseudonyms:
    """The key ceremony's result: the threshold pseudonym function's public side.

    ``public_shares[j]`` is member j's share times the base point, so an evaluation
    share can be checked against it; ``public_key`` is the whole key's, which nobody
    holds. ``dealers`` are the members whose dealings make up the key and
    ``transcript`` the hash of the deals, complaints and answers it came from.
    """

    threshold: int
    public_key: bytes
    public_shares: tuple[bytes, ...]
    dealers: tuple[str, ...]
    transcript: bytes
    report_quota_per_day: int = DEFAULT_REPORT_QUOTA
    query_quota_per_case_per_day: int = DEFAULT_QUERY_QUOTA
    scheme: str = PSEUDONYM_SCHEME

    def __post_init__(self) -> None:
        self.parameters()  # scheme, threshold and quotas
        _check_point(self.public_key, "public_key")
        if not isinstance(self.public_shares, tuple):
            raise GenesisError("expected a tuple", "public_shares")
        for i, share in enumerate(self.public_shares):
            _check_point(share, f"public_shares[{i}]")
        if not isinstance(self.dealers, tuple) or not all(isinstance(d, str) for d in self.dealers):
            raise GenesisError("expected a tuple of member names", "dealers")
        for i, dealer in enumerate(self.dealers):
            if dealer in self.dealers[:i]:
                raise GenesisError(f"duplicate dealer {dealer!r}", f"dealers[{i}]")
        if len(self.dealers) < self.threshold:
            raise GenesisError(
                f"at least threshold ({self.threshold}) dealers are needed, "
                f"got {len(self.dealers)}",
                "dealers",
            )
        if not isinstance(self.transcript, bytes) or len(self.transcript) != TRANSCRIPT_SIZE:
            raise GenesisError(f"expected {TRANSCRIPT_SIZE} bytes", "transcript")

    def parameters(self) -> PseudonymParameters:
        return PseudonymParameters(
            threshold=self.threshold,
            report_quota_per_day=self.report_quota_per_day,
            query_quota_per_case_per_day=self.query_quota_per_case_per_day,
            scheme=self.scheme,
        )
