"""The HTTP layer's pure pieces: the one error table, problem documents, If-Match, validation codes."""

from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError

from domain import errors
from infrastructure import batch_files
from interfaces.http.responses import expected_version
from interfaces.http.problems import (
    STATUS_BY_ERROR,
    ApiProblem,
    ledger_error_parts,
    problem_response,
    status_for,
    title_for,
    validation_problem,
)


def _ledger_errors() -> list[type[errors.LedgerError]]:
    # The domain's, and the batch file reader's (its file-format errors).
    return [c for module in (errors, batch_files) for c in vars(module).values()
            if isinstance(c, type) and issubclass(c, errors.LedgerError) and c is not errors.LedgerError]


def test_every_business_rejection_has_exactly_one_status() -> None:
    missing = [c.__name__ for c in _ledger_errors() if c not in STATUS_BY_ERROR]
    assert not missing, f"add these to interfaces/http/problems.py STATUS_BY_ERROR: {missing}"
    assert all(400 <= status < 500 for status in STATUS_BY_ERROR.values())


@pytest.mark.parametrize(("error", "status"), [
    (errors.TransactionUnbalanced("x"), 422), (errors.AmountPrecisionExceeded("x"), 422),
    (errors.AccountNotFound("x"), 404), (errors.TenantSuspended("x"), 403), (errors.VersionMismatch("x"), 409),
    (errors.InvalidApiKey("x"), 401), (errors.ScopeNotGranted("x"), 403), (errors.DuplicateExternalId("x"), 409),
])
def test_statuses(error: errors.LedgerError, status: int) -> None:
    assert status_for(error) == status


def test_a_problem_document_has_the_rfc_9457_members_and_the_details() -> None:
    status, code, detail, details, headers = ledger_error_parts(
        errors.AccountAlreadyExists("account code cash is already in use", code="cash"))
    response = problem_response(status, code, detail, instance="/v1/accounts", request_id="r1",
                                headers=headers, extensions=details)
    body = json.loads(response.body)
    assert response.media_type == "application/problem+json" and response.status_code == 409
    assert body == {"type": "urn:invario:problem:account_already_exists", "title": "Account already exists",
                    "status": 409, "detail": "account code cash is already in use", "code": "account_already_exists",
                    "instance": "/v1/accounts", "request_id": "r1", "account_code": "cash"}
    assert ledger_error_parts(errors.InvalidApiKey("x"))[4]["WWW-Authenticate"].startswith("Bearer")
    assert title_for("invalid_api_key") == "Invalid API key"


def test_validation_errors_get_codes_and_never_echo_input() -> None:
    def problem(*items: dict[str, object]) -> ApiProblem:
        return validation_problem(RequestValidationError(list(items)))

    secret = {"input": "inv_live_secret"}
    assert problem({"type": "extra_forbidden", "loc": ("body", "x"), "msg": "Extra", **secret}).code == "unknown_field"
    assert problem({"type": "missing", "loc": ("body", "postings"), "msg": "Field required"}).code == "missing_field"
    assert problem({"type": "json_invalid", "loc": ("body", 3), "msg": "JSON decode error"}).code == "malformed_json"
    mixed = problem({"type": "missing", "loc": ("body", "a"), "msg": "m"},
                    {"type": "int_type", "loc": ("q",), "msg": "n"})
    assert mixed.code == "invalid_request" and mixed.status == 400
    assert "inv_live_secret" not in json.dumps(mixed.extensions) + mixed.detail


@pytest.mark.parametrize(("header", "version"), [
    (None, None), ("*", None), ('"3"', 3), ('W/"12"', 12), ("7", 7), (' "4" ', 4),
])
def test_if_match(header: str | None, version: int | None) -> None:
    assert expected_version(header) == version


@pytest.mark.parametrize("header", ['"a"', '"1", "2"', "", '"' + "9" * 30 + '"'])
def test_malformed_if_match_is_400(header: str) -> None:
    with pytest.raises(ApiProblem) as raised:
        expected_version(header)
    assert (raised.value.status, raised.value.code) == (400, "invalid_if_match")
