"""Identifiers: how a phone number, an account or a device becomes the one canonical
string every member computes (``normalize``), and the keyed pseudonym that stands for it
on the ledger (``pseudonym``).

Layer: the lowest of ``node``. Imports only the standard library, third-party packages
and ``consensus``; everything else in ``node`` may import it.
"""
