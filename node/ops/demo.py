"""The investigation half of ``crosstrace demo``: six partners report what each saw of
a telecom-fraud ring (``node.ops.scenario``), the police open a case on one caller's
number (purpose ``telecom_fraud`` on the ledger, the written justification sent to the
approvers only), three partners read the justification, check it against the ledger's
commitment and approve the case, and a trace and a link graph under the case show the
ring, each query leaving its access record on the ledger first.

Everything goes through the members' own local APIs, as people would: each partner's
records are signed with its own key and submitted to its own node by its reporter; the
police's investigator (a user of that member) opens the case and queries, and one
approver per partner approves, each with its own token, so the ledger records who acted
(``actor``). The demo's users are created once per consortium, their tokens kept in
``demo-users.json`` (owner-only) in the consortium directory. The story
is submitted once per consortium (``scenario.json`` in the consortium directory says
it was); the case is reused while it is active.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.client.http import ApiClientError, api_url_of_home
from node.client.pseudonyms import NodePseudonyms
from node.client.text import graph_lines, trace_lines
from node.client.tracing import TracingClient, refusal
from node.identifiers.normalize import normalize
from node.ledger.authoring import Author, AuthoringError, load_author
from node.ops.scenario import CALLER, DAY_MS, DAYS, fraud_ring_entities, fraud_ring_with_refs
from node.setup.keys import atomic_write
from node.setup.users import UserError, add_user

CASE_ID = "RING-2026-001"
CASE_PURPOSE = "telecom_fraud"
# Private: the approvers read it, the ledger holds a salted commitment to it.
CASE_JUSTIFICATION = (
    "Fourteen complaints to Telecom A and two victim statements to the police name this "
    "number. Callers posing as police officers told the victims their savings were "
    "evidence in a money-laundering case and had them move the money to a 'safe "
    "account'; one victim transferred 48,000 CNY, which left that account within days. "
    "We ask to trace the number and what it links to, to find the accounts the money "
    "went through and the people behind the calls."
)
# How long an approver waits for the justification to reach its node.
JUSTIFICATION_WAIT_S = 15.0
MARKER = "scenario.json"
USERS_FILE = "demo-users.json"
# The people of the demo: per member, a user of each role its genesis roles allow.
INVESTIGATOR = "inspector-wang"
APPROVER = "approver"
REPORTER = "reporter"
GRAPH_DEPTH = 3

Say = Callable[[str], None]


class DemoError(Exception):
    """The investigation could not be shown; the message says why, in one line."""


@dataclass(frozen=True)
class Partner:
    author: Author
    url: str
    roles: frozenset[str]
    tokens: dict[str, str]  # user role -> the token of the demo's user with it

    @property
    def name(self) -> str:
        return self.author.member


def partners(homes: Sequence[Path], directory: Path | None = None) -> list[Partner]:
    """Each member of ``homes`` as the demo's people act for it. Its author takes
    pseudonyms from its own running node, as its reporter (the role that may ask)."""
    out = []
    kept = _demo_users(directory, homes) if directory is not None else {}
    for home in homes:
        author = _load(home)
        member = next(m for m in author.genesis.members if m.name == author.member)
        tokens = kept.get(author.member, {})
        url = api_url_of_home(home)
        source = NodePseudonyms(url, tokens.get("reporter"))
        author = Author(author.genesis, author.member, author.signer, source)
        out.append(Partner(author, url, frozenset(member.roles), tokens))
    return out


def _load(home: Path) -> Author:
    try:
        return load_author(home)
    except AuthoringError as exc:
        raise DemoError(str(exc)) from None


def _demo_users(directory: Path, homes: Sequence[Path]) -> dict[str, dict[str, str]]:
    """The demo's users' tokens by member and role: read from ``demo-users.json``, or
    the users created now (an investigator where the member has the role, an approver,
    a reporter) and kept there, owner-only."""
    path = directory / USERS_FILE
    if path.exists():
        kept: dict[str, dict[str, str]] = json.loads(path.read_text())
        return kept
    made: dict[str, dict[str, str]] = {}
    for home in homes:
        author = _load(home)
        member = next(m for m in author.genesis.members if m.name == author.member)
        tokens: dict[str, str] = {}
        people = [(INVESTIGATOR, "investigator"), (APPROVER, "approver"), (REPORTER, "reporter")]
        for name, role in people:
            if role not in member.roles:
                continue
            try:
                _, tokens[role] = add_user(home, name, [role], member.roles)
            except UserError as exc:
                raise DemoError(f"{author.member}: {exc}") from None
        made[author.member] = tokens
    atomic_write(path, json.dumps(made, indent=1).encode(), mode=0o600)
    return made


def investigate(directory: Path, homes: Sequence[Path], say: Say) -> Path:
    """Submit the story (once), open and approve the case (while needed), trace the
    caller and draw the ring; returns the path of the graph file."""
    team = partners(homes, directory)
    try:
        _submit_story(directory, team, say)
        police = _open_case(team, say)
        _trace(police, say)
        return _draw(directory, police, say)
    except ApiClientError as exc:
        raise DemoError(refusal(exc)) from None


def console_sign_in(directory: Path, homes: Sequence[Path]) -> tuple[str, str] | None:
    """The address of the investigating member's console (``/console/`` on its API) and
    the token of its investigator (the demo's user), or None when no member has the
    role."""
    police = next((p for p in partners(homes, directory) if "investigator" in p.roles), None)
    if police is None or "investigator" not in police.tokens:
        return None
    return f"{police.url}/console/", police.tokens["investigator"]


def submit_story(directory: Path, homes: Sequence[Path], say: Say) -> list[Partner]:
    """The demo's users (created once) and the fraud-ring story on the ledger (once),
    without the case: for the console's tests, which open their own."""
    team = partners(homes, directory)
    try:
        _submit_story(directory, team, say)
    except ApiClientError as exc:
        raise DemoError(refusal(exc)) from None
    return team


def _submit_story(directory: Path, team: Sequence[Partner], say: Say) -> None:
    marker = directory / MARKER
    if marker.exists():
        say(f"\nthe fraud-ring story is already on the ledger ({marker})")
        return
    by_name = {p.name: p for p in team}
    try:
        # The members' nodes are running: each partner's pseudonyms come from its own.
        signed = fraud_ring_with_refs({p.name: p.author for p in team}, int(time.time() * 1000))
    except ValueError as exc:  # AuthoringError included
        raise DemoError(str(exc)) from None
    say(f"\nsix partners report what each saw ({len(signed)} records, each through its own node):")
    named = fraud_ring_entities()
    tx_ids: list[str] = []
    for name in dict.fromkeys(member for member, _, _ in signed):
        mine = [
            (tx, tuple(zip(refs, named[i], strict=True)))
            for i, (member, tx, refs) in enumerate(signed)
            if member == name
        ]
        partner = by_name[name]
        with TracingClient(partner.url, token=partner.tokens.get("reporter")) as client:
            code, answer = client.submit([tx for tx, _ in mine], wait=True, timeout_s=30.0)
            rows = answer["results"]
            if code != 200:
                bad = next(r for r in rows if not r.get("committed"))
                raise DemoError(
                    f"{name}: a record did not commit: {bad.get('code')} "
                    f"{bad.get('message') or 'still pending'}"
                )
            # Each member keeps the identifiers behind what it reported, so it can
            # answer a disclosure request under a case (never on the ledger).
            client.keep_identifiers(
                [
                    {
                        "type": kind,
                        "pseudonym": ref.pseudonym.hex(),
                        "identifier": normalize(kind, raw),
                        "tx_id": row["tx_id"],
                    }
                    for row, (_tx, entities) in zip(rows, mine, strict=True)
                    for ref, (kind, raw) in entities
                ]
            )
        tx_ids += [r["tx_id"] for r in rows]
        say(f"  {name:<12} {len(mine)} records committed, their identifiers kept for disclosure")
    marker.write_text(json.dumps({"case_id": CASE_ID, "tx_ids": tx_ids}, indent=1) + "\n")


def _open_case(team: Sequence[Partner], say: Say) -> Partner:
    police = next((p for p in team if "investigator" in p.roles), None)
    if police is None:
        raise DemoError("no member has the investigator role: nobody may open a case")
    with TracingClient(police.url, token=police.tokens.get("investigator")) as client:
        listed = {c["case_id"]: c for c in client.cases()["cases"]}
        case = listed.get(CASE_ID)
        if case is not None and case["state"] == "active":
            say(f"\ncase {CASE_ID} is open and approved ({len(case['approvals'])} approvals)")
            return police
        if case is not None and case["state"] != "pending":
            raise DemoError(
                f"case {CASE_ID} is {case['state']}: start a fresh consortium to run the "
                "investigation again"
            )
        now = int(time.time() * 1000)
        if case is None:
            say(
                f"\n{INVESTIGATOR} of {police.name} opens case {CASE_ID} on {CALLER[1]} for "
                f"{CASE_PURPOSE}; its written justification goes to the approvers only"
            )
            client.open_case(
                CASE_ID,
                CASE_PURPOSE,
                CASE_JUSTIFICATION,
                [f"{CALLER[0]}:{CALLER[1]}"],
                (now - (DAYS + 1) * DAY_MS, now),
                now + DAYS * DAY_MS,
            )
    needed = _needed(police)
    already = {a["member"] for a in (case or {}).get("approvals", [])}
    approvers = [
        p for p in team if "approver" in p.roles and p is not police and p.name not in already
    ][: max(0, needed - len(already))]
    for partner in approvers:
        with TracingClient(partner.url, token=partner.tokens.get("approver")) as client:
            _read_justification(partner, client, say)
            _, answer = client.approve(CASE_ID)
        state = (answer.get("case") or {}).get("state", "pending")
        say(f"  {APPROVER} of {partner.name:<12} approves: case {state}")
    with TracingClient(police.url, token=police.tokens.get("investigator")) as client:
        state = client.case(CASE_ID)["state"]
    if state != "active":
        raise DemoError(f"case {CASE_ID} is {state} after {len(approvers)} approvals")
    return police


def _read_justification(partner: Partner, client: TracingClient, say: Say) -> None:
    """What an approver does first: read why the case is opened, as its own node holds
    it, checked against the commitment on the ledger."""
    deadline = time.monotonic() + JUSTIFICATION_WAIT_S
    shown = client.case(CASE_ID)["justification"]
    while shown["status"] != "held" and time.monotonic() < deadline:
        time.sleep(0.2)
        shown = client.case(CASE_ID)["justification"]
    if shown["status"] != "held":
        raise DemoError(
            f"{partner.name} holds no justification for case {CASE_ID} after "
            f"{JUSTIFICATION_WAIT_S:g} s: {shown['status']}: {shown['message']}"
        )
    if not shown["matches_commitment"]:
        raise DemoError(f"{partner.name}: the justification does not match the ledger")
    say(
        f"  {partner.name:<12} reads the justification ({len(shown['text'])} characters, from "
        f"{shown['sender']}): it matches the commitment on the ledger"
    )


def _needed(police: Partner) -> int:
    with TracingClient(police.url, token=police.tokens.get("investigator")) as client:
        needed = client.cases()["needed"]
    assert isinstance(needed, int)
    return needed


def _trace(police: Partner, say: Say) -> None:
    with TracingClient(police.url, token=police.tokens.get("investigator")) as client:
        answer, headers = client.trace(CASE_ID, f"{CALLER[0]}:{CALLER[1]}")
    say(f"\n{police.name} traces {CALLER[1]} under case {CASE_ID}:")
    for line in trace_lines(answer, f"{CALLER[0]}:{CALLER[1]}", headers.get("server-timing")):
        say(f"  {line}")


def _draw(directory: Path, police: Partner, say: Say) -> Path:
    with TracingClient(police.url, token=police.tokens.get("investigator")) as client:
        answer: dict[str, Any] = client.graph(
            CASE_ID, f"{CALLER[0]}:{CALLER[1]}", depth=GRAPH_DEPTH
        ).json()
        dot = client.graph(CASE_ID, f"{CALLER[0]}:{CALLER[1]}", depth=GRAPH_DEPTH, dot=True).text
    say(f"\nthe entities linked to it, {GRAPH_DEPTH} steps out (the ring):")
    for line in graph_lines(answer, f"{CALLER[0]}:{CALLER[1]}"):
        say(f"  {line}")
    dot_file = directory / "fraud-ring.dot"
    dot_file.write_text(dot)
    graphviz = shutil.which("dot")
    if graphviz is None:
        say(
            f"\ngraph: {dot_file} (Graphviz DOT; draw it with "
            f"dot -Tsvg {dot_file} -o {dot_file.with_suffix('.svg')})"
        )
        return dot_file
    svg_file = dot_file.with_suffix(".svg")
    subprocess.run([graphviz, "-Tsvg", str(dot_file), "-o", str(svg_file)], check=True, timeout=60)
    say(f"\ngraph: {svg_file} (rendered from {dot_file})")
    return svg_file
