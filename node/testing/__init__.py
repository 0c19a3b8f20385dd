"""Fixtures for tests and benchmarks: a whole consortium in one process
(``cluster``) and certified chains and catch-up scenarios built fast (``chain_fixture``).
Shipped in the package because the benchmarks use them too.

Layer: above ``ops``. May import everything below; never ``commands``.
"""
