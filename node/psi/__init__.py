"""Private set intersection between two members under a case: the group arithmetic and
its worker processes (``crypto``, ``work``), input sets (``inputs``), the two-member
protocol as a pure state machine (``protocol``), one run's state (``run``), answer sets
prepared while idle (``answers``), the run's ledger record (``record``) and the service
that gates, runs and records it (``service``).

Layer: a feature package above ``pseudonyms``. May import ``node.pseudonyms``,
``node.host`` and everything below them; never ``tracing``, ``details``, ``api`` or
anything above.
"""
