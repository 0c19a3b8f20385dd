"""PBFT consensus as a pure, deterministic state machine, to be read beside Miguel
Castro and Barbara Liskov, "Practical Byzantine Fault Tolerance" (OSDI 1999).

Where each part of the paper lives:

* 4.1 The client: ``requests`` (requests reach every replica through its host, and the
  primary batches them; a block is a batch).
* 4.2 Normal-case operation: ``replica`` (PRE-PREPARE, PREPARE, COMMIT, execution) and
  ``log`` (the message log, with the prepared and committed-local predicates).
* 4.3 Garbage collection: ``checkpoints`` (CHECKPOINT quorums) and ``replica`` (the
  stable checkpoint, the watermarks and what they discard).
* 4.4 View changes: ``viewchange`` (VIEW-CHANGE, NEW-VIEW and the rules that carry
  prepared batches into the next view) and ``replica`` (leaving and entering views);
  the request timer that triggers them is in ``liveness``, and the state transfer the
  section ends with is ``sync`` (block sync).
* 4.5.2 Liveness: ``viewchange`` (the timer armed after a quorum, the doubling timeout,
  joining f+1 members) and ``liveness``.
* 4.6 Non-determinism: the primary chooses each batch's timestamp (``blocks``).

Beyond the paper: votes are durable so a restart cannot cause equivocation
(``signatory``, ``durable``); a heartbeat with retransmission, since the paper leaves
retransmission out (``liveness``); blocks carry commit certificates, so anyone can serve
them to a replica that fell behind (``blocks``, ``sync``); and the quorum arithmetic
works for any number of members, not only 3f+1 (``membership``).

The contract with the host that runs a replica, what each event means and what the
host must do with each action, is in ``events``. Nothing in this package reads a
clock, touches a socket or a disk, or draws global randomness (``tests/layer_rules.py``
checks it); ``simulator`` runs whole clusters in virtual time from one seed.
"""
