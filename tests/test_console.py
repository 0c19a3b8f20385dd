"""The investigator's console (``node.api.console``) in a real browser: Debian's Chromium
driven by Playwright against a six-member consortium of real node processes holding the
demo's fraud-ring story (``node.ops.demo.submit_story``), with users made by
``crosstrace user add`` and the demo's.

One investigator opens a case, two other members' approvers approve it from their own
consoles, the investigator traces the caller, draws the link graph three steps out and
finds both mule accounts, expands a node, asks who is behind a mule account; the audit
record shows on another member's console; a wrong token and a role without the right
read the API's refusal. Every request each page makes goes to its own node and nowhere
else. The run takes the screenshots shown in the README; it writes them only when asked
(``make screenshots``, which sets ``CROSSTRACE_SCREENSHOTS=docs``), so a test run
leaves the clone as it was.

Without Chromium (``/usr/bin/chromium``) or Playwright the tests skip, loudly: a skip
reason and a warning line in the terminal summary (``conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cli_helpers import run

from node.ops import processes
from node.ops.demo import Partner, submit_story
from node.ops.ports import free_port_block
from node.ops.scenario import CALLER
from node.setup.provision import make_testnet

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Where the screenshots go, when asked (relative to the repository's root).
SHOTS = os.environ.get("CROSSTRACE_SCREENSHOTS", "")
ROOT = Path(__file__).resolve().parent.parent
CASE = "CONSOLE-2026-001"
ENTITY = f"{CALLER[0]}:{CALLER[1]}"
TIMEOUT_MS = 15_000

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev group installs it
    sync_playwright = None  # type: ignore[assignment]

MISSING = (
    "Playwright is not installed"
    if sync_playwright is None
    else (None if Path(CHROMIUM).exists() else f"no Chromium at {CHROMIUM}")
)
SKIP_REASON = (
    f"BROWSER TESTS NOT RUN: {MISSING} (apt-get install chromium; .ci/run does it)"
    if MISSING
    else None
)
pytestmark = pytest.mark.skipif(MISSING is not None, reason=SKIP_REASON or "")


@dataclass
class World:
    browser: Browser
    team: dict[str, Partner]
    clerk_token: str  # an operator of police-0, made with ``crosstrace user add``
    hosts: dict[str, str]  # member -> "127.0.0.1:port" of its API


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("console") / "net"
    base = free_port_block(6, offsets=(0, 500))
    make_testnet(directory, 6, p2p_base_port=base, api_base_port=base + 500, case_approvals=2)
    try:
        nodes = processes.up(directory)
        homes = [node.home for node in nodes]
        team = {p.name: p for p in submit_story(directory, homes, lambda line: None)}
        added = run("user", "add", "clerk", "--role", "operator", "--home", str(homes[0]))
        assert added.exit_code == 0, added.output
        clerk = added.stdout.strip().splitlines()[-1]
        hosts = {name: urlsplit(p.url).netloc for name, p in team.items()}
        assert sync_playwright is not None
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                yield World(browser, team, clerk, hosts)
            finally:
                browser.close()
    finally:
        processes.down(directory, timeout_s=10)


class Console:
    """One member's console in its own browser context, every request recorded."""

    def __init__(self, world: World, member: str) -> None:
        self.url = world.team[member].url
        self.context = world.browser.new_context(viewport={"width": 1280, "height": 800})
        self.requests: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page: Page = self.context.new_page()
        # Script errors and Content-Security-Policy violations the page met.
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.goto(f"{self.url}/console/")

    def sign_in(self, token: str) -> None:
        self.page.fill("#token", token)
        self.page.press("#token", "Enter")  # the keyboard signs in

    def signed_in(self, token: str) -> Console:
        self.sign_in(token)
        self.page.wait_for_selector("#main:not([hidden])")
        return self

    def tab(self, name: str) -> None:
        self.page.click(f'#tabs button[data-tab="{name}"]')

    def message(self) -> str:
        self.page.wait_for_selector("#message:not([hidden])")
        return self.page.inner_text("#message")

    def hosts(self) -> set[str]:
        return {urlsplit(url).netloc for url in self.requests}

    def close(self) -> None:
        self.context.close()


def rows(page: Page, table: str) -> list[list[str]]:
    cells: list[list[str]] = page.eval_on_selector_all(
        f"#{table} tbody tr",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))",
    )
    return cells


