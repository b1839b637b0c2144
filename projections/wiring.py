"""Which followers a process runs, built from an opened runtime."""

from __future__ import annotations

from infrastructure.bootstrap import Runtime
from projections.follower import Follower
from projections.global_chain import GlobalChainProjection


def build_followers(runtime: Runtime) -> list[Follower]:
    batch_size = runtime.settings.follower_batch_size
    return [Follower(runtime.ledger, runtime.engine, GlobalChainProjection(), batch_size)]
