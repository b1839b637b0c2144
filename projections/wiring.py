"""Which followers a process runs, built from an opened runtime."""

from __future__ import annotations

from infrastructure.bootstrap import Runtime
from projections.follower import Follower, FollowerGroup
from projections.global_chain import GlobalChainProjection
from projections.hold_expiry import HoldExpiry
from projections.integrity import IntegrityVerifier
from projections.registry import READ_MODELS_GROUP, read_model_projections


def build_followers(runtime: Runtime) -> list[FollowerGroup | IntegrityVerifier | HoldExpiry]:
    """The global chain on its own, and the read models moving together in one group.

    The group leaves a projection alone while a rebuild in another process is
    actively replaying it (see ``projections.rebuild``). The integrity verifier
    comes last: it verifies what the global chain follower has just chained.
    """
    batch_size = runtime.settings.follower_batch_size
    return [
        Follower(runtime.ledger, runtime.engine, GlobalChainProjection(), batch_size),
        build_read_models_group(runtime, batch_size, defer_to_rebuilds=True),
        IntegrityVerifier(runtime.ledger, runtime.engine, batch_size),
        HoldExpiry(runtime.ledger, runtime.engine),  # voids holds past their deadline (docs/holds.md)
    ]


def build_read_models_group(runtime: Runtime, batch_size: int, *, defer_to_rebuilds: bool) -> FollowerGroup:
    return FollowerGroup(
        runtime.ledger,
        runtime.engine,
        read_model_projections(),
        batch_size,
        name=READ_MODELS_GROUP,
        defer_to_rebuilds=defer_to_rebuilds,
    )
