"""Identifiers: how a phone number, an account or a device becomes the one canonical
string every member computes (``normalize``), the keyed pseudonym that stands for it
on the ledger (``pseudonym``), and the screen that keeps identifiers in the clear out of
a transaction's free text (``screen``).

Layer: the lowest package of ``node`` (only the module ``node.refusals`` is below it).
Imports only the standard library, third-party packages and ``consensus``; everything
else in ``node`` may import it.
"""
