"""Receiving batch files and running queued batches.

``Upload`` stores a file as it streams in (chunks, then the queue entry);
``BatchRunner`` claims queued batches and processes them, in ``invario worker``
and, on the embedded SQLite store, in a thread of the API process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from uuid import UUID

from application.batches import COMPLETED, CSV, BatchInfo, BatchProcessor, LeaseLost, Progress
from application.ledger import Ledger
from infrastructure.batch_files import InvalidBatch, LineChunker, check_csv_header, parse_chunk
from infrastructure.batch_store import BatchStore
from infrastructure.telemetry import instruments

log = logging.getLogger("invario.batches")


def new_owner(role: str) -> str:
    """Who holds a lease: readable in the database, unique per process run."""
    return f"{role}:{socket.gethostname()[:20]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Upload:
    """One file being received: fed in pieces, stored in chunks, then queued."""

    def __init__(self, store: BatchStore, tenant_id: UUID, mode: str, format: str) -> None:  # noqa: A002
        self.store = store
        self.format = format
        self.batch_id = store.create(tenant_id, mode, format)
        self._chunker = LineChunker(has_header=format == CSV)
        self._sha = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        self._sha.update(data)
        for chunk in self._chunker.feed(data):
            self.store.add_chunk(self.batch_id, chunk)

    def finish(self, owner: str | None = None) -> BatchInfo:
        """Store the last chunk and queue the batch (or hand it to ``owner``); ``InvalidBatch`` if empty."""
        for chunk in self._chunker.close():
            self.store.add_chunk(self.batch_id, chunk)
        if self.format == CSV:
            if self._chunker.header is None:
                raise InvalidBatch("the file is empty: a CSV batch starts with its header line")
            check_csv_header(self._chunker.header)
        if self._chunker.line_count == 0:
            raise InvalidBatch("the file holds no transactions")
        return self.store.enqueue(self.batch_id, header=self._chunker.header or b"",
                                  chunk_count=self._chunker.chunk_count, line_count=self._chunker.line_count,
                                  file_sha256=self._sha.hexdigest(), owner=owner)

    def check_header_early(self) -> None:
        """Refuse a bad CSV header as soon as it has arrived, not after the whole file."""
        if self.format == CSV and self._chunker.header is not None:
            check_csv_header(self._chunker.header)

    def abort(self) -> None:
        self.store.discard(self.batch_id)


class _Stopping(Exception):
    """The runner was asked to stop between two chunks."""


class BatchRunner:
    """Processes queued batches one after the other until stopped."""

    def __init__(self, ledger: Ledger, store: BatchStore, poll_seconds: float, role: str = "worker") -> None:
        self.ledger = ledger
        self.store = store
        self.poll_seconds = poll_seconds
        self.owner = new_owner(role)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run_pending(self, on_progress: Progress | None = None) -> int:
        """Process every batch waiting now; how many were finished."""
        finished = 0
        while not self._stop.is_set():
            batch = self.store.claim_next(self.owner)
            if batch is None:
                return finished
            finished += self.process(batch, on_progress)
        return finished

    def process(self, batch: BatchInfo, on_progress: Progress | None = None) -> int:
        log.info("processing batch %s (%s, %d lines, from chunk %d of %s)", batch.id, batch.mode, batch.line_count,
                 batch.next_chunk, batch.phase, extra={"event": "batch_started", "batch_id": str(batch.id)})
        def progress(phase: str, done: int, total: int) -> None:
            if on_progress is not None:
                on_progress(phase, done, total)
            if self._stop.is_set():
                raise _Stopping

        try:
            done = BatchProcessor(self.ledger, self.store, self.owner, parse=parse_chunk).run(batch, progress)
        except LeaseLost as exc:
            log.warning("batch %s: %s; leaving it to its new holder", batch.id, exc)
            return 0
        except _Stopping:
            self.store.release(batch.id, self.owner)
            log.info("batch %s: stopping; it resumes from its last recorded chunk", batch.id)
            return 0
        instruments().batch_outcomes.add(1, {"outcome": "accepted" if done.status == COMPLETED else "rejected"})
        log.info("batch %s %s: %d accepted, %d replayed, %d rejected", done.id, done.status, done.accepted_count,
                 done.replayed_count, done.rejected_count,
                 extra={"event": "batch_finished", "batch_id": str(done.id), "status": done.status,
                        "accepted": done.accepted_count, "replayed": done.replayed_count,
                        "rejected": done.rejected_count})
        return 1

    # --- as a background thread -------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="invario-batches", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def stop(self, timeout_seconds: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pending()
            except Exception:  # the database may be down for a moment: try again on the next poll
                log.exception("processing batches failed; retrying in %.1f s", self.poll_seconds,
                              extra={"event": "batch_runner_failed"})
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

