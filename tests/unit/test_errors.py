"""Error codes are public: each is unique and machine-readable."""

from __future__ import annotations

import re

from domain import errors
from infrastructure import batch_files


def _error_classes() -> list[type[errors.LedgerError]]:
    # The domain's, and the batch file reader's (its file-format errors): one space of public codes.
    classes = [c for module in (errors, batch_files) for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, errors.LedgerError)]
    return list(dict.fromkeys(classes))  # batch_files imports some of the domain's


def test_error_codes_are_unique() -> None:
    codes = [c.code for c in _error_classes()]
    assert len(codes) == len(set(codes))


def test_error_codes_are_snake_case() -> None:
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", c.code) for c in _error_classes())


def test_error_keeps_message_and_details() -> None:
    error = errors.InsufficientFunds("too little", account_id="a1")
    assert (str(error), error.message, error.details) == ("too little", "too little", {"account_id": "a1"})
