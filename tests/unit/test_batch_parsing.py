"""Batch files: cutting them into chunks and reading their lines (no I/O)."""

from __future__ import annotations

from datetime import date
from uuid import UUID, uuid4

import pytest

from application.batches import CHUNK_LINES, CSV, JSONL, BatchInfo, BatchLine, LineError, StoredChunk
from domain.ids import account_id_for
from infrastructure.batch_files import LINE_BYTES_MAX, InvalidBatch, LineChunker, check_csv_header, parse_chunk
from tests.support.batch_files import BAD_LINES, HEADER

TENANT = uuid4()


def _batch(format_: str = CSV, header: bytes = HEADER.strip().encode()) -> BatchInfo:
    return BatchInfo(uuid4(), TENANT, "atomic", format_, header, "processing", "validating", 0, 1, 1, 0, 0, 0)


def _parse(body: bytes, format_: str = CSV, first_line: int = 2) -> list[BatchLine | LineError]:
    return parse_chunk(StoredChunk(0, first_line, body), _batch(format_))


def _chunks(data: bytes, piece: int, *, has_header: bool = True) -> tuple[LineChunker, list]:
    chunker = LineChunker(has_header=has_header)
    chunks = []
    for start in range(0, len(data), piece):
        chunks += list(chunker.feed(data[start:start + piece]))
    chunks += list(chunker.close())
    return chunker, chunks


@pytest.mark.parametrize("piece", [1, 7, 4096, 10**7])
def test_chunks_hold_whole_lines_and_their_line_numbers(piece: int) -> None:
    lines = [f"l{i}\n".encode() for i in range(2 * CHUNK_LINES + 5)]
    chunker, chunks = _chunks(b"head\n" + b"".join(lines), piece)
    assert chunker.header == b"head"
    assert [c.first_line for c in chunks] == [2, 2 + CHUNK_LINES, 2 + 2 * CHUNK_LINES]
    assert b"".join(c.body for c in chunks) == b"".join(lines)
    assert chunker.line_count == len(lines) and chunker.chunk_count == 3


def test_a_last_line_without_newline_is_kept() -> None:
    chunker, chunks = _chunks(b"a\nb", 1, has_header=False)
    assert [c.body for c in chunks] == [b"a\nb\n"] and chunker.line_count == 2


def test_an_overlong_line_is_refused_without_buffering_it_all() -> None:
    chunker = LineChunker(has_header=False)
    with pytest.raises(InvalidBatch):
        list(chunker.feed(b"x" * (LINE_BYTES_MAX + 10)))


def test_csv_lines_name_accounts_by_code_or_id() -> None:
    account = uuid4()
    [line] = _parse(f"t-1,2026-11-23,cash=10.00;{account}=-10.00,Invoice\n".encode())
    assert isinstance(line, BatchLine)
    assert (line.line_no, line.external_id, line.effective_date, line.description) == (
        2, "t-1", date(2026, 11, 23), "Invoice")
    assert [p.account_id for p in line.postings] == [account_id_for(TENANT, "cash"), account]
    assert [p.amount for p in line.postings] == ["10.00", "-10.00"]


def test_jsonl_lines() -> None:
    body = (b'{"external_id": "t-1", "effective_date": "2026-11-23", "metadata": {"k": "v"}, '
            b'"postings": [{"account": "cash", "amount": "1.50", "currency": "BRL"}, '
            b'{"account": "sales", "amount": "-1.50"}]}\n\n')
    [line] = _parse(body, JSONL, first_line=1)
    assert isinstance(line, BatchLine) and line.metadata == {"k": "v"} and line.postings[0].currency == "BRL"


@pytest.mark.parametrize(("code", "raw"), [(code, raw) for code, raw in BAD_LINES.items()
                                           if code in ("invalid_date", "malformed_csv", "invalid_encoding",
                                                       "invalid_amount")])
def test_bad_csv_lines_are_explained_before_the_ledger_sees_them(code: str, raw: bytes) -> None:
    [result] = _parse(raw)
    if code == "invalid_amount":  # a well-formed line: the ledger judges the amount
        assert isinstance(result, BatchLine)
        return
    assert isinstance(result, LineError) and (result.line_no, result.code) == (2, code)


@pytest.mark.parametrize(("raw", "code"), [
    (b"[1, 2]", "malformed_json_line"),
    (b"{nope", "malformed_json_line"),
    (b'{"external_id": "t", "effective_date": "2026-11-23", "postings": [], "extra": 1}', "malformed_json_line"),
    (b'{"effective_date": "2026-11-23", "postings": []}', "missing_field"),
    (b'{"external_id": "t", "effective_date": "23/11/2026", "postings": []}', "invalid_date"),
    (b'{"external_id": "t", "effective_date": "2026-11-23", "postings": [{"account": "a", "amount": 1.5}]}',
     "invalid_amount"),
])
def test_bad_jsonl_lines(raw: bytes, code: str) -> None:
    [result] = _parse(raw + b"\n", JSONL)
    assert isinstance(result, LineError) and result.code == code


def test_csv_lines_need_as_many_fields_as_the_header() -> None:
    [result] = _parse(b"t-1,2026-11-23\n")
    assert isinstance(result, LineError) and result.code == "malformed_csv"


@pytest.mark.parametrize("header", [b"external_id,postings", b"external_id,effective_date,postings,color",
                                    b"external_id,external_id,effective_date,postings", b"\xff\xfe"])
def test_bad_csv_headers_refuse_the_file(header: bytes) -> None:
    with pytest.raises(InvalidBatch):
        check_csv_header(header)


def test_a_bom_and_spaces_in_the_header_are_fine() -> None:
    assert check_csv_header("\ufeffExternal_ID, effective_date ,postings".encode()) == [
        "external_id", "effective_date", "postings"]


def test_equal_lines_have_equal_content_keys_whatever_the_amount_spelling() -> None:
    a, b, c = _parse(b"t-1,2026-11-23,cash=10.0;sales=-10,x\nt-2,2026-11-23,cash=10.00;sales=-10.00,x\n"
                     b"t-3,2026-11-23,cash=10.00;sales=-10.00,y\n")
    assert isinstance(a, BatchLine) and isinstance(b, BatchLine) and isinstance(c, BatchLine)
    assert a.content_key == b.content_key != c.content_key
    assert isinstance(UUID(str(a.postings[0].account_id)), UUID)
