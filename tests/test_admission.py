"""The listener's admission policy (``net.admission``) on its own: who gets a handshake
slot, who is evicted for whom, who is refused and why. No sockets except where the
readiness of a real one is the point; the clock is a number."""

from __future__ import annotations

import socket

import pytest

from net.admission import (
    Handshake,
    HandshakePool,
    Readiness,
    normalise_address,
    socket_readiness,
)

MEMBER = "10.0.0.1"  # a member's genesis address
STRANGER = "192.0.2.7"
GRACE = 0.05


class Sockets:
    """What each fake descriptor would answer to a poll."""

    def __init__(self) -> None:
        self.state: dict[int, Readiness] = {}

    def __call__(self, fd: int) -> Readiness:
        return self.state.get(fd, "silent")


def make_pool(capacity: int = 3, per_address: int = 2) -> tuple[HandshakePool, Sockets]:
    sockets = Sockets()
    pool = HandshakePool(
        capacity,
        per_address=per_address,
        grace_s=GRACE,
        member_addresses={MEMBER},
        readiness=sockets,
    )
    return pool, sockets


class Arrivals:
    def __init__(self, pool: HandshakePool) -> None:
        self.pool = pool
        self.fd = 100

    def new(self, at: float, address: str = MEMBER) -> Handshake:
        self.fd += 1
        member = self.pool.is_member_address(address)
        return Handshake(fd=self.fd, address=address, member_address=member, accepted_at=at)

    def admitted(self, count: int, at: float, address: str = MEMBER) -> list[Handshake]:
        entries = [self.new(at + k * 0.001, address) for k in range(count)]
        for h in entries:
            assert self.pool.admit(h, h.accepted_at).admitted
        return entries

    def started(self, count: int, at: float, address: str = MEMBER) -> list[Handshake]:
        entries = self.admitted(count, at, address)
        for h in entries:
            assert self.pool.start(h, h.accepted_at).admitted
        return entries


def test_below_every_cap_everyone_is_admitted_and_nobody_evicted() -> None:
    pool, _ = make_pool()
    a = Arrivals(pool)
    entries = a.started(3, 0.0) + a.admitted(3, 0.0)
    assert all(h.evicted is None for h in entries)
    assert len(pool) == 6 and pool.waiting() == 3


def test_a_new_socket_takes_the_place_of_the_oldest_silent_one() -> None:
    pool, _ = make_pool()
    a = Arrivals(pool)
    old = a.admitted(3, 0.0)
    newcomer = a.new(0.0031)
    decision = pool.admit(newcomer, 0.0031)
    assert decision.admitted and decision.pressure == "handshake_slots"
    assert decision.evicted is old[0] and old[0].evicted == "displaced"
    assert set(pool) == {old[1], old[2], newcomer}


def test_a_young_socket_whose_message_1_waits_unread_is_not_displaced() -> None:
    pool, sockets = make_pool()
    a = Arrivals(pool)
    old = a.admitted(3, 0.0)
    sockets.state[old[0].fd] = "data"  # its handler is about to read message 1
    assert pool.admit(a.new(0.01), 0.01).evicted is old[1]
    # ...but bytes that never make a message do not protect it for ever.
    assert pool.admit(a.new(GRACE), GRACE).evicted is old[0]


def test_a_started_handshake_keeps_its_slot_for_the_grace_then_loses_it() -> None:
    pool, _ = make_pool()
    a = Arrivals(pool)
    old = a.started(3, 0.0)
    early = a.admitted(1, 0.01)[0]
    refused = pool.start(early, 0.01 + GRACE / 2)
    assert not refused.admitted and refused.pressure == "handshake_slots" and early.refused
    assert early not in set(pool)
    late = a.admitted(1, 0.02)[0]
    decision = pool.start(late, GRACE + 0.0001)
    assert decision.admitted and decision.evicted is old[0] and old[0].evicted == "stalled"
    assert late.started_at == GRACE + 0.0001


