"""Checking the configuration: every ``INVARIO_*`` setting, its source, and whether it is safe.

``check_environment()`` reports each setting of the one ``Settings`` class
(value, source, OK/WARN/ERROR) for ``invario check-config``; ``template()``
writes a commented env file generated from the same class, so neither can drift
from the code. ``unsafe_to_serve()`` is the rule ``invario serve`` refuses to start
on (docs/failure-modes.md, "Configuration"):

- PostgreSQL without ``INVARIO_AUTH_PEPPER`` (only the embedded SQLite store
  generates one, beside its database file);
- a secret (auth pepper, admin token, signing key) that is set but weak: shorter
  than 32 characters, a placeholder (``changeme``, ``example``...), or of low
  entropy (few distinct characters, repetitive);
- the admin token equal to the auth pepper.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from infrastructure.database import DatabaseURL, redact
from infrastructure.errors import ConfigError
from infrastructure.settings import DEFAULT_DATABASE_URL, SECRET_LENGTH_MIN, Settings

PREFIX = "INVARIO_"
SECRET_BITS_MIN = 100  # estimated from the characters' frequencies; token_urlsafe(32) has ~190
DISTINCT_CHARACTERS_MIN = 10
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me",
                     "example", "placeholder", "password", "your-secret", "yoursecret", "insecure", "dummy",
                     "xxxxxxxx", "secretsecret")
GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"

OK, WARN, ERROR = "OK", "WARN", "ERROR"


@dataclass(frozen=True)
class Finding:
    """One setting as ``check-config`` reports it; ``shown`` never holds a secret."""

    name: str
    shown: str
    source: str  # "environment" | "default"
    status: str  # OK | WARN | ERROR
    note: str = ""


def setting_fields() -> list[tuple[str, FieldInfo]]:
    """``(INVARIO_NAME, field)`` of every setting, in declaration order."""
    return [(PREFIX + name.upper(), info) for name, info in Settings.model_fields.items()]


def _is_secret(info: FieldInfo) -> bool:
    return "SecretStr" in repr(info.annotation)


# --- secrets -------------------------------------------------------------------------------------------


def secret_weakness(secret: str) -> str | None:
    """Why ``secret`` is too weak to protect the ledger, or ``None``."""
    if len(secret) < SECRET_LENGTH_MIN:
        return f"is shorter than {SECRET_LENGTH_MIN} characters"
    lowered = secret.lower()
    placeholder = next((word for word in PLACEHOLDER_WORDS if word in lowered), None)
    if placeholder is not None:
        return f"looks like a placeholder (contains {placeholder!r})"
    counts = Counter(secret)
    bits = sum(n * math.log2(len(secret) / n) for n in counts.values())
    if len(counts) < DISTINCT_CHARACTERS_MIN or bits < SECRET_BITS_MIN:
        return f"has low entropy (about {bits:.0f} bits from {len(counts)} distinct characters; want {SECRET_BITS_MIN}+)"
    return None


def _signing_key_weakness(secret: str) -> str | None:
    try:
        seed = base64.b64decode(secret.strip() + "=" * (-len(secret.strip()) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        return "is not base64 (generate one: invario generate-signing-key)"
    if len(seed) != 32:
        return f"decodes to {len(seed)} bytes, not 32 (generate one: invario generate-signing-key)"
    if len(set(seed)) < 16:
        return "has low entropy (fewer than 16 distinct bytes; generate one: invario generate-signing-key)"
    return None


def _secret(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(PREFIX + name, "")
    return value or None


def secret_problems(environ: Mapping[str, str]) -> dict[str, str]:
    """``INVARIO_NAME -> problem`` for the secrets that are missing where required, or weak."""
    problems: dict[str, str] = {}
    url = environ.get(PREFIX + "DATABASE_URL", "") or DEFAULT_DATABASE_URL
    pepper, admin = _secret(environ, "AUTH_PEPPER"), _secret(environ, "ADMIN_TOKEN")
    if pepper is None and url.split(":", 1)[0].startswith("postgres"):
        problems[PREFIX + "AUTH_PEPPER"] = (
            f"INVARIO_AUTH_PEPPER is not set: the API needs a secret of at least {SECRET_LENGTH_MIN} characters "
            f"to protect API keys on PostgreSQL (generate one: {GENERATE_HINT})"
        )
    for name, value in (("AUTH_PEPPER", pepper), ("ADMIN_TOKEN", admin)):
        weakness = secret_weakness(value) if value is not None else None
        if weakness is not None:
            problems[PREFIX + name] = f"INVARIO_{name} {weakness} (generate one: {GENERATE_HINT})"
    if admin is not None and admin == pepper:
        problems[PREFIX + "ADMIN_TOKEN"] = "INVARIO_ADMIN_TOKEN must differ from INVARIO_AUTH_PEPPER"
    signing_key = _secret(environ, "SIGNING_KEY")
    weakness = _signing_key_weakness(signing_key) if signing_key is not None else None
    if weakness is not None:
        problems[PREFIX + "SIGNING_KEY"] = f"INVARIO_SIGNING_KEY {weakness}"
    return problems


def unsafe_to_serve(environ: Mapping[str, str] | None = None) -> None:
    """Raise one ``ConfigError`` naming every reason the API must not start with these settings."""
    problems = secret_problems(os.environ if environ is None else environ)
    if problems:
        raise ConfigError("refusing to start: " + "; ".join(problems.values()))


# --- the report ------------------------------------------------------------------------------------------


def _validation_errors() -> dict[str, str]:
    """``INVARIO_NAME -> message`` of every value ``Settings`` rejects, read as the service reads them."""
    errors: dict[str, str] = {}
    try:
        Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = PREFIX + "_".join(str(part) for part in error["loc"]).upper()
            errors.setdefault(name, error["msg"])
    return errors


_URLS_WITH_PASSWORDS = (PREFIX + "DATABASE_URL", PREFIX + "RELAY_NATS_URL", PREFIX + "RELAY_AMQP_URL")


def _shown(name: str, info: FieldInfo, raw: str | None) -> str:
    if _is_secret(info):
        return f"set ({len(raw)} characters, hidden)" if raw else "not set"
    if raw is None:
        return _default_text(info)
    return redact(raw) if name in _URLS_WITH_PASSWORDS else raw


def _default_text(info: FieldInfo) -> str:
    default = info.default
    if default is PydanticUndefined or default is None:
        return ""
    if isinstance(default, SecretStr):
        return ""
    return str(default)


def _notes(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Warnings that do not stop the service: ``INVARIO_NAME -> (WARN, note)``."""
    notes: dict[str, tuple[str, str]] = {}
    url = environ.get(PREFIX + "DATABASE_URL", "") or DEFAULT_DATABASE_URL
    try:
        database = DatabaseURL.parse(url)
    except ConfigError as exc:
        notes[PREFIX + "DATABASE_URL"] = (ERROR, str(exc))
        database = None
    if not _secret(environ, "AUTH_PEPPER") and database is not None and not database.is_postgres:
        notes[PREFIX + "AUTH_PEPPER"] = (OK, "generated beside the SQLite file on the first 'invario serve'")
    if not _secret(environ, "ADMIN_TOKEN"):
        notes[PREFIX + "ADMIN_TOKEN"] = (WARN, "the /admin routes are disabled")
    if not _secret(environ, "SIGNING_KEY"):
        notes[PREFIX + "SIGNING_KEY"] = (WARN, "no signed digests (invario generate-signing-key)")
    if database is not None and database.is_postgres and _number(environ, "DB_STATEMENT_TIMEOUT_SECONDS") == 0:
        notes[PREFIX + "DB_STATEMENT_TIMEOUT_SECONDS"] = (
            WARN, "the API's statements are unbounded: a stuck one holds its request and its connection")
    host = environ.get(PREFIX + "HOST", "127.0.0.1")
    if database is not None and not database.is_postgres and not _loopback(host):
        notes[PREFIX + "HOST"] = (WARN, f"{host} is reachable from other machines, but the SQLite store is "
                                  "meant for development")
    return notes


