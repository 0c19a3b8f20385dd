"""People, not processes: the member's users and their tokens (``node.setup.users``), the
route -> roles table in front of the API (``node.api.auth``), and the acting user on the
ledger (``actor``).

The table is tested against the real app (``build_app`` of an in-process node): every
route in it without a token, with a revoked one, an expired one, one of another shape,
and with the token of each role that does not allow it. The end-to-end tests run real
node processes (``testnet`` + ``cluster up``): attribution on all four ledgers, revoking
without a restart, and no token in any log line or command output.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_helpers import api_on_cluster, asgi_client
from cli_helpers import consortium_up
from click.testing import CliRunner, Result
from cluster_helpers import make_cluster
from e2e_cluster import eventually

from cli import main
from net.transport import MemoryHub
from node.api.app import build_app
from node.api.auth import OPEN, ROUTE_ROLES, roles_for
from node.client.http import ApiClient, api_url_of_home
from node.host.assemble import build_runtime, open_store
from node.ledger.kinds import Approve
from node.ops.ports import free_port_block
from node.setup.users import (
    NODE_ACTOR,
    USER_ROLES,
    UserError,
    UserStore,
    add_user,
    check_roles,
    read_users,
    revoke_user,
)

SAMPLES = {
    "{tx_id}": "ab" * 32,
    "{height}": "1",
    "{case_id:path}": "HZ-1",
    "{run_id}": "ab" * 16,
    "{entity_type}": "phone",
    "{request_id}": "ab" * 16,
}


def concrete(path: str) -> str:
    for name, value in SAMPLES.items():
        path = path.replace(name, value)
    assert "{" not in path, path
    return path


# -- the user store --------------------------------------------------------------------


def test_the_store_keeps_hashes_only_owner_only_and_a_new_actor_per_user(tmp_path: Path) -> None:
    roles = ("reporter", "investigator", "approver", "auditor")
    alice, token = add_user(tmp_path, "alice", ["investigator", "operator"], roles)
    bob, other = add_user(tmp_path, "bob", ["approver"], roles, expires_in_ms=3_600_000)
    text = (tmp_path / "users.json").read_text()
    assert token not in text and other not in text
    assert token.removeprefix("ct1_") not in text
    assert (tmp_path / "users.json").stat().st_mode & 0o777 == 0o600
    assert alice.actor != bob.actor and len(alice.actor) == 16 and alice.actor != NODE_ACTOR
    assert [u.name for u in read_users(tmp_path)] == ["alice", "bob"]
    assert json.loads(text)["users"][0]["actor"] == alice.actor.hex()
    with pytest.raises(UserError, match="already exists"):
        add_user(tmp_path, "alice", ["operator"], roles)
    store = UserStore(tmp_path)
    assert store.check(token).user == alice
    assert store.check(other).user == bob
    assert store.check(None).reason == "missing"
    assert store.check("ct1_" + "A" * 43).reason == "unknown"
    assert store.check("not a token").reason == "unknown"
    assert store.name_of(alice.actor) == "alice" and store.name_of(NODE_ACTOR) is None


def test_the_running_store_sees_a_revocation_and_an_expiry_without_a_restart(
    tmp_path: Path,
) -> None:
    roles = ("investigator",)
    _, token = add_user(tmp_path, "alice", ["investigator"], roles)
    _, brief = add_user(tmp_path, "carol", ["investigator"], roles, expires_in_ms=1)
    store = UserStore(tmp_path)
    assert store.check(token).reason == "ok"
    # It expired a millisecond after it was made: ask a little later, not in the same one.
    later_ms = int(time.time() * 1000) + 10
    assert store.check(brief, now_ms=later_ms).reason == "expired"
    revoke_user(tmp_path, "alice")
    deadline = time.monotonic() + 3
    while store.check(token).reason == "ok":
        assert time.monotonic() < deadline, "the revocation was not noticed"
        time.sleep(0.1)
    assert store.check(token).reason == "revoked"
    with pytest.raises(UserError, match="already revoked"):
        revoke_user(tmp_path, "alice")
    with pytest.raises(UserError, match="no user 'nobody'"):
        revoke_user(tmp_path, "nobody")


def test_user_roles_are_bounded_by_the_member_s_genesis_roles() -> None:
    assert check_roles(["operator", "reporter"], ["reporter"]) == ("reporter", "operator")
    assert check_roles(["operator"], []) == ("operator",)
    with pytest.raises(UserError, match="'approver' needs the member to hold the approver"):
        check_roles(["approver"], ["reporter", "auditor"])
    with pytest.raises(UserError, match=r"'investigator' needs .* investigator or auditor"):
        check_roles(["investigator"], ["reporter", "approver"])
    with pytest.raises(UserError, match="unknown role 'root'"):
        check_roles(["root"], ["reporter"])


# -- the route -> roles table, against the real app ------------------------------------


@dataclass
class Gate:
    app: Any
    tokens: dict[str, str]  # role (or "revoked", "expired") -> token


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Gate:
    """Node 0's app (the cluster is never started: every request here is refused
    before a handler runs) with one user per role, a revoked one and an expired one."""
    directory = tmp_path_factory.mktemp("gate")
    cluster = make_cluster(directory / "cluster")
    store = open_store(directory / "node0", cluster.genesis)
    runtime = build_runtime(
        0, cluster.genesis, cluster.signers[0], store, MemoryHub(cluster.n).attach(0)
    )
    home = directory / "home"
    home.mkdir()
    member = ("reporter", "investigator", "approver", "auditor")
    tokens = {role: add_user(home, role, [role], member)[1] for role in USER_ROLES}
    tokens["revoked"] = add_user(home, "gone", list(USER_ROLES), member)[1]
    revoke_user(home, "gone")
    tokens["expired"] = add_user(home, "late", list(USER_ROLES), member, expires_in_ms=1)[1]
    app = build_app(runtime, store, cluster.genesis, users=UserStore(home))
    return Gate(app, tokens)


def call(app: Any, method: str, path: str, token: str | None) -> httpx.Response:
    async def go() -> httpx.Response:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            if method in ("POST", "PUT"):
                return await c.request(method, path, json={}, headers=headers)
            return await c.request(method, path, headers=headers)

    return trio.run(go)


ROUTES = sorted(ROUTE_ROLES)


def test_every_route_of_the_app_is_in_the_table_or_open(gate: Gate) -> None:
    served = {
        (method, route.path)
        for route in gate.app.routes
        if hasattr(route, "methods") and route.methods
        for method in route.methods
        if method != "HEAD"
    }
    assert served == set(ROUTE_ROLES) | OPEN
    assert all(roles for roles in ROUTE_ROLES.values())


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_a_route_without_a_valid_token_or_the_role_is_refused(
    gate: Gate, method: str, path: str
) -> None:
    url = concrete(path)
    for token, why in [
        (None, "needs `Authorization: Bearer <token>`"),
        ("ct1_" + "x" * 43, "not one of this member's users' tokens"),
        ("garbage", "not one of this member's users' tokens"),
        (gate.tokens["revoked"], "has been revoked"),
        (gate.tokens["expired"], "has expired"),
    ]:
        response = call(gate.app, method, url, token)
        assert response.status_code == 401, (method, path, token, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        body = response.json()
        assert body["error"] == "unauthenticated" and why in body["message"]
        # Names no user, and never echoes what was presented.
        assert "gone" not in body["message"] and "late" not in body["message"]
        assert token is None or token not in response.text
    needed = ROUTE_ROLES[(method, path)]
    for role in USER_ROLES:
        response = call(gate.app, method, url, gate.tokens[role])
        if role in needed:
            assert response.status_code != 401, (role, response.text)
            assert response.json().get("error") != "forbidden_role" or path.startswith(
                ("/cases", "/trace", "/graph", "/history")
            ), (role, response.text)
            continue
        assert response.status_code == 403, (method, path, role, response.text)
        body = response.json()
        assert body["error"] == "forbidden_role"
        assert body["roles_needed"] == sorted(needed)
        assert " or ".join(sorted(needed)) in body["message"]


def test_the_open_endpoints_need_no_token(gate: Gate) -> None:
    assert call(gate.app, "GET", "/healthz", None).json() == {"status": "alive"}
    not_yet = call(gate.app, "GET", "/readyz", None)  # the runtime never started
    assert not_yet.status_code == 503 and not_yet.json()["status"] == "starting"
    assert call(gate.app, "GET", "/metrics", None).status_code == 200
    page = call(gate.app, "GET", "/console/", None)  # the console's files: no data in them
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'; ")
    assert call(gate.app, "GET", "/console/console.js", None).status_code == 200
    assert call(gate.app, "GET", "/console/../users.json", None).status_code == 404
    assert call(gate.app, "GET", "/console/app.py", None).json()["error"] == "not_found"
    document = call(gate.app, "GET", "/openapi.json", None).json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if roles_for(method.upper(), path.replace("{case_id}", "{case_id:path}")) is None:
                assert operation["security"] == []
                continue
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            assert operation["security"] == [{"bearerAuth": []}]


def test_the_ledger_body_carries_a_16_byte_actor() -> None:
    assert Approve("C-1", bytes(32)).actor == NODE_ACTOR
    with pytest.raises(ValueError, match="actor must be 16 bytes"):
        Approve("C-1", bytes(32), b"short")


# -- real node processes ---------------------------------------------------------------


def invoke(*args: str, token: str | None = None) -> Result:
    env = {"CROSSTRACE_TOKEN": token} if token is not None else {"CROSSTRACE_TOKEN": ""}
    return CliRunner().invoke(main, list(args), env=env)


def ok(*args: str, token: str | None = None) -> Result:
    result = invoke(*args, token=token)
    assert result.exit_code == 0, (args, result.output)
    return result


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with consortium_up(tmp_path_factory.mktemp("users")) as net:
        yield net


def home(net: Path, i: int) -> str:
    return str(net / f"node{i}")


def api(net: Path, i: int, path: str) -> Any:
    """GET ``path`` from node i as its local (operator) user."""
    with ApiClient(api_url_of_home(net / f"node{i}"), timeout_s=10.0) as client:
        return client._call("GET", path)


@pytest.mark.timeout(180)
def test_users_act_under_their_own_ids_on_every_ledger_and_no_token_is_ever_logged(
    net: Path,
) -> None:
    # Every command's output but ``user add``'s, which prints its token once.
    outputs: list[str] = []

    def run(*args: str, token: str | None = None) -> Result:
        result = ok(*args, token=token)
        if args[:2] != ("user", "add"):
            outputs.append(result.output)
        return result

    added = run("user", "add", "inspector-li", "--role", "investigator", "--home", home(net, 0))
    token = added.stdout.strip()
    assert re.fullmatch(r"ct1_[A-Za-z0-9_-]{43}", token)
    approvers = {}
    for i in (1, 2, 3):
        made = run("user", "add", f"approver-{i}", "--role", "approver", "--home", home(net, i))
        approvers[i] = made.stdout.strip()
    tokens = [token, *approvers.values()]
    tokens += [(net / f"node{i}" / "token").read_text().strip() for i in range(4)]

    listed = run("user", "list", "--home", home(net, 0)).output
    li = next(u for u in read_users(net / "node0") if u.name == "inspector-li")
    assert re.search(rf"inspector-li\s+investigator\s+.*{li.actor.hex()}", listed)

    week_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * 86400))
    run("case", "open", "HZ-WHO", "--home", home(net, 0), "--purpose", "telecom_fraud",
        "--justification", "Fourteen complaints name this number.",
        "--scope=phone:+86 138 0013 8000", "--from", week_ago, "--expires-in", "1d",
        token=token)  # fmt: skip
    for i in (1, 2, 3):
        run("case", "approve", "HZ-WHO", "--home", home(net, i), token=approvers[i])
    run("trace", "phone:+86 138 0013 8000", "--case", "HZ-WHO", "--home", home(net, 0),
        token=token)  # fmt: skip
    # The approver may not query: its role is not investigator.
    wrong = invoke("trace", "phone:+86 138 0013 8000", "--case", "HZ-WHO",
                   "--home", home(net, 1), token=approvers[1])  # fmt: skip
    assert wrong.exit_code == 1
    assert "forbidden_role: this operation needs the investigator role" in wrong.output
    outputs.append(wrong.output)

    actors = {u.name: u.actor.hex() for i in range(4) for u in read_users(net / f"node{i}")}

    def attributed(i: int) -> bool:
        audit = api(net, i, "/audit?case=HZ-WHO")["records"]
        return len(audit) == 1 and audit[0]["actor"] == actors["inspector-li"]

    for i in range(4):
        eventually(partial(attributed, i), 30, f"node{i} records the access")
        case = api(net, i, "/cases/HZ-WHO")
        assert case["opened"]["actor"] == actors["inspector-li"]
        assert {a["actor"] for a in case["approvals"]} == {
            actors[f"approver-{j}"] for j in (1, 2, 3)
        }
        record = api(net, i, "/audit?case=HZ-WHO")["records"][0]
        # Only the member whose user it is can name it.
        assert record.get("actor_name") == ("inspector-li" if i == 0 else None)
        assert case["opened"].get("actor_name") == ("inspector-li" if i == 0 else None)
        me = api(net, i, "/status")["member"]["name"]
        for approval in case["approvals"]:
            mine = approval["member"] == me
            assert approval.get("actor_name") == (f"approver-{i}" if mine else None)
    shown = run("audit", "--case", "HZ-WHO", "--home", home(net, 0)).output
    assert f"inspector-li ({actors['inspector-li']})" in shown
    elsewhere = run("audit", "--case", "HZ-WHO", "--home", home(net, 2)).output
    assert actors["inspector-li"] in elsewhere and "inspector-li (" not in elsewhere

    # Closed by the same officer: the close carries its actor too.
    run("case", "close", "HZ-WHO", "--home", home(net, 0), token=token)

    def closed_on(i: int) -> bool:
        return api(net, i, "/cases/HZ-WHO")["closed"] is not None

    for i in range(4):
        eventually(partial(closed_on, i), 30, f"node{i} sees the close")
        closed = api(net, i, "/cases/HZ-WHO")["closed"]
        assert closed["actor"] == actors["inspector-li"]
        assert closed.get("actor_name") == ("inspector-li" if i == 0 else None)
    shown_case = run("case", "show", "HZ-WHO", "--home", home(net, 0)).output
    assert f"user inspector-li ({actors['inspector-li']})" in shown_case

    # Revoked: refused within a second or two, without a restart.
    run("user", "revoke", "inspector-li", "--home", home(net, 0))

    def refused_now() -> bool:
        result = invoke("case", "list", "--home", home(net, 0), token=token)
        outputs.append(result.output)
        return result.exit_code == 1 and "has been revoked" in result.output

    eventually(refused_now, 10, "the revoked token is refused")

    # A token file others may read is refused, with the reason.
    token_file = net / "node2" / "token"
    os.chmod(token_file, 0o644)
    try:
        loose = invoke("status", "--home", home(net, 2))
        assert loose.exit_code == 1 and "readable by group or others" in loose.output
        outputs.append(loose.output)
    finally:
        os.chmod(token_file, 0o600)

    logs = [(net / f"node{i}" / "node.log").read_text() for i in range(4)]
    assert all(log.strip() for log in logs)
    for t in tokens:
        secret = t.removeprefix("ct1_")
        for i, log in enumerate(logs):
            assert secret not in log, f"a token is in node{i}'s log"
        for output in outputs:
            assert secret not in output, output


@pytest.mark.timeout(60)
def test_user_add_refuses_a_role_the_member_s_genesis_does_not_allow(tmp_path: Path) -> None:
    base = free_port_block(4, offsets=(0,))
    homes = []
    for i in range(4):
        roles = "reporter" if i == 0 else "reporter,approver,investigator"
        ok("init", str(tmp_path / f"m{i}"), "--name", f"m-{i}", "--institution", "bank",
           "--roles", roles, "--address", f"127.0.0.1:{base + i}")  # fmt: skip
        homes.append(tmp_path / f"m{i}")
    # init: an operator user for the local command line, its token owner-only.
    assert [(u.name, u.roles) for u in read_users(homes[0])] == [("cli", ("operator",))]
    assert (homes[0] / "token").stat().st_mode & 0o777 == 0o600
    ok("genesis", *(str(h / "member.json") for h in homes), "--chain-id", "t",
       "--approvals", "2", "--out", str(homes[0] / "genesis.json"))  # fmt: skip
    for role, held in (("approver", "approver"), ("investigator", "investigator or auditor")):
        result = invoke("user", "add", "eve", "--role", role, "--home", str(homes[0]))
        assert result.exit_code == 1
        assert f"role {role!r} needs the member to hold the {held} role" in result.output
        assert "it holds reporter" in result.output
    made = ok("user", "add", "rita", "--role", "reporter", "--expires-in", "90d",
              "--home", str(homes[0]))  # fmt: skip
    assert made.stdout.strip().startswith("ct1_")
    rita = read_users(homes[0])[-1]
    assert rita.roles == ("reporter",) and rita.expires_ms is not None
    assert abs(rita.expires_ms - rita.created_ms - 90 * 86_400_000) < 1000


async def test_readyz_answers_once_the_runtime_is_restored_and_healthz_always(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with api_on_cluster(tmp_path) as (_cluster, app, _client):
            anonymous = asgi_client(app, None)
            async with anonymous:
                assert (await anonymous.get("/readyz")).json() == {"status": "ready"}
                assert (await anonymous.get("/healthz")).status_code == 200
                refused = await anonymous.get("/status")
                assert refused.status_code == 401
