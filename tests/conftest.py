"""Fixtures shared by several test modules (helpers that are not fixtures live in the
``*_helpers.py`` modules beside this file)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say it loudly when the console's browser tests (``test_console.py``) could not run."""
    missing = [
        what
        for what, there in [
            ("Chromium (/usr/bin/chromium; apt-get install chromium)", Path("/usr/bin/chromium")),
            ("Playwright (the dev group)", importlib.util.find_spec("playwright")),
        ]
        if not (there.exists() if isinstance(there, Path) else there)
    ]
    if missing:
        terminalreporter.write_line(
            "WARNING: the console's browser tests were skipped: no " + " and no ".join(missing),
            red=True,
            bold=True,
        )
