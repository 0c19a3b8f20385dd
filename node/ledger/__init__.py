"""The ledger: transactions and their kinds (``transactions``, ``kinds``), the closed
schema of report attributes (``attributes``), signing them as a member (``authoring``),
the application that checks them against the chain's rules (``application``), the case
registry (``cases``), the LMDB block store with its key layout, environment and write
path (``store``, ``layout``, ``env``, ``write``), the offline verifier (``verify``) and
inclusion proofs (``proofs``). ``interface`` is what the runtime needs of a store.

Layer: above ``setup``. May import ``node.setup``, ``node.identifiers``, ``consensus``
and ``net``.
"""
