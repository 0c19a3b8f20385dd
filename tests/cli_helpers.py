"""Driving the ``crosstrace`` command in process, and a local consortium of real node
processes made with ``testnet`` for the command tests."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from cli import main
from node.client.http import api_url_of_home
from node.ops import processes
from node.ops.ports import free_port_block


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def make_net(tmp_path: Path) -> tuple[Path, int]:
    base = free_port_block(4, offsets=(0, 500))
    net = tmp_path / "net"
    result = run("testnet", str(net), "--p2p-port", str(base), "--api-port", str(base + 500))
    assert result.exit_code == 0, result.output
    return net, base + 500


@contextmanager
def consortium_up(directory: Path) -> Iterator[Path]:
    """A four-member ``testnet`` in ``directory/net`` on free ports, its nodes running as
    background processes until the block ends."""
    net, _api = make_net(directory)
    try:
        result = run("cluster", "up", str(net))
        assert result.exit_code == 0, result.output
        yield net
    finally:
        processes.down(net, timeout_s=10)


def error_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0]


def token_headers(home: Path) -> dict[str, str]:
    """The ``Authorization`` header of the local user whose token ``testnet`` wrote in
    ``home`` (every role the member may give, plus operator)."""
    return {"authorization": f"Bearer {(home / 'token').read_text().strip()}"}


class HomeTokens(httpx.Auth):
    """httpx authentication for a consortium's members: each request to a member's API
    carries the token ``testnet`` wrote in that member's home (found by host and port)."""

    def __init__(self, homes: Iterable[Path]) -> None:
        self.tokens: dict[str, str] = {}
        for home in homes:
            url = httpx.URL(api_url_of_home(home))  # also lets ApiClient find the token
            self.tokens[f"{url.host}:{url.port}"] = (home / "token").read_text().strip()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.tokens.get(f"{request.url.host}:{request.url.port}")
        if token is not None:
            request.headers["authorization"] = f"Bearer {token}"
        yield request
