"""Talking to a running node through its API, for the commands and the tools: the HTTP
client (``http``), the tracing and PSI calls (``tracing``, ``psi``), the pseudonyms an
author signs with, evaluated by the node (``pseudonyms``) and the text an investigator
reads in a terminal (``text``).

Layer: beside ``node.daemon``, above ``api``. May import ``api`` and everything below it;
never ``node.daemon``, ``ops``, ``testing`` or ``commands``.
"""
