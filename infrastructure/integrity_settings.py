"""Settings of the integrity checks, read once from ``INVARIO_*`` like every other setting.

They are a class of their own so that the integrity feature can be configured
and tested without touching the core ``Settings``; the same rules apply (a bad
value is a one-line ``ConfigError``, secrets are ``SecretStr``).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntegritySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVARIO_", extra="ignore", frozen=True)

    signing_key: SecretStr | None = Field(
        None,
        description="Base64 of a 32-byte Ed25519 private key (seed) that signs digests of the global chain; "
        "never stored in the database (generate one: invario generate-signing-key)",
    )
    digest_interval_seconds: float = Field(
        3600.0, ge=0, le=7 * 86400, description="How often the worker signs and stores a digest (0: never)"
    )
    integrity_recheck_seconds: float = Field(
        30.0, gt=0, le=86400, description="While the chain is broken, how often the worker re-verifies it in full"
    )
    integrity_full_verify_seconds: float = Field(
        86400.0, ge=0, le=30 * 86400,
        description="How often the worker re-verifies the whole ledger while healthy (0: never)",
    )
    integrity_state_refresh_seconds: float = Field(
        1.0, gt=0, le=60, description="How stale a process's view of the shared integrity state may be"
    )
    health_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="Bound on the database checks of /health and /health/ready"
    )
    ready_max_lag: int = Field(
        1000, ge=0, le=10_000_000, description="Largest projection lag (events) at which /health/ready says ready"
    )


@lru_cache(maxsize=1)
def get_integrity_settings() -> IntegritySettings:
    """The process's integrity settings, read once; a bad value is a one-line ``ConfigError``."""
    from infrastructure.errors import ConfigError

    try:
        return IntegritySettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"INVARIO_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(problems) from None