def _number(environ: Mapping[str, str], name: str) -> float | None:
    try:
        return float(environ[PREFIX + name])
    except (KeyError, ValueError):
        return None


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def check_environment() -> list[Finding]:
    """Every setting as ``invario check-config`` reports it, then any unknown ``INVARIO_*`` variable."""
    environ = os.environ
    errors = {**_validation_errors(), **secret_problems(environ)}
    notes = _notes(environ)
    findings = []
    fields = setting_fields()
    for name, info in fields:
        raw = environ.get(name)
        source = "environment" if raw is not None else "default"
        status, note = notes.get(name, (OK, ""))
        if name in errors:
            status, note = ERROR, errors[name]
        findings.append(Finding(name, _shown(name, info, raw), source, status, note))
    known = {name for name, _ in fields}
    for name in sorted(key for key in environ if key.startswith(PREFIX) and key not in known):
        findings.append(Finding(name, "", "environment", WARN, "not a setting of this version (a typo?)"))
    return findings


# --- the template ---------------------------------------------------------------------------------------


def _bounds(info: FieldInfo) -> str:
    limits = {}
    for item in info.metadata:
        for attribute in ("ge", "gt", "le", "lt"):
            value = getattr(item, attribute, None)
            if value is not None:
                limits[attribute] = value
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return ", ".join(f"{symbols[key]} {value}" for key, value in limits.items())


def template() -> str:
    """A commented env file with every setting, its description, bounds and default."""
    lines = ["# Invario settings (environment variables). Generated by 'invario check-config --template'.",
             "# Uncomment and change what you need; 'invario check-config' validates the result.", ""]
    for name, info in setting_fields():
        lines.append(f"# {info.description or ''}".rstrip())
        facts = [fact for fact in (_allowed(info), _bounds(info)) if fact]
        if _is_secret(info):
            facts.append(f"secret: never commit it; generate one: {GENERATE_HINT}"
                         if name != PREFIX + "SIGNING_KEY" else "secret: generate one: invario generate-signing-key")
        if facts:
            lines.append("# " + "; ".join(facts))
        lines.append(f"#{name}={_default_text(info)}")
        lines.append("")
    return "\n".join(lines)


def _allowed(info: FieldInfo) -> str:
    arguments: Any = getattr(info.annotation, "__args__", None)
    if arguments and all(isinstance(argument, str) for argument in arguments):
        return "one of " + ", ".join(arguments)
    return ""
