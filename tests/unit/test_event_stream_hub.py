"""The stream hub's rules for a client's buffer, without I/O: fed, cut off when stuck, never waited for."""

from __future__ import annotations

import asyncio
import threading
from uuid import UUID

import pytest

from projections.relay import stream
from projections.relay.feed import FeedMessage, FeedPage
from projections.relay.stream import StreamHub, TooManyStreams, _Handover

ACME, GLOBEX = UUID(int=1), UUID(int=2)


class NoEvents:
    """A feed that never grows: the tests hand events over themselves."""

    def position(self) -> int:
        return 0

    def page(self, tenant_ids: list[UUID], after: int, limit: int, upto: int | None = None) -> FeedPage:
        return FeedPage([], False, 0)


class Sleeping:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def wait(self, timeout_seconds: float) -> bool:
        self.stop.wait(timeout_seconds)
        return False

    def close(self) -> None:
        pass


def _hub(buffer_max: int = 4) -> StreamHub:
    return StreamHub(NoEvents(), lambda stop: (Sleeping(stop), False),  # type: ignore[arg-type]
                     poll_seconds=0.01, per_tenant_max=2, buffer_max=buffer_max)


def _handover(after: int, positions: list[int], tenant: UUID = ACME) -> _Handover:
    messages = [FeedMessage(p, tenant, b"{}") for p in positions]
    return _Handover(frozenset({ACME, GLOBEX}), after, positions[-1] if positions else after, messages)


def _give(hub: StreamHub, handover: _Handover) -> None:
    hub._hand_over(handover, threading.Event())


def test_a_live_client_is_handed_its_tenants_events_and_a_stuck_one_is_cut_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "STUCK_SECONDS", 0.0)

    async def run() -> None:
        hub = _hub()
        try:
            fast, stuck = hub.connect(ACME, 0), hub.connect(ACME, 0)
            other = hub.connect(GLOBEX, 0)
            for client in (fast, stuck, other):
                client.live = True
            _give(hub, _handover(0, [1, 2, 3]))
            assert [fast.take().position for _ in range(3)] == [1, 2, 3]
            assert other.queue.empty() and other.last_queued == 3  # nothing of another tenant
            _give(hub, _handover(3, [4, 5, 6]))  # stuck holds 3 and has room for 1: the rest it reads itself
            assert not stuck.live and not stuck.overflowed and stuck.last_queued == 4
            assert fast.live and fast.queue.qsize() == 3
            hub._cut_off_stuck()  # stuck has taken nothing since: cut off
            assert stuck.overflowed and not fast.overflowed
        finally:
            hub.close()

    asyncio.run(run())


def test_a_burst_larger_than_the_buffer_is_read_by_the_client_itself() -> None:
    async def run() -> None:
        hub = _hub(buffer_max=2)
        try:
            client = hub.connect(ACME, 0)
            client.live = True
            _give(hub, _handover(0, [1, 2, 3, 4, 5]))
            assert not client.live and not client.overflowed and client.last_queued == 2
            client.take()  # it takes from its buffer: not stuck
            hub._cut_off_stuck()
            assert not client.overflowed
        finally:
            hub.close()

    asyncio.run(run())


def test_a_client_behind_the_hub_reads_the_gap_itself_and_a_tenant_has_a_bound_on_streams() -> None:
    async def run() -> None:
        hub = _hub()
        try:
            client = hub.connect(ACME, 3)
            client.live = True
            _give(hub, _handover(5, [6]))  # the hub read 4..5 before the client joined
            assert not client.live and client.queue.empty()
            hub.connect(ACME, 0)
            with pytest.raises(TooManyStreams):
                hub.connect(ACME, 0)
            hub.disconnect(client)
            hub.disconnect(client)  # twice is harmless
            assert hub.streams(ACME) == 1
        finally:
            hub.close()

    asyncio.run(run())
