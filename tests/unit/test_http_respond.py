"""``respond`` serialises with pydantic-core: byte for byte what JSONResponse wrote before.

Stored idempotent responses and clients' signatures over bodies must not notice the change."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from interfaces.http.responses import respond


class Sample(BaseModel):
    id: UUID
    text: str
    metadata: dict[str, str]
    day: date
    at: datetime
    count: int


@given(st.text(), st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3), st.integers(-2**63, 2**63))
def test_respond_writes_the_bytes_jsonresponse_wrote(text: str, metadata: dict[str, str], count: int) -> None:
    body = Sample(id=UUID(int=7), text=text, metadata=metadata, day=date(2026, 12, 7),
                  at=datetime(2026, 12, 7, 15, 30, 1, 250, tzinfo=UTC), count=count)
    before = json.dumps(body.model_dump(mode="json"), ensure_ascii=False, allow_nan=False, indent=None,
                        separators=(",", ":")).encode("utf-8", errors="surrogatepass")
    response = respond(body, 201, version=3, location="/v1/x")
    assert response.body == before
    assert response.status_code == 201 and response.headers["content-type"] == "application/json"
    assert response.headers["etag"] == '"3"' and response.headers["location"] == "/v1/x"
