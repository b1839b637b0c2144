"""Runs followers continuously in a background thread of the current process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from projections.follower import Follower

log = logging.getLogger(__name__)


class FollowerThread:
    """Polls the log and moves every follower forward until stopped."""

    def __init__(self, followers: Sequence[Follower], poll_seconds: float = 0.5) -> None:
        self.followers = list(followers)
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invario-followers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_seconds)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            for follower in self.followers:
                busy |= self._step(follower)
            if not busy:
                self._stop.wait(self.poll_seconds)

    def _step(self, follower: Follower) -> bool:
        try:
            return follower.process_batch() > 0
        except Exception as exc:  # a follower must survive a bad moment of its database
            log.exception("follower %s failed", follower.name)
            try:
                follower.record_error(f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the database may be the thing that is down
                log.debug("could not record the error of follower %s", follower.name)
            return False
