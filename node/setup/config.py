"""Per-node configuration: ``config.toml`` in the node's home directory.

Every value has a default except the node's member name. Unknown sections and keys are
errors, not warnings: a misspelt ``unsafe_no_sync`` or ``max_inbound`` that silently
fell back to its default would be worse than a node that refuses to start.

The schema lives in the section dataclasses (field type, range and a one-line help text
in the field metadata); reading, checking and rendering are driven by it, so the three
cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.identifiers.normalize import EntityType
from node.setup.genesis import NAME_HELP, NAME_PATTERN, split_host_port

MIB = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")
_MAX_FILE_BYTES = 1024 * 1024
_WILDCARD_HOSTS = {"0.0.0.0", "::"}
_NAME_MISSING = "missing (this node's member name in the genesis file)"
_SHARED_KEY_GONE = (
    "the shared pseudonym key is gone: each member now holds its own share of a key "
    "nobody holds whole, made by the key ceremony (crosstrace dkg); replace this line "
    'with pseudonym_share_file = "pseudonym.share" (the file crosstrace dkg share writes)'
)


class ConfigError(ValueError):
    """An unusable configuration; the message names the file, ``section.key`` and problem."""

    def __init__(self, problem: str, key_path: str = "") -> None:
        self.problem = problem
        self.key_path = key_path
        super().__init__(f"{key_path}: {problem}" if key_path else problem)


def _meta(
    help: str,
    *,
    range: tuple[int, int] | None = None,
    gt: bool = False,
    choices: tuple[str, ...] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Schema of one key: ``range`` is inclusive unless ``gt`` makes its low end exclusive."""
    return {"help": help, "range": range, "gt": gt, "choices": choices, "kind": kind}


def _check_peer_addresses(where: str, value: Any) -> dict[str, str]:
    """A table of member name -> ``host:port``, copied so the caller's dict can't alter it."""
    if not isinstance(value, dict):
        raise ConfigError(f'expected a table of member name = "host:port", got {value!r}', where)
    for name, address in value.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ConfigError(f"expected a member name ({NAME_HELP})", f"{where}.{name}")
        try:
            split_host_port(address)
        except ValueError as exc:
            raise ConfigError(str(exc), f"{where}.{name}") from None
    return dict(value)


def _check_answer_sets(where: str, value: Any) -> dict[str, str]:
    """A table of entity type -> file of identifiers, one a line."""
    if not isinstance(value, dict):
        raise ConfigError(f'expected a table of entity type = "file", got {value!r}', where)
    types = [t.value for t in EntityType]
    for entity_type, path in value.items():
        if entity_type not in types:
            raise ConfigError(
                f"expected an entity type ({', '.join(types)})", f"{where}.{entity_type}"
            )
        if not isinstance(path, str) or not path:
            raise ConfigError(f"expected a file path, got {path!r}", f"{where}.{entity_type}")
    return dict(value)


def _check_field(section: str, f: dataclasses.Field[Any], hint: Any, value: Any) -> Any:
    """The field's value, converted where lossless (int -> float, str -> Path), or raise."""
    where = f"{section}.{f.name}"
    meta = f.metadata
    if meta["kind"] == "peer_addresses":
        return _check_peer_addresses(where, value)
    if meta["kind"] == "answer_sets":
        return _check_answer_sets(where, value)
    if hint is bool:
        if type(value) is not bool:
            raise ConfigError(f"expected true or false, got {value!r}", where)
        return value
    if hint is int:
        if type(value) is not int:
            raise ConfigError(f"expected an integer, got {value!r}", where)
    elif hint is float:
        if type(value) not in (int, float):
            raise ConfigError(f"expected a number, got {value!r}", where)
        value = float(value)
    elif hint is Path:
        if isinstance(value, str):
            if not value:
                raise ConfigError("expected a path, got an empty string", where)
            value = Path(value)
        if not isinstance(value, Path):
            raise ConfigError(f"expected a path, got {value!r}", where)
        return value
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", where)
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ConfigError(f"expected one of {', '.join(meta['choices'])}, got {value!r}", where)
        if meta["kind"] == "listen":
            try:
                split_host_port(value, allow_port_zero=True)
            except ValueError as exc:
                raise ConfigError(str(exc), where) from None
        elif meta["kind"] == "name" and not NAME_PATTERN.fullmatch(value):
            raise ConfigError(f"expected {NAME_HELP}, got {value!r}", where)
        return value
    if meta["range"] is not None:
        low, high = meta["range"]
        if meta["gt"]:
            ok = low < value <= high
            bounds = f"greater than {low} and at most {high}"
        else:
            ok = low <= value <= high
            bounds = f"between {low} and {high}"
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"must be {bounds}, got {value!r}", where)
    return value


