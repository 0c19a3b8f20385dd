"""Member 3's stand-in and the anonymous attackers of ``test_e2e_hostile.py``.

``Member3`` listens where the genesis says member 3 does, answers the honest members'
calls with Noise XX under member 3's key, and hands each authenticated session out as a
``Link`` to abuse. The raw-socket helpers (``dial``, ``send_quietly``, ``reset``,
``lifetime``, ``Frames``, ``start_handshake``, ``Watch``) play the anonymous attackers,
and the payload builders at the end (``garbage_openings``, ``churn``, ``forged_votes``,
``equivocations``, ``signed_nonsense``) make what they send. Blocking sockets in threads
throughout: the tests are plain functions.
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from consensus.codec import MAX_MESSAGE_BYTES
from consensus.crypto import Signer
from consensus.messages import Checkpoint, Commit, Prepare, Status, sign
from net import framing
from net.framing import MAX_NOISE_MESSAGE, FrameDecoder, FramingError, Reassembler
from net.noise import NoiseError
from net.secure_session import SecureSession, x25519_public_from_ed25519
from net.tcp_session import prologue
from net.wire import Frame, decode_frame, encode_frame
from node.setup.genesis import Genesis

LOCAL = "127.0.0.1"
# Short enough that waiting for it is cheap, long enough that an honest handshake on a
# loaded two-core machine never gets near it.
HANDSHAKE_TIMEOUT_S = 2.0
FOUR_GIB = b"\xff\xff\xff\xff"  # the largest length a 4-byte prefix can announce
MIB = 1 << 20


# ------------------------------------------------------------------ raw sockets


def dial(port: int) -> socket.socket:
    return socket.create_connection((LOCAL, port), timeout=5.0)


def local_port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send what the node may refuse halfway: a reset is the expected answer."""
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        sock.sendall(data)


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN, as a crashed or hostile client would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def lifetime(sock: socket.socket, opened: float, timeout: float) -> float:
    """Seconds from ``opened`` until the node closed ``sock`` (FIN or RST); what it
    sends before that (a handshake reply) is read and dropped."""
    deadline = opened + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the node kept connection {local_port(sock)} open {timeout} s")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - opened
        if not data:
            return time.monotonic() - opened


class Frames:
    """Whole length-prefixed frames from a blocking socket (``net.framing``'s decoder)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._decoder = FrameDecoder(MAX_NOISE_MESSAGE)
        self._pending: deque[bytes] = deque()

    def next(self) -> bytes | None:
        while not self._pending:
            data = self.sock.recv(256 * 1024)
            if not data:
                return None
            self._pending.extend(self._decoder.feed(data))
        return self._pending.popleft()

    def expect(self) -> bytes:
        frame = self.next()
        if frame is None:
            raise ConnectionError("closed by the node")
        return frame


def noise_frame(message: bytes) -> bytes:
    return framing.encode_frame(message, MAX_NOISE_MESSAGE)


def start_handshake(sock: socket.socket, seed: bytes, chain_id: str) -> SecureSession:
    """Noise XX as the initiator up to and including the node's message 2."""
    session = SecureSession.initiator(seed, prologue(chain_id))
    sock.sendall(noise_frame(session.write_handshake()))
    session.read_handshake(Frames(sock).expect())
    return session


class Watch(threading.Thread):
    """Notes when the node closes each socket handed to ``add``, while the test does other
    things; the time is taken as the close is seen, not when the test gets round to it."""

    def __init__(self) -> None:
        super().__init__(name="watch", daemon=True)
        self.opened: dict[socket.socket, float] = {}
        self.lifetimes: dict[socket.socket, float] = {}
        self._new: deque[socket.socket] = deque()
        self._timeout: float | None = None
        self._aborted = threading.Event()
        self.start()

    def add(self, sock: socket.socket, opened: float) -> None:
        """Hand ``sock`` over; the test must not use it any more."""
        self.opened[sock] = opened
        self._new.append(sock)

    def finish(self, timeout: float) -> None:
        """Wait, at most ``timeout`` more seconds, until every socket is closed."""
        self._timeout = timeout
        self.join()

    def abort(self) -> None:
        self._aborted.set()
        self.join()

    def run(self) -> None:
        deadline: float | None = None
        with selectors.DefaultSelector() as selector:
            while not self._aborted.is_set():
                while self._new:
                    sock = self._new.popleft()
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ)
                if self._timeout is not None and not self._new:
                    if len(self.lifetimes) == len(self.opened):
                        return
                    deadline = deadline or time.monotonic() + self._timeout
                    if time.monotonic() > deadline:
                        return
                for key, _ in selector.select(0.01):
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    try:
                        if conn.recv(65536):
                            continue  # a handshake reply: not closed yet
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass  # reset: closed as well
                    self.lifetimes[conn] = time.monotonic() - self.opened[conn]
                    selector.unregister(conn)


