"""Batches: files of transactions (CSV or JSONL) posted in bounded chunks.

A file is cut into chunks of at most ``CHUNK_LINES`` lines (``LineChunker``) as
it arrives, and the chunks are stored; ``BatchProcessor`` then posts them, one
ledger call per chunk, recording its progress after each so that a crashed
run resumes where it stopped. Re-processing a chunk is harmless: each line's
``external_id`` makes a second post of the same transaction a replay.

- ``partial``: each chunk's valid lines are posted; the others are reported.
- ``atomic`` (default): every line is first decided without saving (a dry run
  over every chunk, plus a check that no ``external_id`` appears twice in the
  file with other content); only if none is rejected are the chunks posted.

The storage is behind ``BatchStorePort`` (``infrastructure/batch_store.py``).
The file format is documented in ``docs/batches.md``.
"""

from __future__ import annotations

import csv
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
from domain.errors import (
    AccountNotFound,
    DuplicateExternalId,
    InvalidAmount,
    InvalidBatch,
    InvalidDate,
    InvalidEncoding,
    LedgerError,
    MalformedCsv,
    MalformedJsonLine,
    MissingField,
)
from domain.ids import account_id_for
from domain.text import check_line

log = logging.getLogger("invario.batches")

CHUNK_LINES = 1000  # also the most requests one bulk ledger call takes
CHUNK_BYTES = 1 << 20
LINE_BYTES_MAX = 65_536
CSV, JSONL = "csv", "jsonl"
ATOMIC, PARTIAL = "atomic", "partial"
MODES = (ATOMIC, PARTIAL)
QUEUED, PROCESSING, COMPLETED, REJECTED = "queued", "processing", "completed", "rejected"
VALIDATING, POSTING = "validating", "posting"
CSV_REQUIRED = ("external_id", "effective_date", "postings")
CSV_OPTIONAL = ("description",)
JSON_MEMBERS = frozenset({"external_id", "effective_date", "postings", "description", "metadata"})
POSTING_MEMBERS = frozenset({"account", "amount", "currency"})
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


def _account_id(tenant_id: UUID, reference: str) -> UUID:
    """An account named by id (a UUID) or by code."""
    try:
        return UUID(reference)
    except ValueError:
        return account_id_for(tenant_id, reference)


def _parse_date(text: Any) -> date:
    try:
        if not isinstance(text, str) or len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidDate(f"effective_date {str(text)[:40]!r} is not a calendar date YYYY-MM-DD") from None


def _content_key(effective_date: date, postings: Iterable[PostingInstruction], description: str,
                 metadata: dict[str, str] | None) -> int:
    def amount(text: str) -> str:
        try:
            return str(Decimal(text).normalize())
        except (InvalidOperation, ValueError):
            return text

    legs = sorted((str(p.account_id), amount(p.amount), p.currency or "") for p in postings)
    document = [effective_date.isoformat(), legs, description, sorted((metadata or {}).items())]
    return _hash64(json.dumps(document, separators=(",", ":")))


def _line(tenant_id: UUID, line_no: int, fields: dict[str, Any], postings: list[tuple[str, Any, Any]]) -> BatchLine:
    external_id = fields.get("external_id")
    if not external_id:
        raise MissingField("external_id is required", field="external_id")
    if not isinstance(external_id, str):
        raise MalformedJsonLine("external_id must be a string")
    check_line(external_id, "external_id")  # before it is hashed: a JSON line can carry a lone surrogate
    effective_date = _parse_date(fields.get("effective_date"))
    instructions = []
    for reference, amount, currency in postings:
        if not isinstance(reference, str) or not reference:
            raise MissingField("every posting names an account (code or id)", field="postings")
        check_line(reference, "account")  # before an account id is derived from it
        if not isinstance(amount, str):
            raise InvalidAmount(f"amount {str(amount)[:40]!r} must be a decimal string such as '12.34'")
        if currency is not None and not isinstance(currency, str):
            raise MalformedJsonLine("currency must be a string")
        instructions.append(PostingInstruction(_account_id(tenant_id, reference), amount, currency))
    description = fields.get("description") or ""
    metadata = fields.get("metadata")
    if not isinstance(description, str):
        raise MalformedJsonLine("description must be a string")
    if metadata is not None and not isinstance(metadata, dict):
        raise MalformedJsonLine("metadata must be an object of strings")
    key = _content_key(effective_date, instructions, description, metadata)
    references = tuple(str(reference) for reference, _amount, _currency in postings)
    return BatchLine(line_no, external_id, effective_date, tuple(instructions), description, metadata, key,
                     references)


def check_csv_header(header: bytes) -> list[str]:
    """The CSV header's column names; anything else than the documented columns is ``InvalidBatch``."""
    try:
        text = header.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise InvalidEncoding("the header line is not UTF-8") from None
    try:
        names = [name.strip().lower() for name in next(csv.reader([text], strict=True))]
    except (csv.Error, StopIteration):
        raise InvalidBatch("the CSV header line cannot be read") from None
    missing = [name for name in CSV_REQUIRED if name not in names]
    unknown = [name for name in names if name not in CSV_REQUIRED + CSV_OPTIONAL]
    if missing or unknown or len(set(names)) != len(names):
        raise InvalidBatch(
            f"the CSV header must name the columns {', '.join(CSV_REQUIRED)} (and optionally "
            f"{', '.join(CSV_OPTIONAL)}), each once; got: {text[:200]!r}", columns=names[:20],
        )
    return names