def wait_rows(page: Page, table: str, check: Callable[[list[list[str]]], bool]) -> list[list[str]]:
    page.wait_for_function(
        """([table]) => document.querySelectorAll('#' + table + ' tbody tr').length > 0""",
        arg=[table],
    )
    found = rows(page, table)
    for _ in range(50):
        if check(found):
            return found
        page.wait_for_timeout(100)
        found = rows(page, table)
    raise AssertionError(f"{table}: {found}")


def case_row(page: Page) -> list[str]:
    return next(row for row in rows(page, "cases-table") if row[0] == CASE)


def shot(page: Page, name: str) -> None:
    png = page.screenshot(full_page=False)
    assert png.startswith(b"\x89PNG"), name
    if SHOTS:
        folder = ROOT / SHOTS
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(png)


@pytest.mark.timeout(90)
def test_an_investigation_through_the_console(world: World) -> None:
    police = Console(world, "police-0").signed_in(world.team["police-0"].tokens["investigator"])
    page = police.page
    # The page's own headers: a strict policy, no inline script anywhere.
    response = page.request.get(f"{police.url}/console/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.eval_on_selector_all("script", "s => s.every(x => x.src)")

    page.click("#open-case summary")
    page.fill("#oc-id", CASE)
    page.select_option("#oc-purpose", "telecom_fraud")
    page.fill("#oc-just", "Complaints about calls from this number; victims paid a mule account.")
    page.fill("#oc-scope", ENTITY)
    page.click("#open-form button[type=submit]")
    page.wait_for_selector(f'#cases-table tr[data-case-id="{CASE}"]')
    assert case_row(page)[1:4] == ["pending", "telecom_fraud", "0 of 2"]

    for member in ("bank-1", "telecom-2"):  # two other members approve, each on its node
        other = Console(world, member).signed_in(world.team[member].tokens["approver"])
        other.page.wait_for_selector(f'#cases-table tr[data-case-id="{CASE}"] >> text=Approve')
        other.page.click(f'#cases-table tr[data-case-id="{CASE}"] >> text=Details')
        other.page.wait_for_selector("#case-detail:not([hidden])")
        other.page.click(f'#cases-table tr[data-case-id="{CASE}"] >> text=Approve')
        other.page.wait_for_selector("#notice:has-text('approve'), #message:not([hidden])")
        assert other.page.is_hidden("#message"), other.message()
        assert other.hosts() == {world.hosts[member]}, other.requests
        other.close()
    page.click("#cases-refresh")
    wait_rows(page, "cases-table", lambda _: case_row(page)[1] == "active")
    assert case_row(page)[3] == "2 of 2"
    page.click(f'#cases-table tr[data-case-id="{CASE}"] >> text=Details')
    page.wait_for_selector("#case-detail:not([hidden])")
    shot(page, "console-cases.png")

    police.tab("trace")
    page.fill("#tr-case", CASE)
    page.fill("#tr-entity", ENTITY)
    page.click("#trace-form button[type=submit]")
    traced = wait_rows(page, "trace-table", lambda found: len(found) == 6)
    assert {"telecom-2", "police-0", "telecom-4", "utility-5"} <= {row[0] for row in traced}
    page.click("#trace-table th button[data-sort=member]")
    members = [row[0] for row in rows(page, "trace-table")]
    assert members == sorted(members)
    shot(page, "console-trace.png")

    police.tab("graph")
    page.fill("#gr-case", CASE)
    page.fill("#gr-entity", ENTITY)
    page.select_option("#gr-depth", "1")
    page.click("#graph-form button[type=submit]")
    page.wait_for_selector("#notice:has-text('depth 1')")
    first = len(rows(page, "nodes-table"))
    # Expand the depth-1 entities one step each: their neighbours join the picture.
    ones = [row[0] for row in rows(page, "nodes-table") if row[1] == "1"]
    assert ones
    for entity in ones:
        page.click(f'#nodes-table tr[data-node="{entity}"] >> text=Select')
        page.click("#gr-expand")
        page.wait_for_selector("#notice:has-text('expanded one step')")
    assert len(rows(page, "nodes-table")) > first

    page.select_option("#gr-depth", "3")
    page.click("#graph-form button[type=submit]")
    page.wait_for_selector("#notice:has-text('depth 3')")
    links: list[dict[str, Any]] = page.eval_on_selector_all(
        "#edges-table tbody tr", "rs => rs.map(r => ({...r.dataset}))"
    )
    entities = {row[0] for row in rows(page, "nodes-table")}
    # Both mule accounts, the money moving from one to the other (the victim's own
    # account lies four steps out).
    mules = {entity for entity in entities if entity.startswith("account:")}
    assert len(mules) == 2, entities
    moved = [
        link
        for link in links
        if link["relation"] == "transferred_to" and {link["a"], link["b"]} == mules
    ]
    assert len(moved) == 1, links
    second = moved[0]["b"]
    page.click(f'#nodes-table tr[data-node="{second}"] >> text=Select')
    page.click("#gr-path")
    page.wait_for_selector("#notice:has-text('path:')")
    assert page.locator("#cy canvas").count() > 0
    with page.expect_download() as download:
        page.click("#gr-png")
    assert download.value.suggested_filename == "crosstrace-graph.png"
    with page.expect_download() as svg_download:
        page.click("#gr-svg")
    assert svg_download.value.suggested_filename == "crosstrace-graph.svg"
    svg = Path(svg_download.value.path()).read_text()
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    # Every entity drawn, both mules among them, the path highlighted.
    assert svg.count("<circle") == len(entities) and svg.count(">account ") == 2
    assert 'stroke="#d60"' in svg
    shot(page, "console-graph.png")

    page.click("#gr-disclose")
    assert page.input_value("#dc-pseudonym") == second.split(":", 1)[1]
    page.click("#disc-form button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#disc-table tbody tr') !== null"
        " || !document.querySelector('#message').hidden"
    )
    disclosed = rows(page, "disc-table")
    assert disclosed and disclosed[0][1] == CASE, page.inner_text("#message")

    police.tab("audit")
    page.fill("#au-case", CASE)
    page.click("#audit-form button[type=submit]")
    audit = wait_rows(page, "audit-table", lambda found: len(found) >= 4)
    assert {"trace", "graph"} <= {row[3] for row in audit}
    assert all(row[2] == "inspector-wang" for row in audit if row[1] == "police-0")

    police.tab("psi")
    page.wait_for_selector("#psi-table")
    assert not page.is_visible("#message"), page.inner_text("#message")
    assert police.hosts() == {world.hosts["police-0"]}, police.requests
    assert police.errors == [], police.errors

    # Another member's console shows the same audit records (the actor as an id there).
    bank = Console(world, "bank-3").signed_in(world.team["bank-3"].tokens["approver"])
    bank.tab("audit")
    bank.page.fill("#au-case", CASE)
    bank.page.click("#audit-form button[type=submit]")
    seen = wait_rows(bank.page, "audit-table", lambda found: len(found) >= 4)
    assert {row[1] for row in seen} == {"police-0"}
    assert all(row[2].startswith("actor ") for row in seen)
    assert bank.hosts() == {world.hosts["bank-3"]}, bank.requests
    assert bank.errors == []
    bank.close()
    police.close()


@pytest.mark.timeout(60)
def test_a_wrong_token_and_a_role_without_the_right_read_the_refusal(world: World) -> None:
    console = Console(world, "police-0")
    console.sign_in("ct1_" + "x" * 43)
    assert console.message().startswith("unauthenticated: the token is not one of")
    assert console.page.is_hidden("#main")
    # A reporter may not read cases: refused at sign-in.
    console.sign_in(world.team["police-0"].tokens["reporter"])
    console.page.wait_for_selector("#message:has-text('forbidden_role')")
    assert "needs the approver or investigator or operator role" in console.message()
    # An operator reads cases but may not trace.
    console.signed_in(world.clerk_token)
    assert console.page.is_hidden("#message")
    console.tab("trace")
    console.page.fill("#tr-case", CASE)
    console.page.fill("#tr-entity", ENTITY)
    console.page.click("#trace-form button[type=submit]")
    console.page.wait_for_selector("#message:has-text('forbidden_role')")
    assert "needs the investigator role; user 'clerk' holds operator" in console.message()
    assert console.hosts() == {world.hosts["police-0"]}, console.requests
    # The token is in no URL the page asked for.
    assert not any(world.clerk_token in url for url in console.requests)
    console.close()
