"""The architecture's import direction (``tests/layer_rules.py``), on the real tree and
on small planted trees that break each rule once."""

from __future__ import annotations

from pathlib import Path

import pytest
from layer_rules import NODE_LAYERS, unplaced_modules, violations

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_keeps_its_layers() -> None:
    found = violations(ROOT)
    assert not found, "\n".join(str(v) for v in found)


def test_every_package_of_node_is_in_a_layer_and_node_keeps_few_top_modules() -> None:
    assert unplaced_modules(ROOT) == []
    top_modules = [p for p in (ROOT / "node").glob("*.py")]
    assert len(top_modules) <= 8, sorted(p.name for p in top_modules)


def test_every_package_says_what_it_holds_and_may_import() -> None:
    for layer in NODE_LAYERS:
        for unit in layer:
            init = ROOT / "node" / unit / "__init__.py"
            if init.exists():
                text = init.read_text()
                assert "Layer" in text and "import" in text, f"{init}: no layer docstring"


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for top in ("consensus", "net", "node"):
        (tmp_path / top).mkdir(exist_ok=True)
        (tmp_path / top / "__init__.py").write_text("")
    (tmp_path / "cli.py").write_text("from node.commands import main\n")
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            if str(parent) != ".":
                (tmp_path / parent / "__init__.py").touch()
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "rule"),
    [
        # The host reaching up into the API: what peer statistics used to do.
        ({"node/host/runtime.py": "from node.api.metrics import peer_statistics\n"}, "upwards"),
        # The daemon taking build_runtime from the test fixtures.
        ({"node/daemon.py": "from node.testing.cluster import build_runtime\n"}, "upwards"),
        # A lazy import inside a function counts as much as one at the top.
        ({"node/ledger/store.py": "def f():\n    from node.psi import service\n"}, "upwards"),
        # Feature packages never import one another.
        ({"node/psi/service.py": "from node.tracing.queries import Tracer\n"}, "sibling"),
        ({"node/client/http.py": "import node.daemon\n"}, "sibling"),
        # A relative import is resolved before it is judged.
        ({"node/setup/config.py": "from ..ledger import store\n"}, "upwards"),
        ({"node/ops/bench.py": "from cli import main\n"}, "command root"),
        ({"net/tcp.py": "from node.host.runtime import NodeRuntime\n"}, "only consensus"),
        ({"consensus/replica.py": "import trio\n"}, "pure"),
        ({"consensus/replica.py": "from time import monotonic\n"}, "pure"),
        ({"consensus/replica.py": "import random\nx = random.random()\n"}, "pure"),
        ({"consensus/replica.py": "from random import choice\n"}, "pure"),
        ({"node/extra.py": "from node.host import runtime\n"}, "no layer"),
    ],
)
def test_a_planted_violation_is_found(tmp_path: Path, files: dict[str, str], rule: str) -> None:
    found = violations(plant(tmp_path, files))
    assert len(found) == 1, found
    assert rule in found[0].rule


def test_allowed_imports_pass_on_a_planted_tree(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "node/api/app.py": "from node.tracing.service import TracingService\n",
            "node/tracing/service.py": "from node.host.runtime import NodeRuntime\n"
            "from node.tracing import queries\nfrom node.refusals import Invalid\n",
            "node/commands/run.py": "def f():\n    from node.daemon import serve\n",
            "net/tcp.py": "from consensus.codec import DecodeError\n",
            "consensus/replica.py": "import enum\nfrom consensus import codec\n",
            "consensus/simulator/runner.py": "import random\nrng = random.Random(7)\n",
        },
    )
    assert violations(root) == []
