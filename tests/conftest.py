"""Fixtures shared by several test modules (helpers that are not fixtures live in the
``*_helpers.py`` modules beside this file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import make_net, run

from node.ops import processes


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    net, api = make_net(tmp_path)
    try:
        result = run("cluster", "up", str(net))
        assert result.exit_code == 0, result.output
        yield net, api
    finally:
        processes.down(net, timeout_s=10)