def _parse_csv_line(tenant_id: UUID, line_no: int, text: str, columns: Sequence[str]) -> BatchLine:
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise MalformedCsv(f"the line cannot be read as CSV: {exc}") from None
    if len(rows) != 1 or len(rows[0]) != len(columns):
        found = len(rows[0]) if len(rows) == 1 else 0
        raise MalformedCsv(f"the line has {found} fields; the header names {len(columns)}")
    fields = dict(zip(columns, (value.strip() for value in rows[0]), strict=True))
    postings = []
    for leg in filter(None, (part.strip() for part in fields.get("postings", "").split(";"))):
        reference, equals, amount = leg.partition("=")
        if not equals:
            raise MalformedCsv(f"posting {leg[:60]!r} is not ACCOUNT=AMOUNT")
        postings.append((reference.strip(), amount.strip(), None))
    return _line(tenant_id, line_no, fields, postings)


def _parse_json_line(tenant_id: UUID, line_no: int, text: str) -> BatchLine:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedJsonLine("the line is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedJsonLine("each line must be one JSON object")
    unknown = set(document) - JSON_MEMBERS
    if unknown:
        raise MalformedJsonLine(f"unknown member(s): {', '.join(sorted(unknown))[:200]}")
    legs = document.get("postings")
    if not isinstance(legs, list) or not all(isinstance(leg, dict) for leg in legs):
        raise MissingField("postings must be a list of {account, amount[, currency]} objects", field="postings")
    if any(set(leg) - POSTING_MEMBERS for leg in legs):
        raise MalformedJsonLine("a posting has members other than account, amount and currency")
    postings = [(leg.get("account"), leg.get("amount"), leg.get("currency")) for leg in legs]
    return _line(tenant_id, line_no, document, postings)


def parse_chunk(chunk: StoredChunk, batch: BatchInfo) -> list[BatchLine | LineError]:
    """Every non-blank line of a stored chunk, parsed, or why it cannot be."""
    columns = check_csv_header(batch.header) if batch.format == CSV else ()
    parsed: list[BatchLine | LineError] = []
    for offset, raw in enumerate(chunk.body.split(b"\n")):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        line_no = chunk.first_line + offset
        try:
            text = raw.decode("utf-8")
            if batch.format == CSV:
                parsed.append(_parse_csv_line(batch.tenant_id, line_no, text, columns))
            else:
                parsed.append(_parse_json_line(batch.tenant_id, line_no, text))
        except UnicodeDecodeError as exc:
            parsed.append(LineError(line_no, InvalidEncoding.code, f"the line is not UTF-8 (byte {exc.start + 1})"))
        except LedgerError as exc:
            parsed.append(LineError(line_no, exc.code, exc.message))
    return parsed


# --- cutting a file into chunks ------------------------------------------------------------


@dataclass(frozen=True)
class NewChunk:
    chunk_no: int
    first_line: int
    line_count: int
    body: bytes


class LineChunker:
    """Cuts a byte stream into chunks of whole lines, in bounded memory.

    With ``has_header`` the first line is kept apart (``header``). A line longer
    than ``LINE_BYTES_MAX`` is ``InvalidBatch``: lines are never split.
    """

    def __init__(self, *, has_header: bool) -> None:
        self.header: bytes | None = None
        self._want_header = has_header
        self._pending = bytearray()
        self._lines: list[bytes] = []
        self._size = 0
        self._next_line = 1
        self._chunk_first_line = 1
        self.chunk_count = 0
        self.line_count = 0

    def feed(self, data: bytes) -> Iterator[NewChunk]:
        self._pending += data
        start = 0
        while (end := self._pending.find(b"\n", start)) >= 0:
            yield from self._take(bytes(self._pending[start:end + 1]))
            start = end + 1
        del self._pending[:start]
        if len(self._pending) > LINE_BYTES_MAX:
            raise InvalidBatch(f"line {self._next_line} is longer than {LINE_BYTES_MAX} bytes",
                               line=self._next_line, limit=LINE_BYTES_MAX)

    def close(self) -> Iterator[NewChunk]:
        if self._pending:
            yield from self._take(bytes(self._pending) + b"\n")
            self._pending.clear()
        if self._lines:
            yield self._emit()

    def _take(self, line: bytes) -> Iterator[NewChunk]:
        if len(line) > LINE_BYTES_MAX + 2:
            raise InvalidBatch(f"line {self._next_line} is longer than {LINE_BYTES_MAX} bytes",
                               line=self._next_line, limit=LINE_BYTES_MAX)
        if self._want_header:
            self._want_header = False
            self.header = line.rstrip(b"\r\n")
            self._next_line += 1
            self._chunk_first_line = self._next_line
            return
        self._lines.append(line)
        self._size += len(line)
        self._next_line += 1
        if line.strip():
            self.line_count += 1
        if len(self._lines) >= CHUNK_LINES or self._size >= CHUNK_BYTES:
            yield self._emit()

    def _emit(self) -> NewChunk:
        chunk = NewChunk(self.chunk_count, self._chunk_first_line, len(self._lines), b"".join(self._lines))
        self.chunk_count += 1
        self._chunk_first_line = self._next_line
        self._lines, self._size = [], 0
        return chunk


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


class BatchProcessor:
    """Runs one claimed batch to its end: ``completed`` or ``rejected``."""

    def __init__(self, ledger: Ledger, store: BatchStorePort, owner: str,
                 post: Callable[..., list[Outcome]] = post_lines) -> None:
        self.ledger = ledger
        self.store = store
        self.owner = owner
        self._post = post

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
            parsed = parse_chunk(chunk, batch)
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
            parsed = parse_chunk(chunk, batch)
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

