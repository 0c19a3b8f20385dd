"""The import rules of the architecture, checked on source files with ``ast`` (lazy
imports inside functions included), so a violation is found without importing anything.

``cli.py -> node.commands -> node.testing -> node.ops -> {node.daemon, node.client} ->
node.api -> {node.tracing, node.details, node.psi, node.disclosure} -> node.pseudonyms ->
node.host -> node.ledger -> node.setup -> node.identifiers -> node.refusals``, and below
all of ``node``: ``net``, then ``consensus``. A module may import its own package and
any layer below its own; packages that share a layer (the features; the daemon and the
client) never import each other. ``consensus`` imports no I/O, no clock and no global randomness.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Lowest first; a tuple is one layer of siblings that must not import each other.
NODE_LAYERS: tuple[tuple[str, ...], ...] = (
    ("refusals",),
    ("identifiers",),
    ("setup",),
    ("ledger",),
    ("host",),
    ("pseudonyms",),
    ("tracing", "details", "psi", "disclosure"),
    ("api",),
    ("daemon", "client"),
    ("ops",),
    ("testing",),
    ("commands",),
)
RANK = {unit: rank for rank, layer in enumerate(NODE_LAYERS) for unit in layer}
TOP_RANK = len(NODE_LAYERS)
# What the pure consensus core must never import: time arrives as events, randomness
# as a seed, and the host does all I/O.
CONSENSUS_FORBIDDEN = (
    "trio",
    "anyio",
    "lmdb",
    "socket",
    "asyncio",
    "selectors",
    "threading",
    "time",
    "datetime",
    "os",
    "secrets",
    "net",
    "node",
    "cli",
)


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    importer: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}: {self.rule}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """Every module an import statement in ``path`` names, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(root, path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # ``from node.ops import processes`` imports the module node.ops.processes.
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def unit_of(module: str) -> str | None:
    """The layer unit of a ``node`` module: its package, or ``daemon``/``refusals``."""
    parts = module.split(".")
    if parts[0] != "node" or len(parts) < 2:
        return None
    return parts[1]


def rank_of(module: str) -> int | None:
    if module == "cli":
        return TOP_RANK
    unit = unit_of(module)
    return None if unit is None else RANK.get(unit)


def check_module(root: Path, path: Path) -> Iterator[Violation]:
    importer = module_name(root, path)
    top = importer.split(".")[0]
    for line, imported in imports_of(root, path):
        head = imported.split(".")[0]
        where = str(path.relative_to(root))
        if top == "consensus":
            if head == "random" and imported not in ("random", "random.Random"):
                yield Violation(where, line, importer, imported, "consensus stays pure")
            if head in CONSENSUS_FORBIDDEN:
                yield Violation(where, line, importer, imported, "consensus stays pure")
            continue
        if top == "net":
            if head in ("node", "cli"):
                yield Violation(where, line, importer, imported, "net imports only consensus")
            continue
        if head == "cli" and importer != "cli":
            yield Violation(where, line, importer, imported, "nothing imports the command root")
            continue
        if head != "node" or imported == "node":
            continue
        mine, theirs = rank_of(importer), rank_of(imported)
        if theirs is None:
            yield Violation(where, line, importer, imported, "not in any layer of node")
            continue
        if mine is None:
            yield Violation(where, line, importer, imported, "importer is in no layer")
            continue
        if unit_of(importer) == unit_of(imported) and importer != "cli":
            continue
        if theirs > mine:
            yield Violation(where, line, importer, imported, "imports upwards")
        elif theirs == mine:
            yield Violation(where, line, importer, imported, "imports a sibling package")


def global_randomness(root: Path, path: Path) -> Iterator[Violation]:
    """Calls of the module-level ``random`` functions: the simulator may own a seeded
    ``random.Random``, nothing may share the process's global generator."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr != "Random"
        ):
            where = str(path.relative_to(root))
            name = module_name(root, path)
            yield Violation(where, node.lineno, name, f"random.{node.attr}", "consensus stays pure")


def source_files(root: Path) -> Iterator[Path]:
    for top in ("consensus", "net", "node"):
        yield from sorted((root / top).rglob("*.py"))
    yield root / "cli.py"


def violations(root: Path) -> list[Violation]:
    found = [v for path in source_files(root) for v in check_module(root, path)]
    for path in sorted((root / "consensus").rglob("*.py")):
        found.extend(global_randomness(root, path))
    return found


def unplaced_modules(root: Path) -> list[str]:
    """Modules directly in ``node/`` or packages of it that no layer names."""
    out = []
    for path in sorted((root / "node").iterdir()):
        name = path.stem if path.suffix == ".py" else path.name
        if name in ("__init__", "__pycache__") or name in RANK:
            continue
        if path.suffix == ".py" or (path / "__init__.py").exists():
            out.append(name)
    return out
