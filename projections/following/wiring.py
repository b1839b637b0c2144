"""Which followers a process runs, built from an opened runtime."""

from __future__ import annotations

from infrastructure.runtime import Runtime
from infrastructure.signing import SigningKey, load_signing_key
from projections.following.follower import Follower, FollowerGroup
from projections.jobs.global_chain import GlobalChainProjection
from projections.jobs.hold_expiry import HoldExpiry
from projections.jobs.integrity import IntegrityVerifier, VerifierSchedule
from projections.following.registry import READ_MODELS_GROUP, read_model_projections


def build_followers(runtime: Runtime) -> list[FollowerGroup | IntegrityVerifier | HoldExpiry]:
    """The global chain on its own, and the read models moving together in one group.

    The group leaves a projection alone while a rebuild in another process is
    actively replaying it (see ``projections.following.rebuild``). The integrity verifier
    comes last: it verifies what the global chain follower has just chained.
    """
    batch_size = runtime.settings.follower_batch_size
    return [
        Follower(runtime.ledger, runtime.engine, GlobalChainProjection(), batch_size),
        build_read_models_group(runtime, batch_size, defer_to_rebuilds=True),
        build_integrity_verifier(runtime, batch_size),
        HoldExpiry(runtime.ledger, runtime.engine),  # voids holds past their deadline (docs/holds.md)
    ]


def build_integrity_verifier(
    runtime: Runtime, batch_size: int, *, signing_key: SigningKey | None = None
) -> IntegrityVerifier:
    """The verifier with the runtime's intervals and signing key (INVARIO_SIGNING_KEY unless one is given)."""
    settings = runtime.settings
    if signing_key is None and settings.signing_key is not None:
        signing_key = load_signing_key(settings.signing_key.get_secret_value())
    schedule = VerifierSchedule(
        digest_interval_seconds=settings.digest_interval_seconds,
        recheck_seconds=settings.integrity_recheck_seconds,
        full_verify_seconds=settings.integrity_full_verify_seconds,
        state_refresh_seconds=settings.integrity_state_refresh_seconds,
    )
    return IntegrityVerifier(runtime.ledger, runtime.engine, batch_size, schedule=schedule, signing_key=signing_key)


def build_read_models_group(runtime: Runtime, batch_size: int, *, defer_to_rebuilds: bool) -> FollowerGroup:
    return FollowerGroup(
        runtime.ledger,
        runtime.engine,
        read_model_projections(),
        batch_size,
        name=READ_MODELS_GROUP,
        defer_to_rebuilds=defer_to_rebuilds,
    )