def _validate(obj: Any, section: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = _check_field(section, f, hints[f.name], getattr(obj, f.name))
        object.__setattr__(obj, f.name, value)


@dataclass(frozen=True)
class NodeSection:
    name: str = field(metadata=_meta("This node's member name in the genesis file.", kind="name"))
    key_file: Path = field(
        default=Path("node_key.json"), metadata=_meta("The node's Ed25519 key (mode 0600).")
    )
    genesis_file: Path = field(
        default=Path("genesis.json"), metadata=_meta("The network's genesis file.")
    )
    data_dir: Path = field(
        default=Path("data"), metadata=_meta("Directory of the ledger database.")
    )

    def __post_init__(self) -> None:
        _validate(self, "node")


@dataclass(frozen=True)
class P2PSection:
    listen: str = field(
        default="127.0.0.1:7000", metadata=_meta("Address for peer connections.", kind="listen")
    )
    max_inbound: int = field(
        default=64, metadata=_meta("Most inbound peer connections at once.", range=(1, 10_000))
    )
    max_unauthenticated: int = field(
        default=16,
        metadata=_meta(
            "Most inbound handshakes under way; as many again may wait for their first byte.",
            range=(1, 10_000),
        ),
    )
    handshake_timeout_s: float = field(
        default=5.0,
        metadata=_meta("Seconds a peer has to finish the handshake.", range=(0, 300), gt=True),
    )
    send_queue: int = field(
        default=1024,
        metadata=_meta("Messages queued per peer before backpressure.", range=(1, 1 << 20)),
    )
    # A table, not a scalar: rendered as [p2p.peer_addresses] after the section's keys.
    # Only the members after this one in the genesis are dialled by it (the lower index
    # dials), so an entry for an earlier member has no effect; the daemon says so.
    peer_addresses: dict[str, str] = field(
        default_factory=dict,
        metadata=_meta(
            'Member name = "host:port" to dial instead of its genesis address (NAT, proxy).',
            kind="peer_addresses",
        ),
    )

    def __post_init__(self) -> None:
        _validate(self, "p2p")
        # Handshaking connections count as inbound, so a larger limit could never be reached.
        if self.max_unauthenticated > self.max_inbound:
            raise ConfigError(
                f"must not exceed p2p.max_inbound ({self.max_inbound}), "
                f"got {self.max_unauthenticated}",
                "p2p.max_unauthenticated",
            )


@dataclass(frozen=True)
class ApiSection:
    listen: str = field(
        default="127.0.0.1:8000",
        metadata=_meta("Address of the local HTTP query API (keep it local).", kind="listen"),
    )
    max_connections: int = field(
        default=256,
        metadata=_meta(
            "Most API connections open at once; more wait to be accepted.", range=(4, 100_000)
        ),
    )
    body_budget_mib: int = field(
        default=64,
        metadata=_meta(
            "MiB of request bodies held at once, over all requests; more get 503.",
            range=(1, 1 << 20),
        ),
    )
    body_timeout_s: float = field(
        default=30.0,
        metadata=_meta(
            "Seconds a request has to deliver its whole body.", range=(0, 3600), gt=True
        ),
    )

    def __post_init__(self) -> None:
        _validate(self, "api")


@dataclass(frozen=True)
class MempoolSection:
    max_txs: int = field(
        default=50_000, metadata=_meta("Most pending transactions.", range=(1, 10_000_000))
    )
    max_bytes: int = field(
        default=64 * MIB,
        metadata=_meta("Most bytes of pending transactions.", range=(1024, 1 << 40)),
    )
    max_per_member: float = field(
        default=0.25,
        metadata=_meta(
            "Largest share of the mempool one member's transactions may take.",
            range=(0, 1),
            gt=True,
        ),
    )

    def __post_init__(self) -> None:
        _validate(self, "mempool")


@dataclass(frozen=True)
class StorageSection:
    initial_map_size_mib: int = field(
        default=64,
        metadata=_meta("Initial LMDB map size in MiB; it grows when full.", range=(1, 1 << 20)),
    )
    sync: bool = field(
        default=True,
        metadata=_meta("fsync every commit. Turning it off needs unsafe_no_sync = true."),
    )
    unsafe_no_sync: bool = field(
        default=False, metadata=_meta("Allow sync = false (tests and benchmarks only).")
    )

    def __post_init__(self) -> None:
        _validate(self, "storage")
        if not self.sync and not self.unsafe_no_sync:
            raise ConfigError(
                "false can lose committed blocks in a crash and let this node sign votes that "
                "conflict with ones it already sent; set storage.unsafe_no_sync = true to allow it",
                "storage.sync",
            )


@dataclass(frozen=True)
class TracingSection:
    pseudonym_share_file: Path = field(
        default=Path("pseudonym.share"),
        metadata=_meta(
            "This member's share of the pseudonym key, from the key ceremony "
            "(crosstrace dkg share writes it; mode 0600)."
        ),
    )
    retention_days: int = field(
        default=365,
        metadata=_meta("Days private details are kept before deletion.", range=(1, 36_500)),
    )

    def __post_init__(self) -> None:
        _validate(self, "tracing")


@dataclass(frozen=True)
class PsiSection:
    answer: bool = field(
        default=False,
        metadata=_meta(
            "Answer other members' private set intersection runs automatically (only under "
            "an active case naming both members)."
        ),
    )
    max_set_size: int = field(
        default=1_000_000,
        metadata=_meta(
            "Largest set, ours or the other member's, in one run.", range=(1, 10_000_000)
        ),
    )
    max_runs: int = field(
        default=2, metadata=_meta("Runs at once, asked or answered.", range=(1, 64))
    )
    workers: int = field(
        default=0,
        metadata=_meta("Worker processes for the arithmetic; 0 for one per core.", range=(0, 1024)),
    )
    timeout_s: float = field(
        default=1800.0,
        metadata=_meta("Seconds one run may take in all.", range=(0, 86_400), gt=True),
    )
    idle_timeout_s: float = field(
        default=120.0,
        metadata=_meta(
            "Seconds a run waits for the other member's next message.", range=(0, 3600), gt=True
        ),
    )
    prepare: bool = field(
        default=True,
        metadata=_meta(
            "Blind each answer set for the next run (with that run's own fresh scalar) "
            "while no run is going on, so runs start with it ready."
        ),
    )
    record_timeout_s: float = field(
        default=30.0,
        metadata=_meta(
            "Seconds to wait for the run's ledger record to commit; no result without it.",
            range=(0, 3600),
            gt=True,
        ),
    )
    # A table: rendered as [psi.answer_sets] after the section's keys.
    answer_sets: dict[str, str] = field(
        default_factory=dict,
        metadata=_meta(
            'Entity type = "file" (one identifier a line) this node answers with.',
            kind="answer_sets",
        ),
    )

    def __post_init__(self) -> None:
        _validate(self, "psi")


DISCLOSURE_POLICIES = ("auto", "queue")


@dataclass(frozen=True)
class DisclosureSection:
    policy: str = field(
        default="queue",
        metadata=_meta(
            "How this node answers requests for the clear identifier behind an entity it "
            "reported: auto (at once when the entity is within the case's scope and graph "
            "depth on this node's ledger) or queue (held for the operator: crosstrace "
            "disclosure pending, allow, deny).",
            choices=DISCLOSURE_POLICIES,
        ),
    )

    def __post_init__(self) -> None:
        _validate(self, "disclosure")


@dataclass(frozen=True)
class LogSection:
    level: str = field(
        default="info", metadata=_meta(f"One of {', '.join(LOG_LEVELS)}.", choices=LOG_LEVELS)
    )
    format: str = field(
        default="json", metadata=_meta(f"One of {', '.join(LOG_FORMATS)}.", choices=LOG_FORMATS)
    )

    def __post_init__(self) -> None:
        _validate(self, "log")


@dataclass(frozen=True)
class NodeConfig:
    node: NodeSection
    p2p: P2PSection = field(default_factory=P2PSection)
    api: ApiSection = field(default_factory=ApiSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    storage: StorageSection = field(default_factory=StorageSection)
    tracing: TracingSection = field(default_factory=TracingSection)
    psi: PsiSection = field(default_factory=PsiSection)
    disclosure: DisclosureSection = field(default_factory=DisclosureSection)
    log: LogSection = field(default_factory=LogSection)

    def __post_init__(self) -> None:
        # Caught here rather than as a bind error at start-up; a wildcard host overlaps all.
        p2p_host, p2p_port = split_host_port(self.p2p.listen, allow_port_zero=True)
        api_host, api_port = split_host_port(self.api.listen, allow_port_zero=True)
        hosts = {p2p_host.lower(), api_host.lower()}
        if p2p_port == api_port != 0 and (len(hosts) == 1 or hosts & _WILDCARD_HOSTS):
            raise ConfigError(f"conflicts with p2p.listen ({self.p2p.listen})", "api.listen")

    def resolve_paths(self, base: Path) -> NodeConfig:
        """This config with relative paths made absolute under ``base`` (and ``~`` expanded)."""

        def fix(p: Path) -> Path:
            return base / p.expanduser()

        node = dataclasses.replace(
            self.node,
            key_file=fix(self.node.key_file),
            genesis_file=fix(self.node.genesis_file),
            data_dir=fix(self.node.data_dir),
        )
        tracing = dataclasses.replace(
            self.tracing, pseudonym_share_file=fix(self.tracing.pseudonym_share_file)
        )
        psi = dataclasses.replace(
            self.psi,
            answer_sets={k: str(fix(Path(v))) for k, v in self.psi.answer_sets.items()},
        )
        return dataclasses.replace(self, node=node, tracing=tracing, psi=psi)


_SECTIONS: dict[str, type] = typing.get_type_hints(NodeConfig)
_SECTION_HELP = {
    "node": "Who this node is and where its files are.",
    "p2p": "Connections to the other members' nodes.",
    "api": "The local query API used by the crosstrace command.",
    "mempool": "Limits on transactions waiting for a block.",
    "storage": "The ledger database.",
    "tracing": "Tracing queries and private details.",
    "psi": "Private set intersection with other members (crosstrace psi).",
    "disclosure": "Answering requests for the identifiers this node reported.",
    "log": "Logging.",
}


def default_config(name: str) -> NodeConfig:
    return NodeConfig(node=NodeSection(name=name))


def _suggest(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_config(doc: dict[str, Any]) -> NodeConfig:
    """Build a config from a decoded TOML document; paths are left as written."""
    sections: dict[str, Any] = {}
    for section, table in doc.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            if isinstance(table, dict):
                hint = _suggest(section, _SECTIONS)
                raise ConfigError(f"unknown section [{section}]{hint}")
            raise ConfigError(f"unknown top-level key {section!r}; keys belong in a section")
        if not isinstance(table, dict):
            raise ConfigError(f"expected a table [{section}], got {table!r}", section)
        names = [f.name for f in dataclasses.fields(cls)]
        if section == "tracing" and "pseudonym_key_file" in table:
            raise ConfigError(_SHARED_KEY_GONE, "tracing.pseudonym_key_file")
        for key in table:
            if key not in names:
                raise ConfigError(f"unknown key{_suggest(key, names)}", f"{section}.{key}")
        if section == "node" and "name" not in table:
            raise ConfigError(_NAME_MISSING, "node.name")
        sections[section] = cls(**table)
    if "node" not in sections:
        raise ConfigError(_NAME_MISSING, "node.name")
    return NodeConfig(**sections)


def load_config(path: Path | str) -> NodeConfig:
    """Read ``path``; relative paths in it are resolved against the file's directory."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {_MAX_FILE_BYTES} bytes")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        cfg = parse_config(doc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg.resolve_paths(path.absolute().parent)


def _toml_string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
    escapes["\r"] = "\\r"
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form; always valid TOML for finite values
    if isinstance(value, Path):
        return _toml_string(str(value))
    if isinstance(value, str):
        return _toml_string(value)
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


def render_config(cfg: NodeConfig) -> str:
    """TOML text that ``load_config`` reads back as ``cfg``, with help comments."""
    lines = [
        "# crosstrace node configuration.",
        "# Relative paths are resolved against the directory of this file.",
    ]
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        lines += ["", f"# {_SECTION_HELP[f.name]}", f"[{f.name}]"]
        tables = []
        for sf in dataclasses.fields(section):
            value = getattr(section, sf.name)
            if isinstance(value, dict):
                tables.append((sf, value))
                continue
            lines.append(f"# {sf.metadata['help']}")
            lines.append(f"{sf.name} = {_toml_value(value)}")
        # A table header ends the section's plain keys, so tables come last; an empty one
        # is still written, as the place where an operator adds entries.
        for sf, table in tables:
            lines += [f"# {sf.metadata['help']}", f"[{f.name}.{sf.name}]"]
            lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
