"""Fixtures for tests and benchmarks: a whole consortium in one process
(``cluster``), certified chains and catch-up scenarios built fast (``chain_fixture``),
and a trusted dealer of pseudonym key shares (``dealer``) so that a fixture knows the
key its nodes evaluate, which no real consortium ever does. Shipped in the package
because the benchmarks use them too.

Layer: above ``ops``. May import everything below; never ``commands``.
"""
