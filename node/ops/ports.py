"""Free local ports for a consortium on 127.0.0.1 (tests, benchmarks, fixtures)."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable, Sequence

# Below 32768, where Linux hands out ephemeral ports: an outgoing connection (a node
# dialling a peer, a client, a proxy) cannot be given a port a node is about to listen on
# in the meantime, which ``bind`` with SO_REUSEADDR would still refuse.
LOW, HIGH = 20_000, 32_000


def ports_are_free(ports: Iterable[int], host: str = "127.0.0.1") -> bool:
    probes: list[socket.socket] = []
    try:
        for port in ports:
            probe = socket.socket()
            probes.append(probe)
            probe.bind((host, port))
    except OSError:
        return False
    finally:
        for probe in probes:
            probe.close()
    return True


def free_port_block(
    size: int, *, offsets: Sequence[int] = (0,), rng: random.Random | None = None
) -> int:
    """A base port such that ``base + offset + k`` is free for every offset and every
    ``k < size``. Other runs may share the machine, so bases are drawn at random."""
    spread = max(offsets) + size
    pick = rng or random.Random()
    for _ in range(200):
        base = pick.randrange(LOW, HIGH - spread)
        if ports_are_free(base + offset + k for offset in offsets for k in range(size)):
            return base
    raise OSError(f"found no {size} free consecutive ports on 127.0.0.1 between {LOW} and {HIGH}")
