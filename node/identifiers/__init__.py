"""Identifiers: how a phone number, an account or a device becomes the one canonical
string every member computes (``normalize``), the keyed pseudonym that stands for it
on the ledger (``pseudonym``), and the screen that keeps identifiers in the clear out of
a transaction's free text (``screen``). The pure arithmetic of threshold pseudonyms
lives here too: the Ed25519 group primitives the PSI shares (``group``), the threshold
2HashDH OPRF with verifiable evaluations (``oprf``) and the joint Feldman DKG that makes
its key without anyone holding it (``dkg``).

Layer: the lowest package of ``node`` (only the module ``node.refusals`` is below it).
Imports only the standard library, third-party packages and ``consensus``; everything
else in ``node`` may import it.
"""
