"""One database URL, understood by both the event store and SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from infrastructure.errors import ConfigError

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}
# Query parameters Invario sets itself: in the URL they would be silently overridden.
_MANAGED = {
    "host": "the URL's host", "hostaddr": "the URL's host", "port": "the URL's port", "user": "the URL's user",
    "password": "the URL's password", "passfile": "the URL's password", "dbname": "the URL's path",
    "connect_timeout": "INVARIO_DB_CONNECT_TIMEOUT_SECONDS", "keepalives": "INVARIO_DB_TCP_TIMEOUT_SECONDS",
    "keepalives_idle": "INVARIO_DB_TCP_TIMEOUT_SECONDS", "keepalives_interval": "INVARIO_DB_TCP_TIMEOUT_SECONDS",
    "keepalives_count": "INVARIO_DB_TCP_TIMEOUT_SECONDS", "tcp_user_timeout": "INVARIO_DB_TCP_TIMEOUT_SECONDS",
    "options": "INVARIO_DB_STATEMENT_TIMEOUT_SECONDS",
    "application_name": "Invario for each process (invario-serve, invario-worker, ...)",
}
# libpq checks these values only when it connects; a typo must not wait until then.
_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
}


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed ``INVARIO_DATABASE_URL``: either a SQLite file or a PostgreSQL database."""

    kind: str  # "sqlite" | "postgres"
    path: Path | None = None
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    options: tuple[tuple[str, str], ...] = ()  # libpq parameters from the URL's query (sslmode, sslrootcert, ...)

    @classmethod
    def parse(cls, url: str) -> DatabaseURL:
        scheme, _, rest = url.partition("://")
        if scheme == "sqlite":
            return cls._parse_sqlite(url, rest)
        if scheme in _POSTGRES_SCHEMES:
            return cls._parse_postgres(url)
        raise ConfigError(
            f"INVARIO_DATABASE_URL {redact(url)!r} is not understood: use sqlite:///PATH "
            "or postgresql://USER@HOST:PORT/DBNAME"
        )

    @classmethod
    def _parse_sqlite(cls, url: str, rest: str) -> DatabaseURL:
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise ConfigError(f"INVARIO_DATABASE_URL {url!r} needs a file path, e.g. sqlite:///./var/invario.db")
        return cls(kind="sqlite", path=Path(rest[1:]))

    @classmethod
    def _parse_postgres(cls, url: str) -> DatabaseURL:
        try:
            parts = urlsplit(url)
            port = parts.port or 5432
        except ValueError as exc:
            raise ConfigError(f"INVARIO_DATABASE_URL {redact(url)!r} is malformed: {exc}") from None
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname:
            raise ConfigError(f"INVARIO_DATABASE_URL {redact(url)!r} needs a host and a database name")
        return cls(
            kind="postgres",
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=dbname,
            options=_libpq_parameters(url, parts.query),
        )

    def libpq_options(self) -> dict[str, str]:
        """The URL's own libpq parameters, passed to every connection to it."""
        return dict(self.options)

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    def sqlalchemy_url(self) -> str:
        if self.kind == "sqlite":
            assert self.path is not None
            return f"sqlite:///{self.path}"
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg", self.user, self.password or None, self.host, self.port, self.dbname,
            query=self.libpq_options(),
        ).render_as_string(hide_password=False)

    def describe(self) -> str:
        """Where the data lives, safe to print (never the password)."""
        if self.kind == "sqlite":
            return f"SQLite file {self.path}"
        return f"PostgreSQL {self.user}@{self.host}:{self.port}/{self.dbname}"


def _libpq_parameters(url: str, query: str) -> tuple[tuple[str, str], ...]:
    """The query's libpq parameters, each checked: a parameter dropped or mistyped could
    turn ``sslmode=require`` into a plaintext connection without a word."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"INVARIO_DATABASE_URL {redact(url)!r} has a malformed query string") from None
    for key, value in pairs:
        if key in _MANAGED:
            raise ConfigError(f"INVARIO_DATABASE_URL: {key} cannot be a query parameter: it is set by {_MANAGED[key]}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"INVARIO_DATABASE_URL: {key}={value!r} is not one of {', '.join(_CHOICES[key])}")
        try:
            conninfo_to_dict(make_conninfo("", **{key: value}))
        except ProgrammingError:
            raise ConfigError(f"INVARIO_DATABASE_URL: {key} is not a PostgreSQL connection parameter") from None
    if len({key for key, _value in pairs}) != len(pairs):
        raise ConfigError("INVARIO_DATABASE_URL names a query parameter twice")
    return tuple(pairs)


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
