"""Pseudonyms from the member's running node, for the command line and the tools.

No member holds the pseudonym key: a pseudonym is the threshold evaluation of t
members, which the member's own node runs (blinding, asking the others, checking their
proofs). ``NodePseudonyms`` is the ``PseudonymSource`` an ``Author`` asks: it hands the
node the identifiers through ``POST /pseudonyms`` (in the request body, to the local
node only, never in a URL) in chunks of ``PSEUDONYM_BATCH``; every such evaluation has
purpose ``report`` and counts against the member's daily quota in the genesis.

Identifiers are normalised here first, so a malformed one is refused by position before
anything is sent, and what is sent is already in normal form.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node.client.http import ApiClient, ApiClientError, api_url_of_home, token_for
from node.identifiers.pseudonym import PSEUDONYM_SIZE, EntityRef
from node.ledger.authoring import (
    PSEUDONYM_BATCH,
    Author,
    AuthoringError,
    load_author,
    normalize_items,
)

# A chunk of 10,000 takes the members a few seconds to evaluate; the HTTP timeout
# leaves room for that and for a slow member.
DEFAULT_TIMEOUT_S = 60.0
# 503 pseudonyms_unavailable: too few members answered. Often a member restarting, so
# a few short retries before giving up.
UNAVAILABLE_RETRIES = 3
UNAVAILABLE_BACKOFF_S = 0.5


class NodePseudonyms:
    """A ``PseudonymSource`` backed by one node's ``POST /pseudonyms``. Failures are
    ``AuthoringError``s with the node's own words (a refused identifier by position, an
    exhausted quota with the node's message)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = UNAVAILABLE_RETRIES,
        backoff_s: float = UNAVAILABLE_BACKOFF_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s

    def refs(self, items: Sequence[tuple[str, str]]) -> list[EntityRef]:
        normalized = normalize_items(items)
        refs: list[EntityRef] = []
        # A connection per call: an Author lives as long as its caller likes, and no
        # socket should outlive the request that needed it.
        with ApiClient(self.base_url, timeout_s=self._timeout_s, token=self._token) as client:
            for start in range(0, len(normalized), PSEUDONYM_BATCH):
                chunk = normalized[start : start + PSEUDONYM_BATCH]
                refs.extend(self._chunk(client, chunk, start))
        return refs

    def _chunk(
        self, client: ApiClient, items: Sequence[tuple[str, str]], offset: int
    ) -> list[EntityRef]:
        identifiers = [f"{entity_type}:{value}" for entity_type, value in items]
        answer = self._post(client, identifiers, offset)
        pseudonyms = answer.get("pseudonyms") if isinstance(answer, dict) else None
        if not isinstance(pseudonyms, list) or len(pseudonyms) != len(items):
            raise AuthoringError(
                f"{self.base_url}/pseudonyms: expected {len(items)} pseudonyms in the answer"
            )
        refs = []
        for i, ((entity_type, _), item) in enumerate(zip(items, pseudonyms, strict=True)):
            refs.append(self._ref(entity_type, item, offset + i))
        return refs

    def _post(self, client: ApiClient, identifiers: list[str], offset: int) -> Any:
        for attempt in range(self._retries + 1):
            try:
                return client.pseudonyms(identifiers)
            except ApiClientError as exc:
                code = exc.body.get("error") if isinstance(exc.body, dict) else None
                if exc.status == 503 and attempt < self._retries:
                    time.sleep(self._backoff_s * (attempt + 1))
                    continue
                raise AuthoringError(_reason(exc, code, offset)) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _ref(self, entity_type: str, item: object, position: int) -> EntityRef:
        where = f"{self.base_url}/pseudonyms: pseudonyms[{position}]"
        if not isinstance(item, dict) or item.get("type") != entity_type:
            raise AuthoringError(f"{where}: expected type {entity_type!r}")
        text = item.get("pseudonym")
        if not isinstance(text, str) or len(text) != 2 * PSEUDONYM_SIZE:
            raise AuthoringError(f"{where}: expected {2 * PSEUDONYM_SIZE} hex digits")
        try:
            return EntityRef(entity_type, bytes.fromhex(text))
        except ValueError:
            raise AuthoringError(f"{where}: expected {2 * PSEUDONYM_SIZE} hex digits") from None


def _reason(exc: ApiClientError, code: object, offset: int) -> str:
    """The node's refusal as one line; a refused identifier is numbered in the caller's
    list, not in the chunk."""
    body = exc.body
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return str(exc)
    message = body["message"]
    if code == "bad_identifier" and offset:
        message = _renumber(message, offset)
    return f"{code}: {message}"


def _renumber(message: str, offset: int) -> str:
    prefix = "identifiers["
    head, sep, tail = message.partition(prefix)
    number, close, rest = tail.partition("]")
    if not sep or not close or not number.isdigit():
        return message
    return f"{head}{prefix}{int(number) + offset}]{rest}"


def node_pseudonyms_for_home(home: Path, url: str | None = None) -> NodePseudonyms:
    """The source of ``home``'s running node: its API address from the config (or
    ``url``) and the home's token, as the other client commands find them."""
    try:
        base_url = url if url is not None else api_url_of_home(home)
        return NodePseudonyms(base_url, token_for(base_url.rstrip("/"), home))
    except ApiClientError as exc:
        raise AuthoringError(str(exc)) from None


def author_for_home(home: Path, passphrase: str | None = None, *, url: str | None = None) -> Author:
    """The member of ``home``, taking its pseudonyms from its running node."""
    return load_author(home, passphrase, pseudonyms=node_pseudonyms_for_home(home, url))
