"""Batches: files of transactions (CSV or JSONL) posted in bounded chunks.

A file is cut into chunks of at most ``CHUNK_LINES`` lines as
it arrives, and the chunks are stored; ``BatchProcessor`` then posts them, one
ledger call per chunk, recording its progress after each so that a crashed
run resumes where it stopped. Re-processing a chunk is harmless: each line's
``external_id`` makes a second post of the same transaction a replay.

- ``partial``: each chunk's valid lines are posted; the others are reported.
- ``atomic`` (default): every line is first decided without saving (a dry run
  over every chunk, plus a check that no ``external_id`` appears twice in the
  file with other content); only if none is rejected are the chunks posted.

The storage is behind ``BatchStorePort`` (``infrastructure/batch_store.py``).
Reading the file (cutting it into chunks, parsing its lines: the format of
``docs/batches.md``) is the infrastructure's (``infrastructure/batch_files.py``):
``BatchProcessor`` is given the parser (``ParseChunk``) and only posts its lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from uuid import UUID

from application.ledger import Ledger, PostingInstruction, TransactionRequest
from domain.errors import AccountNotFound, DuplicateExternalId, LedgerError

log = logging.getLogger("invario.batches")

CHUNK_LINES = 1000  # also the most requests one bulk ledger call takes
CSV, JSONL = "csv", "jsonl"
ATOMIC, PARTIAL = "atomic", "partial"
MODES = (ATOMIC, PARTIAL)
QUEUED, PROCESSING, COMPLETED, REJECTED = "queued", "processing", "completed", "rejected"
VALIDATING, POSTING = "validating", "posting"
ACCEPTED, REPLAYED = "accepted", "replayed"


# --- lines -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One parsed line: a transaction to post."""

    line_no: int
    external_id: str
    effective_date: date
    postings: tuple[PostingInstruction, ...]
    description: str
    metadata: dict[str, str] | None
    content_key: int  # a hash of everything but the external id: equal lines, equal keys
    references: tuple[str, ...] = ()  # the accounts as the file names them, for messages

    @property
    def external_key(self) -> int:
        return _hash64(self.external_id)


@dataclass(frozen=True, slots=True)
class LineError:
    line_no: int
    code: str
    message: str


Outcome = str | LineError  # ACCEPTED, REPLAYED or why the line was rejected


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def content_key(effective_date: date, postings: Iterable[PostingInstruction], description: str,
                metadata: dict[str, str] | None) -> int:
    """What makes two lines the same transaction, but their external id (``BatchLine.content_key``)."""
    def amount(text: str) -> str:
        try:
            return str(Decimal(text).normalize())
        except (InvalidOperation, ValueError):
            return text

    legs = sorted((str(p.account_id), amount(p.amount), p.currency or "") for p in postings)
    document = [effective_date.isoformat(), legs, description, sorted((metadata or {}).items())]
    return _hash64(json.dumps(document, separators=(",", ":")))


# --- the store this needs ------------------------------------------------------------------


@dataclass(frozen=True)
class BatchInfo:
    id: UUID
    tenant_id: UUID
    mode: str
    format: str
    header: bytes
    status: str
    phase: str
    next_chunk: int
    chunk_count: int
    line_count: int
    accepted_count: int
    replayed_count: int
    rejected_count: int
    reason: str | None = None
    created_at: Any = None
    finished_at: Any = None


@dataclass(frozen=True)
class StoredChunk:
    chunk_no: int
    first_line: int
    body: bytes


@dataclass
class ChunkResult:
    accepted: int = 0
    replayed: int = 0
    errors: list[LineError] = field(default_factory=list)


class LeaseLost(Exception):
    """Another worker took the batch over (this one was presumed dead): stop touching it."""


class BatchStorePort(Protocol):
    def chunks(self, batch_id: UUID, start: int) -> Iterator[StoredChunk]: ...
    def start_phase(self, batch_id: UUID, owner: str, phase: str) -> None: ...
    def record_chunk(self, batch_id: UUID, owner: str, chunk_no: int, result: ChunkResult) -> None: ...
    def record_errors(self, batch_id: UUID, owner: str, errors: Sequence[LineError]) -> None: ...
    def finish(self, batch_id: UUID, owner: str, status: str, reason: str | None = None) -> BatchInfo: ...


# --- the one place that calls the ledger's bulk use case -------------------------------------


def post_lines(ledger: Ledger, tenant_id: UUID, lines: Sequence[BatchLine], *, commit: bool) -> list[Outcome]:
    """Decide (and with ``commit`` save) a chunk of lines in one bulk ledger call."""
    assert len(lines) <= CHUNK_LINES
    if not lines:
        return []
    requests = [TransactionRequest(line.external_id, line.effective_date, line.postings, line.description,
                                   line.metadata) for line in lines]
    try:
        results = ledger.post_transactions(tenant_id, requests, commit=commit)
    except LedgerError as exc:  # the whole call refused (e.g. the tenant is suspended)
        return [LineError(line.line_no, exc.code, exc.message) for line in lines]
    outcomes: list[Outcome] = []
    for line, result in zip(lines, results, strict=True):
        if isinstance(result, LedgerError):
            outcomes.append(LineError(line.line_no, result.code, _as_named(result, line)))
        else:
            outcomes.append(REPLAYED if result.replayed else ACCEPTED)
    return outcomes


def _as_named(error: LedgerError, line: BatchLine) -> str:
    """The error's message, naming an unknown account as the file did (its code), not by its derived id."""
    account_id = error.details.get("account_id")
    if isinstance(error, AccountNotFound) and account_id is not None:
        for instruction, reference in zip(line.postings, line.references, strict=True):
            if str(instruction.account_id) == account_id:
                return f"account {reference!r} not found"
    return error.message


