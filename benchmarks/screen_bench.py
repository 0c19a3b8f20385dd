"""Raw-identifier screen benchmark: microseconds per string screened.

Admission screens every string of every transaction but a report's attribute values
(``node.identifiers.screen``; attributes are typed by ``node.ledger.attributes``), so
its cost is paid thousands of times a second. This times ``scan_for_raw_identifier``
(the whole screen) and ``find_raw_identifier`` (with its shortcut for short strings, as
admission calls it) on ``--strings`` typical transaction strings (seeded): categories
and attribute keys, small counts, amounts with thousands separators, dates and times,
purposes in English and Chinese. The free text is what attribute values and purposes
were before they became closed vocabularies, kept so the figure stays comparable with
earlier runs. None of them holds an identifier; a refused string would stop the screen
early and flatter the figure.

    python benchmarks/screen_bench.py                    # 100,000 strings
    python benchmarks/screen_bench.py --strings 20000    # quicker
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from node.identifiers.screen import find_raw_identifier, scan_for_raw_identifier

TOKENS = (
    "fraud_call", "money_mule", "transferred_to", "victim_statement", "phone", "account",
    "telecom", "bank", "owns", "uses", "complaints", "amount_cny", "source", "sims_seen",
    "C-17", "completed", "trace",
)  # fmt: skip


def corpus(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)

    def num() -> str:
        return str(rng.randint(0, 99999))

    makers: list[Callable[[], str]] = [
        lambda: rng.choice(TOKENS),
        lambda: rng.choice(TOKENS),
        lambda: rng.choice(TOKENS),
        num,
        num,
        lambda: f"{rng.randint(1, 999)},{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d}",
        lambda: (
            f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        ),
        lambda: f"Telecom fraud ring targeting pensioners in district {rng.randint(1, 20)}",
        lambda: (
            f"Victim transferred {rng.randint(1000, 90000)} CNY on {rng.randint(1, 28)}."
            f"{rng.randint(1, 12)}.2026 after a call from a fake police officer"
        ),
        lambda: f"诈骗电话\uff0c来电归属地上海\uff0c受害人{rng.randint(2, 90)}岁",
        lambda: f"withdrawn at ATM within {rng.randint(1, 48)} h of the transfer",
        lambda: f"Investigate mule accounts linked to the ring, batch {rng.randint(1, 500)}",
        lambda: f"version 4.2.{rng.randint(0, 30)}",
    ]
    return [rng.choice(makers)() for _ in range(n)]


def per_call_us(screen: Callable[[str], str | None], texts: list[str], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for text in texts:
            screen(text)
        best = min(best, time.perf_counter() - start)
    return best / len(texts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strings", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="the best round counts")
    args = parser.parse_args()
    texts = corpus(args.strings)
    refused = sum(find_raw_identifier(t) is not None for t in texts)
    mean = sum(map(len, texts)) / len(texts)
    print(f"{len(texts):,} strings, {mean:.1f} characters on average, {refused} refused")
    for screen in (scan_for_raw_identifier, find_raw_identifier):
        print(f"{screen.__name__}: {per_call_us(screen, texts, args.rounds):.2f} µs per call")


if __name__ == "__main__":
    main()
