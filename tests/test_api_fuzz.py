"""The local API against its own OpenAPI document, fuzzed with schemathesis: for every
operation, requests generated from the document (valid and invalid) must get no 5xx,
and every response must have a documented status, content type, headers and body.

The app is the real one (``build_app`` with the tracing service) of node 0 of a running
in-process consortium, served by Hypercorn on a loopback port from a trio loop in a
background thread; the ledger holds an active case, so the requests the document's
examples describe are answered (200), not only refused. The document is the one that
app generates from its models and serves (``app.openapi()``, ``GET /openapi.json``), so
the schema is loaded from a fixture, once the app exists; each operation is a subtest.
Every request carries the bearer token of a user with every role (the document lists
``bearerAuth`` and the 401 and 403 answers of each operation).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import trio
from api_helpers import bearer, users_with
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation
from schemathesis.schemas import BaseSchema
from tracing_api_helpers import ACCOUNT, DAY, PHONE, now_ms, tracing_cluster

from node.api.app import build_app
from node.api.models_tracing import EXAMPLE_CASE_ID, EXAMPLE_ENTITY
from node.api.server import serve_api
from node.disclosure.service import DisclosureService
from node.disclosure.store import DisclosureStore
from node.psi.service import PsiService

# Bounded so the whole module stays well under a minute on two busy cores.
MAX_EXAMPLES = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

SCHEMA = schemathesis.pytest.from_fixture("api_schema")


class ServedConsortium:
    """A four-node consortium with node 0's API on a loopback port, in a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = ""
        self.token = ""
        self.document: dict[str, Any] = {}
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="api-under-fuzz", daemon=True)

    def __enter__(self) -> ServedConsortium:
        self._thread.start()
        if not self._ready.wait(60) or self.error is not None:
            raise RuntimeError(f"the consortium did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        async with tracing_cluster(self.directory) as tc:
            now = now_ms()
            await tc.commit(
                [
                    tc.report(1, EXAMPLE_ENTITY, now - DAY),
                    tc.report(2, PHONE, now - DAY),
                    tc.link(3, EXAMPLE_ENTITY, ACCOUNT, "uses", now - DAY),
                ]
            )
            await tc.open_case(EXAMPLE_CASE_ID, [EXAMPLE_ENTITY, PHONE])
            await tc.approve(EXAMPLE_CASE_ID)
            cluster = tc.cluster
            psi = PsiService(cluster.runtime(0), cluster.store(0), cluster.genesis, workers=1)
            disclosure_store = DisclosureStore.open(
                self.directory / "disclosure", chain_id=cluster.genesis.chain_id
            )
            disclosure = DisclosureService(
                cluster.runtime(0),
                cluster.store(0),
                cluster.genesis,
                disclosure_store,
                pseudonyms=cluster.pseudonyms(0),
                retention_ms=DAY,
            )
            app = build_app(
                cluster.runtime(0),
                cluster.store(0),
                cluster.genesis,
                tracing=tc.services[0],
                details=cluster.details(0),
                psi=psi,
                disclosure=disclosure,
                pseudonyms=cluster.pseudonyms(0),
                users=users_with(tc.users[0]),
            )
            self.token = tc.tokens[0]
            self.document = app.openapi()
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                await nursery.start(psi.run)
                await nursery.start(disclosure.run)
                port = await nursery.start(serve_api, app, "127.0.0.1", 0)
                self.url = f"http://127.0.0.1:{port}"
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()
            disclosure_store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedConsortium]:
    with ServedConsortium(tmp_path_factory.mktemp("fuzz")) as served:
        yield served


@pytest.fixture(scope="module")
def api_url(served: ServedConsortium) -> str:
    return served.url


@pytest.fixture(scope="module")
def api_token(served: ServedConsortium) -> str:
    return served.token


@pytest.fixture(scope="module")
def api_schema(served: ServedConsortium) -> BaseSchema:
    schema = schemathesis.openapi.from_dict(served.document)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        database="none",
    )
    schema.config.phases.update(phases=["examples", "fuzzing"])
    return schema


def test_the_fuzzed_document_is_the_one_the_api_serves(served: ServedConsortium) -> None:
    served_document = httpx.get(f"{served.url}/openapi.json", trust_env=False).json()
    assert served_document == served.document
    assert "/trace" in served.document["paths"] and "/txs" in served.document["paths"]
    schemes = served.document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    for path, item in served.document["paths"].items():
        for method, operation in item.items():
            if path in ("/healthz", "/readyz", "/metrics", "/openapi.json") or path.startswith(
                "/console/"
            ):
                assert operation["security"] == [], path
                continue
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis' fixture-loaded schemas read and rename ``Node._nodeid``, which
    # pytest 9.2 no longer has; the renaming only affects how subtests are reported.
    request.node._nodeid = request.node.nodeid


def credentials(case: schemathesis.Case, token: str) -> dict[str, str]:
    """The token, except for a case generated without its ``Authorization`` header on
    purpose (negative headers): adding it back would make the case valid, and the API's
    200 would count as invalid data accepted. Sent without it, the case gets its 401."""
    headers = {name.lower() for name in case.headers or {}}
    negative_headers = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    return {} if negative_headers and "authorization" not in headers else bearer(token)


# One test, every operation a subtest (two dozen, a few seconds each).
@pytest.mark.timeout(600)
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@SCHEMA.parametrize()
def test_the_api_keeps_to_its_openapi_document(
    case: schemathesis.Case, api_url: str, api_token: str
) -> None:
    response = case.call(base_url=api_url, timeout=30, headers=credentials(case, api_token))
    case.validate_response(response, checks=CHECKS)
