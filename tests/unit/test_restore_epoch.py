"""The restore epoch watch: when a change is a restore, what runs then, and which epoch a write carries."""

from __future__ import annotations

from infrastructure.backup import Session, describe_sessions
from infrastructure.restore_epoch import Epoch, RestoreEpochWatch


class Database:
    def __init__(self, epoch: Epoch) -> None:
        self.epoch = epoch
        self.reads = 0

    def read(self) -> Epoch:
        self.reads += 1
        return self.epoch


def watching(epoch: Epoch) -> tuple[Database, RestoreEpochWatch, list[str]]:
    database, heard = Database(epoch), []
    watch = RestoreEpochWatch(database.read, check_seconds=3600)
    watch.subscribe(lambda: heard.append(f"forget while {watch.known}"))
    watch.check()
    return database, watch, heard


def test_a_new_epoch_is_a_restore_and_the_listeners_run_before_it_is_known() -> None:
    database, watch, heard = watching(Epoch("one", 41))
    assert watch.check() is False and heard == []

    database.epoch = Epoch("two", 42)
    assert watch.check() is True
    assert heard == [f"forget while {Epoch('one', 41)}"]  # the old one was still known meanwhile
    assert watch.known == Epoch("two", 42)


def test_the_events_table_recreated_alone_is_a_restore_too() -> None:
    database, watch, heard = watching(Epoch("one", 41))
    database.epoch = Epoch("one", 99)  # pg_restore committed; the row is not replaced yet
    assert watch.check() is True and len(heard) == 1


def test_the_epoch_table_appearing_by_migration_is_not_a_restore() -> None:
    database, watch, heard = watching(Epoch(None, 41))
    database.epoch = Epoch("first", 41)
    assert watch.check() is False and heard == []
    assert watch.known == Epoch("first", 41)


def test_a_write_carries_the_epoch_its_batch_began_under() -> None:
    database, watch, _heard = watching(Epoch("one", 41))
    with watch.pinned():
        database.epoch = Epoch("two", 42)
        watch.check()  # noticed by another thread while the batch runs
        assert watch.expected() == Epoch("one", 41)  # its save is refused: it decided on the old state
        with watch.pinned():
            assert watch.expected() == Epoch("one", 41)
    assert watch.expected() == Epoch("two", 42)


def test_an_epoch_without_its_row_is_read_again_when_a_write_asks() -> None:
    database, watch, _heard = watching(Epoch(None, None))
    watch.check_seconds = 0  # due at once
    database.epoch = Epoch("migrated")
    assert watch.expected() == Epoch("migrated")
    reads = database.reads
    watch.check_seconds = 3600
    assert watch.expected() == Epoch("migrated") and database.reads == reads  # known: no read per write


def test_sessions_are_described_by_name_and_address_with_counts() -> None:
    sessions = [Session(1, "invario-serve", "10.0.0.7"), Session(2, "invario-serve", "10.0.0.7"),
                Session(3, "psql", "local")]
    assert describe_sessions(sessions) == "invario-serve from 10.0.0.7 (2), psql from local (1)"
    many = [Session(n, f"app-{n}", "local") for n in range(7)]
    assert describe_sessions(many).endswith(", ...")
