"""Setting up a local consortium for PSI runs: an answering member's config, and a case
opened and approved by the members who will take part. For the end-to-end tests and
the benchmark, which drive real node processes through their APIs."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from node.client.http import ApiClient, api_url_of_home
from node.client.pseudonyms import author_for_home
from node.details.records import (
    case_recipients,
    commitment,
    encode_details,
    justification_details,
    new_salt,
)
from node.ledger.authoring import load_author
from node.ledger.kinds import Approve, Case
from node.ledger.transactions import tx_id
from node.setup.config import load_config

DAY_MS = 24 * 3600 * 1000


class SetupError(RuntimeError):
    pass


def enable_answering(
    home: Path, answer_sets: Mapping[str, Path] | None = None, *, prepare: bool = True
) -> None:
    """``[psi] answer = true`` in ``home``'s config, with the given answer set files
    (and ``prepare = false`` if asked)."""
    path = home / "config.toml"
    text = path.read_text()
    text, found = re.subn(r"(?m)^(\[psi\]\n(?:#.*\n)*)answer = false$", r"\1answer = true", text)
    if found != 1:
        raise SetupError(f"{path}: no 'answer = false' right under [psi]")
    if not prepare:
        text, found = re.subn(r"(?m)^prepare = true$", "prepare = false", text)
        if found != 1:
            raise SetupError(f"{path}: no 'prepare = true' in [psi]")
    entries = "".join(f'{t} = "{f}"\n' for t, f in (answer_sets or {}).items())
    text, found = re.subn(r"(?m)^\[psi\.answer_sets\]\n", "[psi.answer_sets]\n" + entries, text)
    if found != 1:
        raise SetupError(f"{path}: no [psi.answer_sets] table")
    path.write_text(text)
    load_config(path)  # still valid


def open_case(
    homes: Sequence[Path],
    case_id: str,
    *,
    opener: int,
    approvers: Sequence[int],
    timeout_s: float = 30.0,
) -> bytes:
    """Open ``case_id`` as member ``opener`` and approve it as each of ``approvers``, each
    through its own node; returns the case transaction id once every approval is
    committed."""
    # The scope's pseudonym comes from the opener's running node (nodes must be up).
    author = author_for_home(homes[opener])
    now = int(time.time() * 1000)
    scope = (author.entity("phone", "+86 138 0013 8000"),)
    justification = justification_details("Members compare their lists of suspect numbers.")
    salt = new_salt()
    promise = commitment(salt, encode_details(justification))
    body = Case(case_id, "telecom_fraud", promise, scope, now - DAY_MS, now, now + 30 * DAY_MS)
    case_tx = author.sign(body)
    # With its justification, which the opener's node keeps and sends to the approvers.
    with ApiClient(api_url_of_home(homes[opener]), timeout_s=timeout_s) as client:
        code, answer = client.submit_details(
            case_tx,
            salt,
            justification.as_dict(),
            case_recipients(author.genesis, author.member),
            wait=True,
            timeout_s=min(timeout_s, 60.0),
        )
    if code != 200 or not all(row.get("committed") for row in answer["results"]):
        raise SetupError(f"{homes[opener].name}: the case did not commit: HTTP {code} {answer}")
    for member in approvers:
        approval = load_author(homes[member]).sign(Approve(case_id, tx_id(case_tx)))
        _submit(homes[member], approval, timeout_s)
    return tx_id(case_tx)


def _submit(home: Path, tx: bytes, timeout_s: float) -> None:
    with ApiClient(api_url_of_home(home), timeout_s=timeout_s) as client:
        code, body = client.submit([tx], wait=True, timeout_s=min(timeout_s, 60.0))
    if code != 200 or not all(row.get("committed") for row in body["results"]):
        raise SetupError(f"{home.name}: the transaction did not commit: HTTP {code} {body}")
