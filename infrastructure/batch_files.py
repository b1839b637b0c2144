"""Batch files (CSV or JSONL, ``docs/batches.md``): cutting them into chunks and reading their lines.

The layer that reads files: ``Upload`` (``infrastructure/batch_runner.py``),
used by ``POST /v1/batches`` and ``invario import``, cuts a file into chunks of
whole lines (``LineChunker``) and checks its CSV header; ``parse_chunk`` turns a
stored chunk's lines into ``BatchLine``s, or line-numbered ``LineError``s, for
the use case (``application/batches.py``'s ``BatchProcessor``, which is given
it and does not import this module).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from application.batches import (
    CHUNK_LINES,
    CSV,
    BatchInfo,
    BatchLine,
    LineError,
    StoredChunk,
    content_key,
)
from application.ledger import PostingInstruction
from domain.errors import InvalidAmount, InvalidTransaction, LedgerError
from domain.ids import account_id_for
from domain.text import check_line

CHUNK_BYTES = 1 << 20
LINE_BYTES_MAX = 65_536
CSV_REQUIRED = ("external_id", "effective_date", "postings")
CSV_OPTIONAL = ("description",)
JSON_MEMBERS = frozenset({"external_id", "effective_date", "postings", "description", "metadata"})
POSTING_MEMBERS = frozenset({"account", "amount", "currency"})


# --- the file-format errors ---------------------------------------------------------
# Not rules of the ledger, so not in domain/errors.py; still LedgerErrors, with stable public codes:
# interfaces/http/problems.py maps them to HTTP statuses, 'invario import' reports InvalidBatch.


class InvalidBatch(LedgerError):
    """The file as a whole cannot be taken: empty, a bad header, an over-long line, an unknown format."""

    code = "invalid_batch"


class InvalidEncoding(InvalidBatch):
    """A line of a batch file is not UTF-8."""

    code = "invalid_encoding"


class MalformedCsv(InvalidBatch):
    """A CSV line cannot be read: bad quoting, or not as many fields as the header."""

    code = "malformed_csv"


class MalformedJsonLine(InvalidBatch):
    """A JSONL line is not one JSON object of the documented members."""

    code = "malformed_json_line"


class InvalidDate(InvalidTransaction):
    """An effective date that is not a calendar date YYYY-MM-DD."""

    code = "invalid_date"


class MissingField(InvalidTransaction):
    """A line of a batch file lacks a required value."""

    code = "missing_field"


# --- lines -------------------------------------------------------------------------


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
    key = content_key(effective_date, instructions, description, metadata)
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

