"""``crosstrace cluster up|down|status DIR``: a local consortium's nodes as background
processes.

Each member home in DIR gets ``node.pid`` (the running node's process id) and
``node.log`` (its stderr and stdout, appended across runs). ``up`` starts the nodes
that are not running and waits until each one's API answers; ``down`` sends SIGTERM,
waits for a clean stop, and only then (after a deadline, and saying so) SIGKILL.

Processes are started with ``posix_spawn`` in a session of their own, so they outlive
the command and a Ctrl-C in the operator's terminal does not reach them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.client.http import ApiClient, ApiClientError, api_url_of_home
from node.setup.keys import atomic_write

PID_FILE = "node.pid"
LOG_FILE = "node.log"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
_POLL_S = 0.05


class ClusterError(Exception):
    """The cluster cannot be brought up or down as asked; the message says which node."""


@dataclass(frozen=True)
class NodeProcess:
    home: Path

    @property
    def name(self) -> str:
        return self.home.name

    @property
    def pid_file(self) -> Path:
        return self.home / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.home / LOG_FILE

    def pid(self) -> int | None:
        """The pid of this node if it is running, else None (a stale pid file is removed)."""
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise ClusterError(f"{self.pid_file}: not a process id; remove it if no node runs")
        pid = int(text)
        if process_alive(pid):
            return pid
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        return None


def member_homes(directory: Path) -> list[NodeProcess]:
    """The member homes in ``directory`` (each a subdirectory with a config.toml), in the
    order of their names' numbers: node2 before node10."""
    if not directory.is_dir():
        raise ClusterError(f"{directory}: no such directory (make one with crosstrace testnet)")
    homes = [p for p in directory.iterdir() if (p / "config.toml").is_file()]
    if not homes:
        raise ClusterError(
            f"{directory}: holds no member homes (subdirectories with a config.toml); "
            "make a consortium with crosstrace testnet"
        )

    def natural(path: Path) -> list[Any]:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]

    return [NodeProcess(p) for p in sorted(homes, key=natural)]


def process_alive(pid: int) -> bool:
    # A child of this process that exited stays a zombie until reaped: reap it first,
    # or kill(pid, 0) would keep saying it runs.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process holds the pid: not ours, but alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def node_command(home: Path) -> list[str]:
    script = Path(sys.executable).parent / "crosstrace"
    if script.is_file():
        return [str(script), "start", "--home", str(home)]
    return [sys.executable, "-m", "cli", "start", "--home", str(home)]


def spawn(node: NodeProcess, command: Sequence[str] | None = None) -> int:
    """Start the node (or ``command``, e.g. the node under a profiler) in the background."""
    argv = list(command) if command is not None else node_command(node.home)
    log_fd = os.open(node.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)
    atomic_write(node.pid_file, f"{pid}\n".encode(), mode=0o644)
    return pid


def last_log_line(node: NodeProcess) -> str:
    try:
        with node.log_file.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def up(
    directory: Path,
    *,
    timeout_s: float = START_TIMEOUT_S,
    report: Callable[[str], None] = lambda line: None,
) -> list[NodeProcess]:
    nodes = member_homes(directory)
    # Every config is read before anything starts: a mistake stops the command before
    # it leaves half a consortium running.
    try:
        urls = {node: api_url_of_home(node.home) for node in nodes}
    except ApiClientError as exc:
        raise ClusterError(str(exc)) from None
    started: list[tuple[NodeProcess, int]] = []
    for node in nodes:
        pid = node.pid()
        if pid is not None:
            report(f"{node.name}: already running (pid {pid})")
            continue
        pid = spawn(node)
        started.append((node, pid))
        report(f"{node.name}: started (pid {pid}), log {node.log_file}")
    wait_ready(started, urls, timeout_s=timeout_s, report=report)
    return nodes


def wait_ready(
    started: Sequence[tuple[NodeProcess, int]],
    urls: dict[NodeProcess, str],
    *,
    timeout_s: float = START_TIMEOUT_S,
    report: Callable[[str], None] = lambda line: None,
) -> None:
    """Wait until each started node's API answers; a node that exits instead is an error
    quoting the last line of its log (the daemon's one-line reason)."""
    deadline = time.monotonic() + timeout_s
    for node, pid in started:
        url = urls[node]
        with ApiClient(url, timeout_s=2.0) as client:
            while True:
                if not process_alive(pid):
                    with contextlib.suppress(FileNotFoundError):
                        node.pid_file.unlink()
                    raise ClusterError(
                        f"{node.name} exited during start-up; its log ends: {last_log_line(node)}"
                    )
                try:
                    client.status()
                    break
                except ApiClientError:
                    if time.monotonic() > deadline:
                        raise ClusterError(
                            f"{node.name} (pid {pid}) did not answer at {url} within "
                            f"{timeout_s:g} s; see {node.log_file}"
                        ) from None
                    time.sleep(_POLL_S)
        report(f"{node.name}: API ready at {url}")


def down(
    directory: Path,
    *,
    timeout_s: float = STOP_TIMEOUT_S,
    report: Callable[[str], None] = lambda line: None,
) -> None:
    nodes = member_homes(directory)
    stopping: list[tuple[NodeProcess, int]] = []
    for node in nodes:
        pid = node.pid()
        if pid is None:
            report(f"{node.name}: not running")
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        stopping.append((node, pid))
    deadline = time.monotonic() + timeout_s
    for node, pid in stopping:
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            report(
                f"{node.name}: did not stop within {timeout_s:g} s of SIGTERM; killed "
                f"(pid {pid}); see {node.log_file}"
            )
            while process_alive(pid):
                time.sleep(_POLL_S)
        else:
            report(f"{node.name}: stopped (pid {pid})")
        with contextlib.suppress(FileNotFoundError):
            node.pid_file.unlink()


@dataclass(frozen=True)
class NodeState:
    name: str
    pid: int | None
    url: str
    status: dict[str, Any] | None
    problem: str | None


def states(directory: Path) -> list[NodeState]:
    rows = []
    for node in member_homes(directory):
        pid = node.pid()
        try:
            url = api_url_of_home(node.home)
        except ApiClientError as exc:
            rows.append(NodeState(node.name, pid, "", None, str(exc)))
            continue
        status = problem = None
        if pid is None:
            problem = "not running"
        else:
            try:
                with ApiClient(url, timeout_s=2.0) as client:
                    status = client.status()
            except ApiClientError as exc:
                problem = str(exc)
        rows.append(NodeState(node.name, pid, url, status, problem))
    return rows


def state_lines(rows: Sequence[NodeState]) -> list[str]:
    lines = [f"{'node':<8} {'member':<12} {'pid':>7} {'height':>7} {'view':>5} peers  api"]
    for row in rows:
        pid = "-" if row.pid is None else str(row.pid)
        if row.status is None:
            lines.append(f"{row.name:<8} {'':<12} {pid:>7} {'-':>7} {'-':>5} -      {row.problem}")
            continue
        s = row.status
        peers = s.get("peers", [])
        connected = sum(1 for p in peers if p.get("connected"))
        lines.append(
            f"{row.name:<8} {s['member']['name']:<12} {pid:>7} {s['height']:>7} "
            f"{s['view']!s:>5} {connected}/{len(peers):<4} {row.url}"
        )
    return lines
