"""Disclosure of an identity under a case: the clear identifiers a member reported, kept
in an LMDB environment of its own beside the ledger's, and the requests and answers it
sent or received (``store``); which members reported an entity and whether a case
reaches it (``reach``); the service that checks a request against the case's
scope and graph depth, records requests and answers on the ledger, carries them over
the secure channel to the reporting members and back to the requester only, and checks
every answered identifier against the requested pseudonym (``service``).

Layer: a feature package above ``pseudonyms``. May import ``node.pseudonyms``,
``node.host`` and everything below them; never ``tracing``, ``details``, ``psi``,
``api`` or anything above.
"""
