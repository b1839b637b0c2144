"""Settings, read once from the environment (prefix ``INVARIO_``) by pydantic-settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./var/invario.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVARIO_", extra="ignore", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="sqlite:///PATH (embedded default) or postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP API listens on")
    port: int = Field(8000, ge=1, le=65535, description="Port the HTTP API listens on")
    db_connect_timeout_seconds: int = Field(5, ge=1, le=60, description="Bound on connecting to the database")
    db_pool_size: int = Field(5, ge=1, le=100, description="PostgreSQL connections per process")
    db_lock_timeout_seconds: int = Field(5, ge=0, le=300, description="Bound on waiting for the event table lock")
    aggregate_cache_size: int = Field(10_000, ge=0, le=1_000_000, description="Aggregates kept hot in memory")
    follower_batch_size: int = Field(500, ge=1, le=10_000, description="Events a follower handles per commit")
    follower_poll_seconds: float = Field(0.5, gt=0, le=60, description="How often followers poll the log")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; a bad value is a one-line ``ConfigError``."""
    from infrastructure.errors import ConfigError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"INVARIO_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(problems) from None
