"""Whether a member evaluates its share for another member: purpose, case and quota.

An evaluation is the one step no member can take alone, so it is where the
consortium's rules bind a member that bypasses its own node:

- **report**: any member may ask, up to the genesis ``report_quota_per_day`` points
  per UTC day, counted by every evaluating member on its own. A member that spreads
  its requests over the others gets at most (n - 1) / (t - 1) times the quota a day;
  an enumeration of a phone-number range shows in every evaluator's metrics and audit
  long before it could finish.
- **query**: only under a case that is active on the evaluator's own ledger and was
  opened by the asking member, up to ``query_quota_per_case_per_day`` points per case
  per UTC day. The requester's ``access`` record names the evaluation, so an
  evaluation that no access record accounts for stands out in the audit.

Every decision, granted or refused, is logged in the store with the requester, purpose,
case and size, never with the (blinded) points.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.ledger.cases import CaseRegistry
from node.pseudonyms.store import QUERY, REPORT, EvaluationRecord, PseudonymStore, day_of
from node.setup.genesis import Genesis


@dataclass(frozen=True)
class Decision:
    """``outcome`` is ``ok`` or an ``net.wire.EVAL_OUTCOMES`` refusal; ``reason`` says
    why in words the requester can show its user."""

    outcome: str
    reason: str = ""

    @property
    def granted(self) -> bool:
        return self.outcome == "ok"


def judge_case(registry: CaseRegistry, requester: str, case_id: str, now_ms: int) -> Decision:
    status = registry.status(case_id, now_ms)
    if status is None:
        return Decision("no_case", f"no case {case_id!r} on this member's ledger")
    if status.case.opener != requester:
        return Decision(
            "not_your_case",
            f"case {case_id!r} was opened by {status.case.opener}, not by {requester}; "
            "a member evaluates query pseudonyms only under its own cases",
        )
    if not status.active:
        return Decision("case_inactive", f"case {case_id!r} is {status.state}: {status.reason}")
    return Decision("ok")


def charge(
    store: PseudonymStore,
    genesis: Genesis,
    record: EvaluationRecord,
) -> Decision:
    """Count ``record.points`` against the quota of its purpose (runs in a worker
    thread: one LMDB write, synced)."""
    params = genesis.pseudonyms
    day = day_of(record.at_ms)
    if record.purpose == "report":
        kind, name, quota = REPORT, record.requester, params.report_quota_per_day
        whose = f"member {record.requester}"
    else:
        kind, name, quota = QUERY, record.case_id, params.query_quota_per_case_per_day
        whose = f"case {record.case_id!r}"
    if record.points > quota:
        store.log_refusal(EvaluationRecord(**{**record.__dict__, "outcome": "over_quota"}))
        return Decision(
            "over_quota", f"{record.points} points is more than the daily quota of {quota}"
        )
    if store.charge(day, kind, name, record.points, quota, record) is None:
        used = store.used(day, kind, name)
        return Decision(
            "over_quota",
            f"{whose} has used {used} of its {quota} {record.purpose} evaluations today "
            f"(UTC); this request asks {record.points} more; the quota resets at 00:00 UTC",
        )
    return Decision("ok")
