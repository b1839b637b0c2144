"""Structured logs: one JSON object per line on stdout, rendered by structlog.

``configure_logging(level, fmt)`` is called once by ``invario serve`` and
``invario worker`` (never at import time). It puts one handler on the root
logger whose ``structlog.stdlib.ProcessorFormatter`` renders every record of
the process the same way: Invario's own (stdlib ``logging`` calls, which name
their event with ``extra={"event": ...}``), structlog's, and those of
libraries, uvicorn's access and error logs included. So there is one pipeline
and no second format to grep for.

Every line has ``timestamp`` (UTC, ISO 8601), ``level``, ``event``,
``logger``, and within a request ``correlation_id`` (the ``X-Request-ID``),
``tenant`` (once authenticated) and ``trace_id``/``span_id`` (OpenTelemetry).
Fields whose names say they hold a secret are replaced by ``"[redacted]"``: a
safety net, since callers never pass secrets in the first place.

``INVARIO_LOG_FORMAT=console`` renders the same fields readably for a terminal.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Any, TextIO

import orjson
import structlog

from infrastructure.correlation import install_log_record_factory, request_facts, request_id

JSON = "json"
CONSOLE = "console"
REDACTED = "[redacted]"
_SECRET_FIELD = re.compile(r"(authorization|password|passwd|secret|token|pepper|api_?key|signing_key)", re.I)
# What a LogRecord carries by itself; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "taskName"}
_UVICORN_ACCESS = "uvicorn.access"
_DROPPED = frozenset({"color_message"})  # uvicorn's copy of the message with terminal colours


def _request_context(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Who and what the line is about: correlation id, tenant, trace."""
    from infrastructure.telemetry import current_trace_ids

    record = event_dict.get("_record")
    correlation = getattr(record, "request_id", None) if record is not None else None
    correlation = correlation if correlation not in (None, "-") else request_id.get()
    if correlation:
        event_dict.setdefault("correlation_id", correlation)
    facts = request_facts.get()
    if facts is not None and facts.tenant:
        event_dict.setdefault("tenant", facts.tenant)
    ids = current_trace_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def _stdlib_fields(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A stdlib record's ``extra=`` fields; its ``event`` extra names the event, the text becomes ``message``."""
    record = event_dict.get("_record")
    if record is None or event_dict.get("_from_structlog"):
        return event_dict
    event_dict["logger"] = record.name
    args = event_dict.pop("positional_args", None)
    if record.name == _UVICORN_ACCESS and isinstance(args, tuple) and len(args) == 5:
        client, method, path, _version, status = args
        event_dict.update(message=event_dict["event"], event="http_access", client=client, method=method,
                          path=path, status=status)
        return event_dict
    extras = {k: v for k, v in record.__dict__.items()
              if k not in _RECORD_FIELDS and k not in _DROPPED and not k.startswith("_")}
    name = extras.pop("event", None)
    if name:
        # Text lines often start with their event's name ("integrity_check_failed: ..."): say it once.
        message = str(event_dict["event"]).removeprefix(f"{name}: ")
        if message != name:
            event_dict["message"] = message
        event_dict["event"] = name
    for key, value in extras.items():
        event_dict.setdefault(key, value)
    return event_dict


@functools.lru_cache(maxsize=1024)  # a line's keys are mostly the same few dozen names
def _names_a_secret(key: str) -> bool:
    return _SECRET_FIELD.search(key) is not None


def _redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if _names_a_secret(key) and event_dict[key] is not None:
            event_dict[key] = REDACTED
    return event_dict


def _json_line(event_dict: dict[str, Any], **_options: Any) -> str:
    """orjson, about five times faster than json.dumps on a log line (two lines per write);
    ``str()`` of what it cannot encode, as the json module was configured to do."""
    try:
        return orjson.dumps(event_dict, default=str).decode()
    except TypeError:  # a key that is not a string, or an integer beyond 64 bits
        import json

        return json.dumps(event_dict, default=str)


def _shared_processors() -> list[Any]:
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _stdlib_fields,
        _request_context,
        _redact,
    ]


def _renderer(fmt: str) -> Any:
    if fmt == CONSOLE:
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer(serializer=_json_line)


class CurrentStream(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is when the line is written:
    test runners swap them."""

    def __init__(self, name: str = "stdout") -> None:
        assert name in ("stdout", "stderr"), name
        self._stream_name = name
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: str = JSON, stream: TextIO | None = None) -> logging.Handler:
    """Route every log record of the process through structlog to one line on ``stream`` (stdout).

    Replaces the root logger's handlers; returns the new handler (tests remove it).
    """
    install_log_record_factory()
    # No line shows the caller's file and line, so skip the stack walk that finds them
    # (the logging HOWTO's "Optimization" section).
    logging._srcfile = None  # noqa: SLF001
    shared = _shared_processors()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        pass_foreign_args=True,  # uvicorn's access line: its fields are the record's arguments
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
    )
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else CurrentStream("stdout")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers keep no handlers of their own (serve passes log_config=None): they reach this one.
    for name in ("uvicorn", "uvicorn.error", _UVICORN_ACCESS):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler
