"""Shared key reads: a request is served only by a read that began after it arrived."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from interfaces.http.key_reads import SharedReads


def test_requests_arriving_during_a_read_share_the_next_one() -> None:
    key_id = uuid.uuid4()
    began: list[int] = []
    release = threading.Event()

    def read(_: uuid.UUID) -> int:
        began.append(len(began) + 1)
        release.wait(5)
        return len(began)

    async def scenario() -> list[int]:
        reads = SharedReads(read)
        first = asyncio.ensure_future(reads.get(key_id))
        while not began:  # the first read is running
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(reads.get(key_id)) for _ in range(5)]
        await asyncio.sleep(0.01)
        release.set()
        return [await first, *[await each for each in later]]

    results = asyncio.run(scenario())
    assert results[0] == 1  # the read running when the others arrived serves only the first
    assert results[1:] == [2] * 5  # one more read, begun after they arrived, serves all five
    assert len(began) == 2


def test_a_failed_read_fails_its_waiters_and_the_next_request_reads_again() -> None:
    key_id = uuid.uuid4()
    calls: list[int] = []

    def read(_: uuid.UUID) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database down")
        return "key"

    async def scenario() -> str:
        reads = SharedReads(read)
        with pytest.raises(ConnectionError):
            await reads.get(key_id)
        return await reads.get(key_id)

    assert asyncio.run(scenario()) == "key"
    assert len(calls) == 2
