"""The primary's side of the normal case: turning waiting requests into PRE-PREPAREs.

The primary assigns the next sequence number to a batch of requests and multicasts
the PRE-PREPARE with the batch beside it (Castro and Liskov, section 4.2). The paper
notes the optimization used here: under load the primary buffers requests and
multicasts them later as a group. A full batch goes out at once, up to the high
watermark; a partial one waits ``batch_delay_ms``, and then until fewer than
``pipeline_depth`` proposals are still open (proposed, not executed), so that requests
gather into fewer, larger blocks while earlier ones are in consensus. Only the timing
of proposals depends on this policy, never their safety.
"""

from __future__ import annotations

from consensus.blocks import Batch
from consensus.events import Timer
from consensus.log import MessageLog
from consensus.messages import PrePrepare, Proposal
from consensus.outbox import Outbox
from consensus.params import Params
from consensus.requests import RequestQueue
from consensus.signatory import Signatory


class Proposer:
    def __init__(
        self,
        *,
        chain_id: str,
        params: Params,
        requests: RequestQueue,
        log: MessageLog,
        signatory: Signatory,
        outbox: Outbox,
        next_seq: int,
    ) -> None:
        self._chain_id = chain_id
        self._params = params
        self._requests = requests
        self._log = log
        self._signatory = signatory
        self._outbox = outbox
        # The sequence number the next PRE-PREPARE gets.
        self.next_seq = next_seq
        self.batch_timer_set = False
        # The batch delay has passed for the requests waiting to be proposed.
        self.batch_due = False

    def propose(
        self, view: int, high_watermark: int, executed: int, now_ms: int, flush: bool
    ) -> None:
        """As the active primary of ``view``: PRE-PREPARE what the batching policy lets
        go now; ``flush`` when the batch delay has passed."""
        params, requests = self._params, self._requests
        if flush:
            self.batch_due = True
        while self.next_seq <= high_watermark and requests.unproposed_count():
            if requests.unproposed_count() < params.max_batch_txs:
                if not self.batch_due:
                    if not self.batch_timer_set:
                        self.batch_timer_set = True
                        self._outbox.set_timer(Timer.BATCH, params.batch_delay_ms)
                    return
                if self.next_seq - 1 - executed >= params.pipeline_depth:
                    return  # proposed again when a block executes
            seq = self.next_seq
            txs = requests.take_batch(params.max_batch_txs, params.max_batch_bytes, seq)
            batch = Batch(seq, now_ms, tuple(txs))
            digest = batch.digest(self._chain_id)
            pre_prepare = self._signatory.sign_vote(PrePrepare, view, seq, digest)
            if pre_prepare is None:  # cannot happen unless durable state was lost; stay safe
                return
            self.next_seq += 1
            proposal = Proposal(pre_prepare, batch)
            self._log.slot(view, seq, now_ms).proposal = proposal
            self._outbox.broadcast(proposal)
        if not requests.unproposed_count():
            self.batch_due = False

    def batch_timer_fired(self) -> None:
        self.batch_timer_set = False

    def stop(self) -> None:
        """The replica left its view: no batch is pending until it enters the next."""
        self.batch_timer_set = False
        self.batch_due = False
        self._outbox.cancel_timer(Timer.BATCH)

    def restart_at(self, next_seq: int) -> None:
        """The replica entered a view: proposals continue at ``next_seq``."""
        self.next_seq = next_seq
        self.batch_timer_set = False
        self.batch_due = False
