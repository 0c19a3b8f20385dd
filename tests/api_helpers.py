"""A node's API app on an in-process consortium, driven through httpx's ASGI transport,
and the checks every API test makes of a refusal."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from cluster_helpers import make_cluster
from starlette.applications import Starlette

from node.api.app import build_app
from node.ledger.transactions import decode_tx, encode_tx
from node.setup.users import USER_ROLES, User, UserStore, make_user
from node.testing.cluster import InProcessCluster

OCTETS = {"content-type": "application/octet-stream"}
ZERO_ID = "00" * 32


def full_user(name: str = "tester") -> tuple[User, str]:
    """A user with every role (a fixed store skips the genesis check), and its token:
    the in-process tests drive the services' own refusals through it."""
    return make_user(name, USER_ROLES)


def users_with(*users: User) -> UserStore:
    return UserStore.fixed(users)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def asgi_client(app: Starlette, token: str | None) -> httpx.AsyncClient:
    """An httpx client of ``app`` in process, presenting ``token``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1",
        headers=None if token is None else bearer(token),
    )


def now_ms() -> int:
    return int(time.time() * 1000)


@asynccontextmanager
async def api_on_cluster(
    tmp_path: Path, transport: str = "memory", **app_options: Any
) -> AsyncIterator[tuple[InProcessCluster, Starlette, httpx.AsyncClient]]:
    """A running four-node cluster and an httpx client for node 0's app, in process."""
    cluster = make_cluster(tmp_path, transport=transport)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        user, token = full_user()
        app_options.setdefault("users", users_with(user))
        app = build_app(cluster.runtime(0), cluster.store(0), cluster.genesis, **app_options)
        async with asgi_client(app, token) as client:
            yield cluster, app, client
        await cluster.stop()
        nursery.cancel_scope.cancel()


def forged(tx: bytes) -> bytes:
    """The same transaction with one bit of its signature flipped."""
    decoded = decode_tx(tx)
    signature = bytes([decoded.signature[0] ^ 1]) + decoded.signature[1:]
    return encode_tx(dataclasses.replace(decoded, signature=signature))


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body
