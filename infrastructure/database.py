"""One database URL, understood by both the event store and SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from infrastructure.errors import ConfigError

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}


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
        )

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    def sqlalchemy_url(self) -> str:
        if self.kind == "sqlite":
            assert self.path is not None
            return f"sqlite:///{self.path}"
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg", self.user, self.password or None, self.host, self.port, self.dbname
        ).render_as_string(hide_password=False)

    def describe(self) -> str:
        """Where the data lives, safe to print (never the password)."""
        if self.kind == "sqlite":
            return f"SQLite file {self.path}"
        return f"PostgreSQL {self.user}@{self.host}:{self.port}/{self.dbname}"


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
