"""Responses and the headers they carry: the log position (read your writes) and
the version (ETag / If-Match)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from interfaces.http.problems import ApiProblem
from interfaces.http.services import runtime_of

POSITION_HEADER = "Invario-Position"
_IF_MATCH = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')

IfMatch = Annotated[str | None, Header(
    alias="If-Match", max_length=64, description='The ETag (version) your change is based on, e.g. "3"; stale: 409',
)]
MinPosition = Annotated[int | None, Query(
    ge=0, le=2**62,
    description="Read your writes: wait (boundedly) until the read models reflect this log position, "
    "as returned by a command (`position`, header Invario-Position)",
)]


# --- read your writes -------------------------------------------------------------------


def await_position(request: Request, read_model: Any, min_position: int | None) -> None:
    """Wait until ``read_model`` reflects ``min_position`` (at most INVARIO_READ_WAIT_SECONDS)."""
    if min_position is None or min_position == 0:
        return
    runtime = runtime_of(request)
    head = runtime.ledger.recorder.max_notification_id() or 0
    if min_position > head:
        raise ApiProblem(400, "position_not_recorded", f"no event has been recorded at position {min_position}",
                         head_position=head)
    if not read_model.wait_for(min_position, runtime.settings.read_wait_seconds):
        raise ApiProblem(503, "read_model_behind", f"the read models have not reached position {min_position} yet",
                         headers={"Retry-After": "1"})


# --- versions ---------------------------------------------------------------------------


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    match = _IF_MATCH.match(if_match.strip())
    if match is None:
        raise ApiProblem(400, "invalid_if_match", 'If-Match must be one ETag as returned, e.g. "3"')
    return int(match.group(1))


# --- responses --------------------------------------------------------------------------


def respond(body: BaseModel, status: int = 200, *, version: int | None = None,
            location: str | None = None) -> Response:
    headers = {POSITION_HEADER: str(getattr(body, "position", 0))}
    if version is not None:
        headers["ETag"] = etag(version)
    if location is not None:
        headers["Location"] = location
    # Serialised by pydantic-core in one pass: the same bytes as JSONResponse(model_dump(mode="json")),
    # a tenth of the CPU (a 1,000-item batch answer: ~8 ms instead of ~100 ms, inside its commit).
    return Response(body.model_dump_json(), status_code=status, headers=headers, media_type="application/json")