# --- processing -------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]  # (phase, chunks done, chunk count)
# Every non-blank line of a stored chunk, parsed, or why it cannot be (``infrastructure.batch_files.parse_chunk``).
ParseChunk = Callable[[StoredChunk, BatchInfo], list[BatchLine | LineError]]


class BatchProcessor:
    """Runs one claimed batch to its end: ``completed`` or ``rejected``."""

    def __init__(self, ledger: Ledger, store: BatchStorePort, owner: str,
                 post: Callable[..., list[Outcome]] = post_lines, *, parse: ParseChunk) -> None:
        self.ledger = ledger
        self.store = store
        self.owner = owner
        self._post = post
        self._parse = parse

    def run(self, batch: BatchInfo, on_progress: Progress | None = None) -> BatchInfo:
        progress = on_progress or (lambda _phase, _done, _total: None)
        if batch.mode == ATOMIC and batch.phase != POSTING:
            if self._validate(batch, progress) > 0:
                return self._reject(batch, "invalid lines; nothing was posted")
            self.store.start_phase(batch.id, self.owner, POSTING)
            batch = _at_start(batch, POSTING)
        rejected_while_posting = self._post_chunks(batch, progress)
        if batch.mode == ATOMIC and rejected_while_posting:
            return self._reject(batch, "the ledger rejected lines while posting (it changed since the batch "
                                       "was validated); the lines before them were posted")
        return self.store.finish(batch.id, self.owner, COMPLETED)

    def _validate(self, batch: BatchInfo, progress: Progress) -> int:
        """The dry run: how many lines would be rejected (their errors are recorded)."""
        self.store.start_phase(batch.id, self.owner, VALIDATING)
        keys = _DuplicateFinder()
        rejected = 0
        for chunk in self.store.chunks(batch.id, 0):
            parsed = self._parse(chunk, batch)
            lines = [item for item in parsed if isinstance(item, BatchLine)]
            errors = [item for item in parsed if isinstance(item, LineError)]
            outcomes = self._post(self.ledger, batch.tenant_id, lines, commit=False)
            errors += [outcome for outcome in outcomes if isinstance(outcome, LineError)]
            keys.add(line for line, outcome in zip(lines, outcomes, strict=True) if not isinstance(outcome, LineError))
            rejected += len(errors)
            self.store.record_errors(batch.id, self.owner, errors)
            progress(VALIDATING, chunk.chunk_no + 1, batch.chunk_count)
        duplicates = keys.conflicts()
        self.store.record_errors(batch.id, self.owner, duplicates)
        return rejected + len(duplicates)

    def _post_chunks(self, batch: BatchInfo, progress: Progress) -> bool:
        rejected_any = False
        for chunk in self.store.chunks(batch.id, batch.next_chunk):
            parsed = self._parse(chunk, batch)
            lines = [item for item in parsed if isinstance(item, BatchLine)]
            result = ChunkResult(errors=[item for item in parsed if isinstance(item, LineError)])
            for outcome in self._post(self.ledger, batch.tenant_id, lines, commit=True):
                if isinstance(outcome, LineError):
                    result.errors.append(outcome)
                elif outcome == REPLAYED:
                    result.replayed += 1
                else:
                    result.accepted += 1
            self.store.record_chunk(batch.id, self.owner, chunk.chunk_no, result)
            progress(POSTING, chunk.chunk_no + 1, batch.chunk_count)
            if result.errors and batch.mode == ATOMIC:
                rejected_any = True
                break
        return rejected_any

    def _reject(self, batch: BatchInfo, reason: str) -> BatchInfo:
        finished = self.store.finish(batch.id, self.owner, REJECTED, reason)
        log.warning("batch_rejected: batch %s of tenant %s: %s (%d line(s) rejected)", batch.id, batch.tenant_id,
                    reason, finished.rejected_count,
                    extra={"event": "batch_rejected", "batch_id": str(batch.id), "tenant_id": str(batch.tenant_id),
                           "mode": batch.mode, "rejected_lines": finished.rejected_count, "reason": reason})
        return finished


def _at_start(batch: BatchInfo, phase: str) -> BatchInfo:
    from dataclasses import replace

    return replace(batch, phase=phase, next_chunk=0)


class _DuplicateFinder:
    """Lines of one file that reuse an ``external_id`` with other content, in 24 bytes a line.

    Chunks are dry-run separately, so a line cannot see an earlier chunk's lines;
    this finds the conflicts across the whole file once every line was seen. The
    first line with an external id wins, as it would when posting.
    """

    def __init__(self) -> None:
        self._external = array("Q")
        self._content = array("Q")
        self._line_no = array("Q")

    def add(self, lines: Iterable[BatchLine]) -> None:
        for line in lines:
            self._external.append(line.external_key)
            self._content.append(line.content_key)
            self._line_no.append(line.line_no)

    def conflicts(self) -> list[LineError]:
        repeated = _repeated(self._external)
        if not repeated:
            return []
        first_content: dict[int, int] = {}
        errors = []
        for external, content, line_no in zip(self._external, self._content, self._line_no, strict=True):
            if external not in repeated:
                continue
            if first_content.setdefault(external, content) != content:
                errors.append(LineError(line_no, DuplicateExternalId.code,
                                        "external_id was already used by an earlier line of this file "
                                        "for a different transaction"))
        return errors


def _repeated(values: array) -> set[int]:  # type: ignore[type-arg]
    ordered = sorted(values)
    return {b for a, b in zip(ordered, ordered[1:]) if a == b}

