"""Private details: the records whose commitment goes on the ledger while their content
stays off it (``records``), their own LMDB environment beside the ledger's (``store``)
and the service that sends them to the entitled members only over the secure channel
(``service``).

Layer: a feature package above ``pseudonyms``. May import ``node.pseudonyms``,
``node.host`` and everything below them; never ``tracing``, ``psi``, ``api`` or anything
above.
"""