# ------------------------------------------------------------------ member 3, played by the test


class Link:
    """One authenticated session with an honest node, as member 3."""

    def __init__(self, member: int, sock: socket.socket, session: SecureSession) -> None:
        self.member = member
        self.sock = sock
        self.session = session
        self._send_lock = threading.Lock()  # encryption order must be wire order

    def send_frames(self, frames: Iterable[Frame]) -> int:
        """Send ``frames`` exactly as the transport would; returns how many."""
        return self.send_messages(encode_frame(frame) for frame in frames)

    def send_messages(self, messages: Iterable[bytes]) -> int:
        count = 0
        with self._send_lock:
            out = bytearray()
            for message in messages:
                for piece in framing.chunk(message, max_message=MAX_MESSAGE_BYTES):
                    out += noise_frame(self.session.encrypt(piece))
                count += 1
            self.sock.sendall(out)
        return count

    def send_piece(self, piece: bytes) -> None:
        """One Noise transport message holding exactly ``piece``, layout or not."""
        with self._send_lock:
            self.sock.sendall(noise_frame(self.session.encrypt(piece)))

    def send_raw(self, data: bytes) -> None:
        with self._send_lock:
            send_quietly(self.sock, data)

    def shut(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class Member3:
    """Member 3, played by the test: accepts the honest members' calls on member 3's
    address and completes Noise XX with member 3's key, so everything it sends is
    authenticated as member 3's. Blocking sockets in threads, because the tests are plain
    functions: a trio loop could not outlive one test."""

    def __init__(self, seed: bytes, genesis: Genesis, port: int) -> None:
        self.seed = seed
        self.signer = Signer(seed)
        self.chain_id = genesis.chain_id
        self._members = {
            x25519_public_from_ed25519(m.public_key): i for i, m in enumerate(genesis.members)
        }
        self._listener = socket.create_server((LOCAL, port))
        self._listener.settimeout(0.1)  # so the accept loop notices stop()
        self._state = threading.Condition()
        self._sockets: set[socket.socket] = set()  # every accepted one, to cut at stop()
        self._links: dict[int, Link] = {}
        self.sessions: Counter[int] = Counter()
        self.received: Counter[tuple[int, str]] = Counter()
        self.errors: list[str] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start_thread(self._accept_loop, "member3-accept")

    def _start_thread(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                self.errors.append(f"accept: {exc}")
                return
            self._start_thread(self._serve, "member3-link", sock)

    def _serve(self, sock: socket.socket) -> None:
        with self._state:
            if self._stopping.is_set():
                sock.close()
                return
            self._sockets.add(sock)
        try:
            with sock:
                self._session(sock)
        finally:
            with self._state:
                self._sockets.discard(sock)

    def _session(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT_S * 2)
            frames = Frames(sock)
            session = SecureSession.responder(self.seed, prologue(self.chain_id))
            session.read_handshake(frames.expect())
            sock.sendall(noise_frame(session.write_handshake()))
            session.read_handshake(frames.expect())
            member = self._members.get(session.remote_static or b"")
            if member is None:
                raise ConnectionError("a caller with no member's key")
            sock.settimeout(None)
        except (OSError, NoiseError, FramingError) as exc:
            if not self._stopping.is_set():
                self.errors.append(f"handshake: {exc!r}")
            return
        link = Link(member, sock, session)
        with self._state:
            if self._stopping.is_set():  # a handshake that finished as stop() began
                return
            old = self._links.get(member)
            self._links[member] = link
            self.sessions[member] += 1
            self._state.notify_all()
        if old is not None:
            old.shut()
        try:
            self._drain(link, frames)
        finally:
            with self._state:
                if self._links.get(member) is link:
                    del self._links[member]
                self._state.notify_all()

    def _drain(self, link: Link, frames: Frames) -> None:
        """Reads everything the node sends (so its queue to member 3 never backs up)
        and counts it by kind; an honest node's bytes must always decrypt and decode."""
        assembler = Reassembler(MAX_MESSAGE_BYTES)
        while True:
            try:
                ciphertext = frames.next()
            except (OSError, FramingError):
                return
            if ciphertext is None:
                return
            try:
                message = assembler.feed(link.session.decrypt(ciphertext))
                if message is None:
                    continue
                kind = type(decode_frame(message)).__name__
            except Exception as exc:
                self.errors.append(f"from member {link.member}: {exc!r}")
                return
            with self._state:
                self.received[(link.member, kind)] += 1

    def link(self, member: int, min_sessions: int = 1, timeout: float = 15.0) -> Link:
        """The current session with ``member`` once at least ``min_sessions`` have begun."""
        with self._state:
            ok = self._state.wait_for(
                lambda: self.sessions[member] >= min_sessions and member in self._links,
                timeout,
            )
            assert ok, f"member {member} did not connect to member 3 (session {min_sessions})"
            return self._links[member]

    def stop(self) -> None:
        """Cut every connection, handshakes included: the real member 3 is to take over,
        and an honest node still holding a session with this one would not call it."""
        with self._state:
            self._stopping.set()
        for thread in self._threads[:1]:
            thread.join(timeout=5)
        self._listener.close()
        with self._state:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads[1:]:
            thread.join(timeout=5)


# ------------------------------------------------------------------ what the attackers send


def garbage_openings(seed: bytes, chain_id: str) -> dict[str, Callable[[socket.socket], None]]:
    """What a port scanner, a confused client or an attacker sends first."""
    rng = random.Random(4)

    def send(data: bytes) -> Callable[[socket.socket], None]:
        return lambda sock: send_quietly(sock, data)

    def bad_message_3(sock: socket.socket) -> None:
        start_handshake(sock, seed, chain_id)
        send_quietly(sock, noise_frame(rng.randbytes(64)))

    return {
        "http": send(b"GET / HTTP/1.1\r\nHost: node\r\n\r\n"),
        "tls client hello": send(bytes.fromhex("16030100f4010000f00303") + rng.randbytes(240)),
        "ssh banner": send(b"SSH-2.0-OpenSSH_9.6\r\n"),
        "zero-length frame": send(b"\x00\x00\x00\x00"),
        "message 1 too short": send(noise_frame(rng.randbytes(16))),
        "low-order ephemeral key": send(noise_frame(bytes(32))),
        "a megabyte of noise": send(b"\xfe" + rng.randbytes(MIB - 1)),
        "garbage for message 3": bad_message_3,
    }


def churn(port: int, k: int, chain_id: str) -> socket.socket | None:
    """One short-lived hostile connection; returns it if it is to stay open for now."""
    sock = dial(port)
    match k % 6:
        case 0:
            send_quietly(sock, FOUR_GIB)
        case 1:
            send_quietly(sock, b"GET / HTTP/1.1\r\n\r\n")
        case 2:
            reset(sock)
            return None
        case 3:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)  # half-closed at once
        case 4:
            # A stranger's message 1, then gone before message 3.
            session = SecureSession.initiator(os.urandom(32), prologue(chain_id))
            send_quietly(sock, noise_frame(session.write_handshake()))
            sock.close()
            return None
        case _:
            pass  # connected, then silent
    return sock


def forged_votes(count: int, view: int, seqs: list[int], rng: random.Random) -> Iterator[Frame]:
    """PREPAREs and COMMITs for live slots under every member's name, signatures made up."""
    for k in range(count):
        cls = Prepare if k % 2 else Commit
        yield cls(
            view=view,
            seq=seqs[k % len(seqs)],
            digest=rng.randbytes(32),
            sender=k % 4,
            signature=rng.randbytes(64),
        )


def signed_vote(
    signer: Signer, chain_id: str, cls: type[Prepare | Commit], view: int, seq: int, digest: bytes
) -> Frame:
    frame: Frame = sign(cls, signer, chain_id, view=view, seq=seq, digest=digest, sender=3)
    return frame


def equivocations(
    signer: Signer, chain_id: str, view: int, seqs: list[int], rng: random.Random
) -> Iterator[Frame]:
    """Two PREPAREs for each slot with different digests, both really signed by member 3:
    evidence the node must notice and report."""
    for seq in seqs:
        yield signed_vote(signer, chain_id, Prepare, view, seq, rng.randbytes(32))
        yield signed_vote(signer, chain_id, Prepare, view, seq, rng.randbytes(32))


def signed_nonsense(
    signer: Signer, chain_id: str, view: int, low: int, seqs: list[int], rng: random.Random
) -> Iterator[Frame]:
    """Member 3's real signature on things no honest member would sign."""

    def vote(cls: type[Prepare | Commit], view: int, seq: int) -> Frame:
        return signed_vote(signer, chain_id, cls, view, seq, rng.randbytes(32))

    for seq in seqs:
        yield vote(Prepare, view, seq)
        yield vote(Commit, view, seq)
    yield vote(Prepare, view + 1000, seqs[0])
    yield vote(Commit, view, low + 10**6)
    yield vote(Commit, view, 0)
    checkpoint: Frame = sign(
        Checkpoint, signer, chain_id, seq=low + 10, block_hash=rng.randbytes(32), sender=3
    )
    yield checkpoint
    # A lie about the height lures the node into asking member 3 for blocks it never sends.
    lure: Frame = sign(
        Status, signer, chain_id, view=view, view_active=True, height=10**9, sender=3
    )
    yield lure
