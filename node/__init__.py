"""The crosstrace node: everything that runs on a member's host around the consensus core.

Packages by concept, bottom up; each may import only the layers below it (and its own
modules), and the feature packages never import one another. ``tests/test_layers.py``
enforces this.

- ``node.refusals``: the project's refusals (invalid, forbidden, not found, ...), raised
  by services and mapped to HTTP by ``node.api`` alone; imports nothing from ``node``.
- ``node.identifiers``: normalising identifiers, pseudonyms.
- ``node.setup``: keys, genesis, config, provisioning.
- ``node.ledger``: transactions, the application, cases, the LMDB store, proofs.
- ``node.host``: the runtime that hosts the replica, the mempool.
- ``node.tracing``, ``node.details``, ``node.psi``, ``node.disclosure``: the features,
  side by side.
- ``node.api``: the local HTTP API, the only package that knows HTTP.
- ``node.daemon`` (the composition root of a running node) and ``node.client``.
- ``node.ops``: processes, ports, benchmark, demo.
- ``node.testing``: in-process consortia and chain fixtures for tests and benchmarks.
- ``node.commands``: the command groups that ``cli.py`` assembles.

Below all of ``node`` sit ``net`` (what crosses a wire) and ``consensus`` (PBFT, pure).
"""
