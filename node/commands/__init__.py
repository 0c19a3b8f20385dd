"""The ``crosstrace`` command groups, one module per group, with the options they share
defined once (``options``). ``cli.py`` at the top of the repository assembles them.

Layer: the top of ``node``. May import everything in ``node``; nothing in ``node``
imports it.
"""
