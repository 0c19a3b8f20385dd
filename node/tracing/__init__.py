"""Tracing under a case: authorising and answering trace, graph and history queries
from the ledger's indexes (``queries``), the service that pseudonymises a query's
identifiers and commits its ``access`` record before answering (``service``), the JSON
and DOT shapes of the answers (``render``) and the audit trail (``audit``).

Layer: a feature package above ``pseudonyms``. May import ``node.pseudonyms``,
``node.host`` and everything below them; never ``details``, ``psi``, ``api`` or anything
above.
"""
