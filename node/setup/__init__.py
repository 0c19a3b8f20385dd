"""Setting a member up: its node key file (``keys``), the consortium's genesis file
(``genesis``, its pseudonym section in ``genesis_pseudonyms``), the pseudonym key
ceremony that finishes a draft genesis (``ceremony``, its files in ``ceremony_files``)
and the member's key share it leaves (``shares``), its ``config.toml`` (``config``), the
local member layouts that ``crosstrace init`` and ``testnet`` write (``provision``) and
the member's users, their roles, tokens and actor ids (``users``).

Layer: above ``identifiers``. May import ``node.identifiers``, ``consensus`` and ``net``;
nothing else in ``node``.
"""
