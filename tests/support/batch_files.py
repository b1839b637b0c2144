"""Batch files for the tests: many good lines and bad lines of every kind."""

from __future__ import annotations

from dataclasses import dataclass

HEADER = "external_id,effective_date,postings,description\n"
DAY = "2026-11-23"


def good_line(i: int, amount: str = "10.00") -> str:
    return f"tx-{i},{DAY},cash={amount};sales=-{amount},Invoice {i}\n"


# Each bad line of a CSV file, and the code it is rejected with.
BAD_LINES: dict[str, bytes] = {
    "transaction_unbalanced": f"bad-unbalanced,{DAY},cash=10.00;sales=-9.00,x\n".encode(),
    "account_not_found": f"bad-account,{DAY},cash=10.00;no-such-account=-10.00,x\n".encode(),
    "invalid_amount": f"bad-amount,{DAY},cash=ten;sales=-10.00,x\n".encode(),
    "invalid_date": "bad-date,2026-02-30,cash=10.00;sales=-10.00,x\n".encode(),
    "duplicate_external_id": f"tx-0,{DAY},cash=99.00;sales=-99.00,other content\n".encode(),
    "malformed_csv": f'bad-csv,{DAY},"cash=10.00;sales=-10.00,x\n'.encode(),
    "invalid_encoding": f"bad-encoding,{DAY},cash=10.00;sales=-10.00,caf\xe9\n".encode("latin-1"),
}


@dataclass(frozen=True)
class BatchFile:
    body: bytes
    good: int  # lines that post
    bad_lines: dict[int, str]  # line number -> expected code
    amount_minor: int  # what the good lines move into cash


def mixed_file(lines: int = 10_000, amount: str = "10.00") -> BatchFile:
    """``lines`` lines: good ones, with one bad line of each kind spread through the file."""
    bad_every = lines // (len(BAD_LINES) + 1)
    parts = [HEADER.encode()]
    bad_lines: dict[int, str] = {}
    good = 0
    kinds = iter(BAD_LINES.items())
    for index in range(lines):
        line_no = index + 2
        if index and index % bad_every == 0 and (kind := next(kinds, None)) is not None:
            bad_lines[line_no] = kind[0]
            parts.append(kind[1])
        else:
            parts.append(good_line(good, amount).encode())
            good += 1
    minor = int(amount.replace(".", ""))
    return BatchFile(b"".join(parts), good, bad_lines, good * minor)


def good_file(lines: int, start: int = 0, amount: str = "10.00") -> bytes:
    return (HEADER + "".join(good_line(start + i, amount) for i in range(lines))).encode()