def test_stalled_strangers_go_before_stalled_members() -> None:
    pool, _ = make_pool(capacity=3)
    a = Arrivals(pool)
    member = a.started(1, 0.0)[0]
    strangers = a.started(1, 0.001, STRANGER) + a.started(1, 0.002, "192.0.2.8")
    decision = pool.start(a.admitted(1, 0.1)[0], 0.1)
    assert decision.evicted is strangers[0] and member.evicted is None


def test_an_address_that_is_no_members_holds_at_most_its_share() -> None:
    pool, _ = make_pool(capacity=10, per_address=2)
    a = Arrivals(pool)
    a.admitted(1, 0.0, STRANGER)
    a.started(1, 0.0, STRANGER)
    third = pool.admit(a.new(0.1, STRANGER), 0.1)
    assert not third.admitted and third.pressure == "per_address"
    assert pool.admit(a.new(0.1, "192.0.2.8"), 0.1).admitted
    # Members' addresses have no such limit.
    a.admitted(5, 0.2)
    assert len(pool) == 8 and pool.strangers() == 3


def test_a_members_address_takes_a_strangers_started_slot_however_young() -> None:
    pool, _ = make_pool(capacity=2)
    a = Arrivals(pool)
    strangers = a.started(1, 0.0, STRANGER) + a.started(1, 0.001, "192.0.2.8")
    decision = pool.start(a.admitted(1, 0.002)[0], 0.002)
    assert decision.admitted and decision.evicted is strangers[0]
    assert strangers[0].evicted == "stranger"
    # A stranger's message 1 finds no stranger's stalled slot to take: refused.
    assert not pool.start(a.admitted(1, 0.003, "192.0.2.9")[0], 0.003).admitted


def test_a_stranger_never_takes_a_members_place() -> None:
    pool, _ = make_pool(capacity=2)
    a = Arrivals(pool)
    started = a.started(2, 0.0)  # a member far away: stalled by the clock
    waiting = a.admitted(2, 0.0)
    assert not pool.admit(a.new(1.0, STRANGER), 1.0).admitted
    assert not pool.admit(a.new(1.0, STRANGER), 1.0, inbound_full=True).admitted
    assert all(h.evicted is None for h in waiting + started)


def test_the_inbound_cap_and_the_descriptor_reserve_also_make_room_by_eviction() -> None:
    pool, _ = make_pool(capacity=10)
    a = Arrivals(pool)
    old = a.started(2, 0.0)
    inbound = pool.admit(a.new(0.01), 0.01, inbound_full=True)
    assert not inbound.admitted and inbound.pressure == "inbound"
    descriptors = pool.admit(a.new(0.01), 0.01, descriptors_short=True)
    assert not descriptors.admitted and descriptors.pressure == "descriptors"
    made_room = pool.admit(silent := a.new(GRACE), GRACE, descriptors_short=True)
    assert made_room.admitted and made_room.pressure == "descriptors"
    assert made_room.evicted is old[0] and old[0].evicted == "stalled"
    # A silent one goes first.
    assert pool.admit(a.new(0.07), 0.07, inbound_full=True).evicted is silent


def test_removing_is_idempotent_and_frees_the_address_share() -> None:
    pool, _ = make_pool(per_address=1)
    a = Arrivals(pool)
    (h,) = a.started(1, 0.0, STRANGER)
    pool.remove(h)
    pool.remove(h)
    assert len(pool) == 0
    assert pool.admit(a.new(1.0, STRANGER), 1.0).admitted


def test_readiness_of_a_real_socket() -> None:
    a, b = socket.socketpair()
    try:
        assert socket_readiness(a.fileno()) == "silent"
        b.sendall(b"\x00\x00\x00\x20")
        assert socket_readiness(a.fileno()) == "data"
        b.shutdown(socket.SHUT_WR)
        assert socket_readiness(a.fileno()) == "closed"
    finally:
        a.close()
        b.close()
    assert socket_readiness(-1) == "closed"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("node1.example.org", None),
        ("", None),
    ],
)
def test_addresses_are_compared_in_one_form(text: str, expected: str | None) -> None:
    assert normalise_address(text) == expected


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        HandshakePool(0, per_address=1, grace_s=1)
    with pytest.raises(ValueError):
        HandshakePool(1, per_address=1, grace_s=0)
