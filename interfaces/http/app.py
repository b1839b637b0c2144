"""The HTTP application: thin, it parses, calls the application and maps errors."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from infrastructure.bootstrap import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="Invario",
        version="0.1.0",
        description="Event-sourced, tamper-evident double-entry ledger.",
    )
    app.state.runtime = runtime

    @app.get("/health", tags=["operations"], summary="Liveness and database reachability")
    def health() -> JSONResponse:
        try:
            with runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            database = "ok"
        except Exception:  # noqa: BLE001 - any failure means the database is not usable
            database = "error"
        status = 200 if database == "ok" else 503
        body = {"status": "ok" if status == 200 else "error", "database": database}
        return JSONResponse(body, status_code=status)

    return app
