"""The group-commit writer's queue: callers on an event loop are never made to wait for room."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from application.group_commit import GroupCommitWriter


def test_a_full_queue_refuses_a_non_blocking_submission_and_loses_nothing_queued() -> None:
    running, release = threading.Event(), threading.Event()

    def run_batch(submissions: list[Any]) -> list[Any]:
        running.set()
        release.wait(5)  # the writer is busy committing
        return [f"done {index}" for index, _ in enumerate(submissions)]

    writer = GroupCommitWriter(run_batch, batch_size_max=1, wait_seconds=0, queue_max=1)
    try:
        first = writer.enqueue(lambda _ws: None)
        assert running.wait(5)  # taken by the writer
        second = writer.enqueue(lambda _ws: None)  # fills the queue
        with pytest.raises(queue.Full):
            writer.enqueue(lambda _ws: None, block=False)
        release.set()
        assert first.result(5) == "done 0" and second.result(5) == "done 0"
        assert writer.enqueue(lambda _ws: None, block=False).result(5) == "done 0"  # room again
    finally:
        release.set()
        writer.stop()
