"""The soak's fault schedule (tests/soak/schedule.py): drawn from the seed alone, and bounded by the run."""

from __future__ import annotations

from tests.soak.schedule import NETWORK_KINDS, PROCESS_KINDS, QUIET_END_SECONDS, QUIET_START_SECONDS, plan_faults


def test_a_seed_replays_the_same_schedule_and_another_seed_does_not() -> None:
    assert plan_faults(1234, 60) == plan_faults(1234, 60)
    assert plan_faults(1234, 60) != plan_faults(1235, 60)


def test_every_fault_is_healed_before_the_clients_stop() -> None:
    for seed in range(50):
        for fault in plan_faults(seed, 60):
            assert QUIET_START_SECONDS < fault.at
            assert fault.at + fault.length <= 60 - QUIET_END_SECONDS


def test_the_lanes_do_not_overlap_themselves_but_may_overlap_each_other() -> None:
    faults = plan_faults(7, 1800)
    for database_lane in (True, False):
        lane = [f for f in faults if (f.target == "database") == database_lane]
        assert all(earlier.at + earlier.length <= later.at for earlier, later in zip(lane, lane[1:]))
    kinds = {f.kind for f in faults}
    assert kinds == set(NETWORK_KINDS) | set(PROCESS_KINDS)  # a 30-minute run draws every kind
    assert {f.target for f in faults} == {"database", "serve", "worker"}


def test_a_run_too_short_for_a_fault_has_none() -> None:
    assert plan_faults(1, QUIET_START_SECONDS + QUIET_END_SECONDS) == []
