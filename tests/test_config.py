from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.setup.config import (
    LOG_FORMATS,
    LOG_LEVELS,
    MIB,
    ApiSection,
    ConfigError,
    LogSection,
    MempoolSection,
    NodeConfig,
    NodeSection,
    P2PSection,
    StorageSection,
    TracingSection,
    default_config,
    load_config,
    parse_config,
    render_config,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    prefix = f"{path}: "
    assert message.startswith(prefix)
    return message[len(prefix) :]


# ---- good paths ------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = default_config("bank-a")
    assert cfg.node == NodeSection(
        name="bank-a",
        key_file=Path("node_key.json"),
        genesis_file=Path("genesis.json"),
        data_dir=Path("data"),
    )
    assert cfg.p2p == P2PSection("127.0.0.1:7000", 64, 16, 5.0, 1024)
    assert cfg.p2p.peer_addresses == {}
    assert cfg.api == ApiSection("127.0.0.1:8000")
    assert cfg.mempool == MempoolSection(50_000, 64 * MIB, 0.25)
    assert cfg.storage == StorageSection(64, True, False)
    assert cfg.tracing == TracingSection(Path("pseudonym.share"), 365)
    assert cfg.log == LogSection("info", "json")


def test_the_old_shared_pseudonym_key_is_refused_with_what_replaced_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nname = "x"\n[tracing]\npseudonym_key_file = "pseudonym.key"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: tracing.pseudonym_key_file: the shared pseudonym key")
    assert "shared pseudonym key is gone" in message
    assert "pseudonym_share_file" in message and "crosstrace dkg share" in message


def test_the_rendered_config_names_the_share_file() -> None:
    text = render_config(default_config("x"))
    assert 'pseudonym_share_file = "pseudonym.share"' in text
    assert "key ceremony" in text and "pseudonym_key_file" not in text


def test_minimal_file_gets_defaults_and_resolved_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[node]\nname = "police-1"\n'))
    assert cfg == default_config("police-1").resolve_paths(tmp_path)
    assert cfg.node.key_file == tmp_path / "node_key.json"
    assert cfg.node.data_dir == tmp_path / "data"
    assert cfg.tracing.pseudonym_share_file == tmp_path / "pseudonym.share"
    assert cfg.node.key_file.is_absolute()


def test_relative_config_path_resolves_to_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[node]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config("config.toml").node.genesis_file == tmp_path / "genesis.json"


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/op")
    text = '[node]\nname = "x"\nkey_file = "/etc/ct/key.json"\ndata_dir = "~/ct-data"\n'
    cfg = load_config(write(tmp_path, text))
    assert cfg.node.key_file == Path("/etc/ct/key.json")
    assert cfg.node.data_dir == Path("/home/op/ct-data")


def test_render_default_round_trip(tmp_path: Path) -> None:
    cfg = default_config("telecom-3")
    text = render_config(cfg)
    assert parse_config(tomllib.loads(text)) == cfg
    assert load_config(write(tmp_path, text)) == cfg.resolve_paths(tmp_path)
    assert "# " in text  # every key is documented in the file it writes


def test_int_accepted_where_a_number_is_expected(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[node]\nname = "x"\n[p2p]\nhandshake_timeout_s = 5\n'))
    assert cfg.p2p.handshake_timeout_s == 5.0
    assert type(cfg.p2p.handshake_timeout_s) is float


def test_unsafe_no_sync_allows_sync_off(tmp_path: Path) -> None:
    text = '[node]\nname = "x"\n[storage]\nsync = false\nunsafe_no_sync = true\n'
    assert load_config(write(tmp_path, text)).storage.sync is False


def test_same_port_on_different_hosts_is_fine(tmp_path: Path) -> None:
    text = '[node]\nname = "x"\n[p2p]\nlisten = "10.0.0.1:7000"\n[api]\nlisten = "127.0.0.1:7000"\n'
    assert load_config(write(tmp_path, text)).api.listen == "127.0.0.1:7000"


def test_listen_port_zero_allowed(tmp_path: Path) -> None:
    text = '[node]\nname = "x"\n[p2p]\nlisten = "127.0.0.1:0"\n[api]\nlisten = "127.0.0.1:0"\n'
    cfg = load_config(write(tmp_path, text))
    assert cfg.p2p.listen == cfg.api.listen == "127.0.0.1:0"


def test_paths_with_awkward_characters_render_safely(tmp_path: Path) -> None:
    odd = Path('dir "quoted"\\back\tslash\n\x7f\u00e9')
    cfg = dataclasses.replace(
        default_config("x"), node=NodeSection(name="x", key_file=odd, data_dir=Path("/abs"))
    )
    assert parse_config(tomllib.loads(render_config(cfg))) == cfg


def test_peer_addresses_table(tmp_path: Path) -> None:
    text = (
        NODE + '[p2p]\nlisten = "0.0.0.0:7000"\n[p2p.peer_addresses]\n'
        '"telecom-2" = "10.8.0.2:7000"\n"utility.3" = "[fd00::3]:26656"\n'
        'bank-1 = "partner.example.org:443"\n'
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.p2p.peer_addresses == {
        "telecom-2": "10.8.0.2:7000",
        "utility.3": "[fd00::3]:26656",
        "bank-1": "partner.example.org:443",
    }
    assert cfg.p2p.listen == "0.0.0.0:7000"
    rendered = render_config(cfg)
    assert '[p2p.peer_addresses]\n"telecom-2" = "10.8.0.2:7000"\n' in rendered
    assert load_config(write(tmp_path, rendered)) == cfg


def test_peer_addresses_inline_table_and_copy(tmp_path: Path) -> None:
    text = NODE + '[p2p]\npeer_addresses = { "bank-1" = "127.0.0.1:9001" }\n'
    assert load_config(write(tmp_path, text)).p2p.peer_addresses == {"bank-1": "127.0.0.1:9001"}
    mine = {"bank-1": "127.0.0.1:9001"}
    section = P2PSection(peer_addresses=mine)
    mine["bank-1"] = "nonsense"  # the section checked a copy; later edits cannot reach it
    assert section.peer_addresses == {"bank-1": "127.0.0.1:9001"}


def test_default_config_renders_an_empty_peer_addresses_table() -> None:
    text = render_config(default_config("x"))
    assert "\n[p2p.peer_addresses]\n\n# " in text  # empty, and the next section follows
    assert tomllib.loads(text)["p2p"]["peer_addresses"] == {}


def test_peer_addresses_checked_against_the_genesis(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from node.daemon import StartupError, dial_addresses, load_node_files
    from node.setup.provision import make_testnet

    _, homes = make_testnet(tmp_path / "net", 4, p2p_base_port=7100, api_base_port=8100)
    path = homes[1].path / "config.toml"
    base = path.read_text()

    def start_with(entries: str) -> str:
        path.write_text(base.replace("[p2p.peer_addresses]\n", f"[p2p.peer_addresses]\n{entries}"))
        with pytest.raises(StartupError) as info:
            load_node_files(path, None)
        return str(info.value)

    names = [h.descriptor.name for h in homes]
    assert start_with('nobody = "10.0.0.1:7000"\n') == (
        f"{path}: p2p.peer_addresses.nobody: not a member of chain 'local'"
    )
    assert start_with(f'"{names[1]}" = "10.0.0.1:7000"\n') == (
        f"{path}: p2p.peer_addresses.{names[1]}: this node itself; it listens on p2p.listen"
    )
    path.write_text(
        base.replace(
            "[p2p.peer_addresses]\n",
            f'[p2p.peer_addresses]\n"{names[0]}" = "10.0.0.1:1"\n"{names[3]}" = "10.0.0.3:3"\n',
        )
    )
    files = load_node_files(path, None)
    assert dial_addresses(files) == [
        ("10.0.0.1", 1),  # kept as written, though member 0 dials this node
        ("127.0.0.1", 7101),
        ("127.0.0.1", 7102),
        ("10.0.0.3", 3),
    ]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"p2p.peer_addresses.{names[0]} is not used: member {names[0]} dials this node, "
        "not the reverse"
    ]


def test_unknown_peer_at_start_up_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from node.setup.provision import make_testnet

    _, homes = make_testnet(tmp_path / "net", 4, p2p_base_port=7100, api_base_port=8100)
    path = homes[2].path / "config.toml"
    path.write_text(
        path.read_text().replace(
            "[p2p.peer_addresses]\n", '[p2p.peer_addresses]\n"bank-9" = "10.0.0.9:7000"\n'
        )
    )
    exe = str(Path(sys.executable).parent / "crosstrace")
    proc = subprocess.run(
        [exe, "start", "--home", str(homes[2].path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: {path}: p2p.peer_addresses.bank-9: not a member of chain 'local'"
    ]


# ---- property: render and load are inverse ---------------------------------------------

paths = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s).map(Path)
listen = st.builds(
    "{}:{}".format,
    st.sampled_from(["127.0.0.1", "0.0.0.0", "[::1]", "node.example.org"]),
    st.integers(0, 65535),
)


@st.composite
def configs(draw: st.DrawFn) -> NodeConfig:
    inbound = draw(st.integers(1, 10_000))
    p2p_listen = draw(listen)
    p2p_port = p2p_listen.rsplit(":", 1)[1]
    # Same port could clash with a wildcard host; that rejection has its own test.
    api_listen = draw(listen.filter(lambda a: a.rsplit(":", 1)[1] != p2p_port))
    sync = draw(st.booleans())
    return NodeConfig(
        node=NodeSection(
            name=draw(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)),
            key_file=draw(paths),
            genesis_file=draw(paths),
            data_dir=draw(paths),
        ),
        p2p=P2PSection(
            listen=p2p_listen,
            max_inbound=inbound,
            max_unauthenticated=draw(st.integers(1, inbound)),
            handshake_timeout_s=draw(st.floats(0, 300, exclude_min=True)),
            send_queue=draw(st.integers(1, 1 << 20)),
            peer_addresses=draw(
                st.dictionaries(
                    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True),
                    listen.filter(lambda a: not a.endswith(":0")),
                    max_size=3,
                )
            ),
        ),
        api=ApiSection(listen=api_listen),
        mempool=MempoolSection(
            max_txs=draw(st.integers(1, 10_000_000)),
            max_bytes=draw(st.integers(1024, 1 << 40)),
            max_per_member=draw(st.floats(0, 1, exclude_min=True)),
        ),
        storage=StorageSection(
            initial_map_size_mib=draw(st.integers(1, 1 << 20)),
            sync=sync,
            unsafe_no_sync=draw(st.booleans()) or not sync,
        ),
        tracing=TracingSection(
            pseudonym_share_file=draw(paths), retention_days=draw(st.integers(1, 36_500))
        ),
        log=LogSection(
            level=draw(st.sampled_from(LOG_LEVELS)), format=draw(st.sampled_from(LOG_FORMATS))
        ),
    )


@settings(max_examples=50, deadline=None)
@given(configs())
def test_render_parse_round_trip_property(cfg: NodeConfig) -> None:
    assert parse_config(tomllib.loads(render_config(cfg))) == cfg


def test_render_load_round_trip_on_disk(tmp_path: Path) -> None:
    cfg = NodeConfig(
        node=NodeSection(name="bank-a", key_file=Path("keys/k.json"), data_dir=Path("/srv/ct")),
        p2p=P2PSection(listen="[::]:26656", handshake_timeout_s=0.5),
        storage=StorageSection(sync=False, unsafe_no_sync=True),
        log=LogSection(level="debug", format="text"),
    )
    loaded = load_config(write(tmp_path, render_config(cfg)))
    assert loaded == cfg.resolve_paths(tmp_path)
    assert loaded.node.key_file == tmp_path / "keys" / "k.json"
    assert loaded.node.data_dir == Path("/srv/ct")
    # A loaded config (absolute paths) renders and loads back unchanged.
    assert load_config(write(tmp_path, render_config(loaded))) == loaded


# ---- every error, with its message -----------------------------------------------------

NODE = '[node]\nname = "bank-a"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[p2p]\nlisten = "7000"\n', "p2p.listen: expected host:port, got '7000'"),
        (
            '[p2p]\nlisten = "h:70000"\n',
            "p2p.listen: port must be 0 to 65535, got 70000 in 'h:70000'",
        ),
        ("[p2p]\nlisten = 7000\n", "p2p.listen: expected a string, got 7000"),
        ('[api]\nlisten = "localhost"\n', "api.listen: expected host:port, got 'localhost'"),
        (
            '[api]\nlisten = "127.0.0.1:7000"\n',
            "api.listen: conflicts with p2p.listen (127.0.0.1:7000)",
        ),
        (
            '[p2p]\nlisten = "0.0.0.0:9000"\n[api]\nlisten = "127.0.0.1:9000"\n',
            "api.listen: conflicts with p2p.listen (0.0.0.0:9000)",
        ),
        ("[netwrk]\n", "unknown section [netwrk]"),
        ("[p2pp]\nlisten = 'a:1'\n", "unknown section [p2pp] (did you mean 'p2p'?)"),
        ('[p2p]\nlistn = "a:1"\n', "p2p.listn: unknown key (did you mean 'listen'?)"),
        (
            "[storage]\nunsafe_nosync = true\n",
            "storage.unsafe_nosync: unknown key (did you mean 'unsafe_no_sync'?)",
        ),
        ("[p2p.extra]\nx = 1\n", "p2p.extra: unknown key"),
        ('[p2p]\nmax_inbound = "64"\n', "p2p.max_inbound: expected an integer, got '64'"),
        ("[p2p]\nmax_inbound = 64.0\n", "p2p.max_inbound: expected an integer, got 64.0"),
        ("[p2p]\nmax_inbound = true\n", "p2p.max_inbound: expected an integer, got True"),
        ("[p2p]\nmax_inbound = 0\n", "p2p.max_inbound: must be between 1 and 10000, got 0"),
        (
            "[p2p]\nmax_unauthenticated = 100\n",
            "p2p.max_unauthenticated: must not exceed p2p.max_inbound (64), got 100",
        ),
        (
            "[p2p]\nhandshake_timeout_s = 0\n",
            "p2p.handshake_timeout_s: must be greater than 0 and at most 300, got 0.0",
        ),
        (
            "[p2p]\nhandshake_timeout_s = inf\n",
            "p2p.handshake_timeout_s: must be greater than 0 and at most 300, got inf",
        ),
        (
            "[p2p]\nhandshake_timeout_s = nan\n",
            "p2p.handshake_timeout_s: must be greater than 0 and at most 300, got nan",
        ),
        (
            '[p2p]\nhandshake_timeout_s = "5"\n',
            "p2p.handshake_timeout_s: expected a number, got '5'",
        ),
        ("[p2p]\nsend_queue = -1\n", "p2p.send_queue: must be between 1 and 1048576, got -1"),
        ("[mempool]\nmax_txs = 0\n", "mempool.max_txs: must be between 1 and 10000000, got 0"),
        (
            "[mempool]\nmax_bytes = 10\n",
            "mempool.max_bytes: must be between 1024 and 1099511627776, got 10",
        ),
        (
            "[mempool]\nmax_per_member = 1.5\n",
            "mempool.max_per_member: must be greater than 0 and at most 1, got 1.5",
        ),
        (
            "[mempool]\nmax_per_member = 0.0\n",
            "mempool.max_per_member: must be greater than 0 and at most 1, got 0.0",
        ),
        (
            "[storage]\ninitial_map_size_mib = 0\n",
            "storage.initial_map_size_mib: must be between 1 and 1048576, got 0",
        ),
        ("[storage]\nsync = 1\n", "storage.sync: expected true or false, got 1"),
        (
            '[storage]\nunsafe_no_sync = "yes"\n',
            "storage.unsafe_no_sync: expected true or false, got 'yes'",
        ),
        (
            "[storage]\nsync = false\n",
            "storage.sync: false can lose committed blocks in a crash and let this node sign "
            "votes that conflict with ones it already sent; set storage.unsafe_no_sync = true "
            "to allow it",
        ),
        (
            "[tracing]\nretention_days = 0\n",
            "tracing.retention_days: must be between 1 and 36500, got 0",
        ),
        (
            "[tracing]\npseudonym_share_file = 5\n",
            "tracing.pseudonym_share_file: expected a path, got 5",
        ),
        (
            '[tracing]\npseudonym_share_file = ""\n',
            "tracing.pseudonym_share_file: expected a path, got an empty string",
        ),
        (
            '[log]\nlevel = "verbose"\n',
            "log.level: expected one of debug, info, warning, error, got 'verbose'",
        ),
        ('[log]\nformat = "xml"\n', "log.format: expected one of json, text, got 'xml'"),
        (
            '[p2p.peer_addresses]\nbank-1 = "10.0.0.1"\n',
            "p2p.peer_addresses.bank-1: expected host:port, got '10.0.0.1'",
        ),
        (
            '[p2p.peer_addresses]\nbank-1 = "10.0.0.1:0"\n',
            "p2p.peer_addresses.bank-1: port must be 1 to 65535, got 0 in '10.0.0.1:0'",
        ),
        (
            "[p2p.peer_addresses]\nbank-1 = 7000\n",
            "p2p.peer_addresses.bank-1: expected host:port, got int",
        ),
        (
            '[p2p.peer_addresses]\n"Bank 1" = "10.0.0.1:7000"\n',
            "p2p.peer_addresses.Bank 1: expected a member name (1 to 64 characters of "
            "[a-z0-9._-] starting with a letter or digit)",
        ),
        (
            '[p2p.peer_addresses.bank-1]\nhost = "10.0.0.1"\n',
            "p2p.peer_addresses.bank-1: expected host:port, got dict",
        ),
        (
            '[p2p]\npeer_addresses = "10.0.0.1:7000"\n',
            'p2p.peer_addresses: expected a table of member name = "host:port", '
            "got '10.0.0.1:7000'",
        ),
        ("[log]\nlevel = 3\n", "log.level: expected a string, got 3"),
    ],
)
def test_errors(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, NODE + text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "node.name: missing (this node's member name in the genesis file)"),
        (
            '[node]\ndata_dir = "d"\n',
            "node.name: missing (this node's member name in the genesis file)",
        ),
        (
            '[node]\nname = "Bank A"\n',
            "node.name: expected 1 to 64 characters of [a-z0-9._-] starting with a letter or "
            "digit, got 'Bank A'",
        ),
        ("[node]\nname = 1\n", "node.name: expected a string, got 1"),
        (
            '[node]\nname = "x"\nkey_file = ""\n',
            "node.key_file: expected a path, got an empty string",
        ),
        (
            '[node]\nname = "x"\ngenesis = "g.json"\n',
            "node.genesis: unknown key (did you mean 'genesis_file'?)",
        ),
        ('name = "x"\n', "unknown top-level key 'name'; keys belong in a section"),
        ('p2p = "x"\n' + NODE, "p2p: expected a table [p2p], got 'x'"),
    ],
)
def test_node_section_errors(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, text) == message


def test_toml_syntax_error_has_line_number(tmp_path: Path) -> None:
    message = load_error(tmp_path, NODE + "[p2p]\nlisten = \n")
    assert message.startswith("invalid TOML: ")
    assert "line 4" in message


def test_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, NODE + 'name = "y"\n')
    assert message.startswith("invalid TOML: ") and "line 3" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[node]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match=r"config\.toml: not UTF-8 text"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read: No such file"):
        load_config(tmp_path / "nope.toml")


def test_oversized_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="larger than"):
        load_config(write(tmp_path, NODE + "#" * (1024 * 1024)))


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        P2PSection(max_inbound=0)
    assert info.value.key_path == "p2p.max_inbound"
    assert info.value.problem == "must be between 1 and 10000, got 0"
    with pytest.raises(ConfigError, match=r"^storage\.sync: false can lose"):
        StorageSection(sync=False)


def test_error_attributes_on_parse() -> None:
    doc: dict[str, Any] = {"node": {"name": "x"}, "log": {"format": "xml"}}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.key_path == "log.format"
