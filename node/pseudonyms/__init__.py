"""Threshold pseudonyms: how a member turns an identifier into its pseudonym without any
member holding the key, and how every evaluation is gated, counted and recorded.

``store`` keeps a member's counts, evaluation log and own results (LMDB beside the
ledger); ``policy`` decides whether to evaluate for another member (purpose, case,
quota); ``service`` runs both sides over the secure channel; ``offload`` decides
where their group arithmetic runs (the event loop or worker threads).

Layer: between ``host`` and the features. May import ``node.host`` and everything below
it; the features (``tracing``, ``disclosure``, ...) and ``api`` import it, never the
other way.
"""
