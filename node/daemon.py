"""``crosstrace start``: one member's node as a long-running process.

Loads and cross-checks the config, genesis and key (each mistake is one clear line),
opens the ledger, runs the TCP transport and the runtime in one nursery, logs to stderr
(JSON lines by default), and stops cleanly on SIGTERM or SIGINT: cancellation never
interrupts a ledger write (those run in worker threads that trio does not abandon), so
what was committed stays committed and the store is closed properly.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from consensus.codec import MAX_MESSAGE_BYTES
from net.descriptors import raise_open_file_limit
from net.tcp import TcpTransport
from node.api.app import build_app
from node.api.guard import GuardPolicy, allowed_names
from node.api.server import serve_api
from node.details.service import DAY_MS, PrivateDetailsService
from node.details.store import PrivateStore
from node.disclosure.service import DisclosureService
from node.disclosure.store import DisclosureStore
from node.host.assemble import build_runtime
from node.host.mempool import Mempool
from node.host.runtime import NodeRuntime
from node.ledger.store import LedgerStore, StoreError
from node.pseudonyms.service import PseudonymService
from node.pseudonyms.store import PseudonymStore
from node.psi.service import PsiService
from node.setup.config import ConfigError, NodeConfig, load_config
from node.setup.genesis import Genesis, GenesisError, load_genesis, split_host_port
from node.setup.keys import KeyFileError, NodeKey, load_key
from node.setup.shares import PseudonymShare, PseudonymShareError, check_share, load_share
from node.setup.users import UserStore
from node.tracing.service import TracingService

log = logging.getLogger("crosstrace.daemon")

MIB = 1024 * 1024


class StartupError(Exception):
    """The node cannot start as configured; the message says which file and why."""


@dataclass(frozen=True)
class NodeFiles:
    config_path: Path
    config: NodeConfig
    genesis: Genesis
    key: NodeKey
    index: int
    share: PseudonymShare | None = None


def load_node_files(config_path: Path, passphrase: str | None) -> NodeFiles:
    try:
        config = load_config(config_path)
    except (ConfigError, OSError) as exc:
        raise StartupError(str(exc)) from None
    try:
        genesis = load_genesis(config.node.genesis_file)
    except (GenesisError, OSError) as exc:
        raise StartupError(f"{config.node.genesis_file}: {exc}") from None
    member = genesis.member_by_name(config.node.name)
    if member is None:
        raise StartupError(
            f"{config_path}: node.name {config.node.name!r} is not a member of chain "
            f"{genesis.chain_id!r}"
        )
    for name in config.p2p.peer_addresses:
        if genesis.member_by_name(name) is None:
            raise StartupError(
                f"{config_path}: p2p.peer_addresses.{name}: not a member of chain "
                f"{genesis.chain_id!r}"
            )
        if name == member.name:
            raise StartupError(
                f"{config_path}: p2p.peer_addresses.{name}: this node itself; "
                "it listens on p2p.listen"
            )
    try:
        key = load_key(config.node.key_file, passphrase)
    except KeyFileError as exc:
        raise StartupError(str(exc)) from None
    if key.public_key != member.public_key:
        raise StartupError(
            f"{config.node.key_file}: this key is not the key the genesis lists for "
            f"member {member.name!r}"
        )
    index = genesis.member_index(key.public_key)
    assert index is not None
    share = load_member_share(config.tracing.pseudonym_share_file, passphrase, genesis, index)
    return NodeFiles(config_path, config, genesis, key, index, share)


def load_member_share(
    path: Path, passphrase: str | None, genesis: Genesis, index: int
) -> PseudonymShare | None:
    """This member's share of the pseudonym key, checked against the genesis. A missing
    file is not fatal (cases, reports of known pseudonyms and the audit trail work;
    pseudonymising is refused with the reason); a wrong one stops the start."""
    if not path.exists():
        log.warning(
            "no pseudonym key share at %s: identifiers cannot be pseudonymised until the "
            "key ceremony's share is installed and the node restarted",
            path,
        )
        return None
    try:
        share = load_share(path, passphrase)
        check_share(share, genesis, str(path))
    except PseudonymShareError as exc:
        raise StartupError(str(exc)) from None
    if share.index != index + 1:
        raise StartupError(
            f"{path}: this is member {share.index}'s share, not member {index + 1}'s"
        )
    return share


def dial_addresses(files: NodeFiles) -> list[tuple[str, int]]:
    """Where each member is reached: its genesis address unless ``p2p.peer_addresses``
    overrides it (checked against the genesis by ``load_node_files``)."""
    overrides = files.config.p2p.peer_addresses
    addresses = []
    for index, member in enumerate(files.genesis.members):
        address = overrides.get(member.name, member.address)
        if member.name in overrides and index < files.index:
            log.warning(
                "p2p.peer_addresses.%s is not used: member %s dials this node, not the reverse",
                member.name,
                member.name,
            )
        addresses.append(split_host_port(address))
    return addresses


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


async def serve(
    files: NodeFiles, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    config, genesis = files.config, files.genesis
    # Sockets, LMDB and logs share one descriptor table: take all the kernel allows.
    log.info("%s", raise_open_file_limit())
    try:
        store = LedgerStore.open(
            config.node.data_dir,
            chain_id=genesis.chain_id,
            genesis_hash=genesis.hash(),
            map_size=config.storage.initial_map_size_mib * MIB,
            sync=config.storage.sync,
        )
    except StoreError as exc:
        raise StartupError(str(exc)) from None
    try:
        transport = TcpTransport(
            files.index,
            files.key.seed,
            genesis.membership(),
            dial_addresses(files),
            listen=split_host_port(config.p2p.listen, allow_port_zero=True),
            max_frame_bytes=MAX_MESSAGE_BYTES,
            handshake_timeout_s=config.p2p.handshake_timeout_s,
            max_inbound=max(config.p2p.max_inbound, genesis.membership().n),
            max_unauthenticated=config.p2p.max_unauthenticated,
            queue_frames=config.p2p.send_queue,
        )
        mempool = Mempool(
            config.mempool.max_txs,
            config.mempool.max_bytes,
            max_share=config.mempool.max_per_member,
        )
        runtime = build_runtime(files.index, genesis, files.key.signer(), store, transport, mempool)
        # Private details live in an environment of their own, never in the ledger's.
        private_store = PrivateStore.open(
            config.node.data_dir / "private", chain_id=genesis.chain_id, sync=config.storage.sync
        )
    except StoreError as exc:
        store.close()
        raise StartupError(str(exc)) from None
    except BaseException:
        store.close()
        raise
    try:
        details = PrivateDetailsService(
            runtime,
            store,
            private_store,
            genesis,
            retention_ms=config.tracing.retention_days * DAY_MS,
        )
        try:
            await _run_node(files, store, transport, runtime, details, task_status)
        except* StartupError as group:
            # Raised inside the nursery, so it arrives wrapped; the CLI wants the one line.
            raise group.exceptions[0] from None
        log.info("stopped cleanly at height %d", store.tip()[0])
    finally:
        private_store.close()
        store.close()


async def _run_node(
    files: NodeFiles,
    store: LedgerStore,
    transport: TcpTransport,
    runtime: NodeRuntime,
    details: PrivateDetailsService,
    task_status: trio.TaskStatus[int],
) -> None:
    config, genesis = files.config, files.genesis
    # Counts, evaluation log and own results live in an environment of their own too.
    try:
        pseudonym_store = PseudonymStore.open(
            config.node.data_dir / "pseudonyms", chain_id=genesis.chain_id, sync=config.storage.sync
        )
    except StoreError as exc:
        raise StartupError(str(exc)) from None
    try:
        # Before the runtime runs: the case registries are loaded, then kept current.
        pseudonyms = PseudonymService(
            runtime,
            store,
            genesis,
            pseudonym_store,
            files.share,
            retention_ms=config.tracing.retention_days * DAY_MS,
        )
        tracing = TracingService.attach(runtime, store, genesis, pseudonyms)
        psi = PsiService.from_config(runtime, store, genesis, config.psi)  # hooks the runtime too
        # Kept identifiers live in an environment of their own too, never in the ledger's.
        try:
            disclosure_store = DisclosureStore.open(
                config.node.data_dir / "disclosure",
                chain_id=genesis.chain_id,
                sync=config.storage.sync,
            )
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        try:
            disclosure = DisclosureService(
                runtime,
                store,
                genesis,
                disclosure_store,
                pseudonyms=pseudonyms,
                policy=config.disclosure.policy,
                retention_ms=config.tracing.retention_days * DAY_MS,
            )
            await _serve_node(
                files,
                store,
                transport,
                runtime,
                details,
                tracing,
                psi,
                disclosure,
                pseudonyms,
                task_status,
            )
        finally:
            disclosure_store.close()
    finally:
        pseudonym_store.close()


async def _serve_node(
    files: NodeFiles,
    store: LedgerStore,
    transport: TcpTransport,
    runtime: NodeRuntime,
    details: PrivateDetailsService,
    tracing: TracingService,
    psi: PsiService,
    disclosure: DisclosureService,
    pseudonyms: PseudonymService,
    task_status: trio.TaskStatus[int],
) -> None:
    config, genesis = files.config, files.genesis
    async with trio.open_nursery() as nursery:
        port = await nursery.start(transport.run)
        await nursery.start(runtime.run)
        await nursery.start(pseudonyms.run)
        await nursery.start(details.run)
        await nursery.start(psi.run)
        await nursery.start(disclosure.run)
        api_host, api_port = split_host_port(config.api.listen, allow_port_zero=True)
        try:
            app = build_app(
                runtime,
                store,
                genesis,
                details=details,
                tracing=tracing,
                psi=psi,
                disclosure=disclosure,
                pseudonyms=pseudonyms,
                guard=GuardPolicy(
                    allowed_names(api_host), body_deadline_s=config.api.body_timeout_s
                ),
                body_budget_bytes=config.api.body_budget_mib * MIB,
                users=UserStore(files.config_path.parent),
            )
            api_port = await nursery.start(
                partial(serve_api, max_connections=config.api.max_connections),
                app,
                api_host,
                api_port,
            )
        except OSError as exc:
            raise StartupError(str(exc)) from None
        log.info(
            "member %s (%d of %d) of chain %s started: height %d, p2p port %d, API http://%s:%d",
            genesis.members[files.index].name,
            files.index,
            genesis.membership().n,
            genesis.chain_id,
            runtime.height,
            port,
            api_host,
            api_port,
        )
        task_status.started(port)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("%s received: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
