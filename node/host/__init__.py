"""The host of the replica: the node runtime that feeds the PBFT state machine frames,
submissions and timers and carries out its actions (``runtime``), with what it writes
(``persistence``: votes and blocks) and how it takes gossip (``gossip``: the backlog of
peers' frames, checks under way, submissions to send the primary again), the mempool
(``mempool``), the admission bound from the commit rate (``admission``), commit-latency
histograms (``latency``), assembling a runtime from a genesis (``assemble``) and the
transport's per-peer statistics (``peers``).

Layer: above ``ledger``. May import ``node.ledger`` and everything below it; never a
feature package (``tracing``, ``details``, ``psi``), ``api`` or anything above.
"""
