"""The host of the replica: the node runtime that feeds the PBFT state machine frames,
submissions and timers and carries out its actions (``runtime``), the mempool
(``mempool``), commit-latency histograms (``latency``), assembling a runtime from a
genesis (``assemble``) and the transport's per-peer statistics (``peers``).

Layer: above ``ledger``. May import ``node.ledger`` and everything below it; never a
feature package (``tracing``, ``details``, ``psi``), ``api`` or anything above.
"""
