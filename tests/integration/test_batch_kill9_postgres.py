"""kill -9 of a real ``invario worker`` in the middle of a batch loses nothing.

The worker is killed while it posts an atomic batch; each chunk was committed
whole or not at all. A new worker takes the batch over once the dead one's
lease expires, and finishes it: every balance exact, no transaction twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest

from domain.ids import account_id_for
from infrastructure.batch_runner import Upload
from infrastructure.batch_store import BatchStore
from infrastructure.runtime import Runtime
from infrastructure.migrate import upgrade_to_head
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import notifications
from tests.support.batch_files import good_file

pytestmark = pytest.mark.postgres

LINES = 8_000
WAIT_STEPS_MAX = 3_000
REPO = Path(__file__).resolve().parents[2]


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "INVARIO_DATABASE_URL": url, "INVARIO_BATCH_LEASE_SECONDS": "2",
           "INVARIO_BATCH_POLL_SECONDS": "0.2", "INVARIO_WORKER_METRICS_PORT": "0",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-c", "from interfaces.cli.main import app; app()", "worker"]
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_for(condition, what: str, process: subprocess.Popen[bytes] | None = None) -> None:  # type: ignore[no-untyped-def]
    for _ in range(WAIT_STEPS_MAX):
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker exited ({process.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def test_kill_9_mid_batch_then_restart(open_rt: OpenRuntime, pg_database_url: str, tmp_path: Path) -> None:
    runtime: Runtime = open_rt(pg_database_url)
    upgrade_to_head(runtime.engine)
    tenant_id = runtime.ledger.create_tenant("acme").aggregate.id
    for code, kind in (("cash", "asset"), ("sales", "income")):
        runtime.ledger.open_account(tenant_id, code, code, "BRL", kind)
    store = BatchStore(runtime.engine)
    upload = Upload(store, tenant_id, "atomic", "csv")
    upload.feed(good_file(LINES))
    batch = upload.finish()

    def state():  # type: ignore[no-untyped-def]
        info = store.get(tenant_id, batch.id)
        assert info is not None
        return info

    first = _worker(pg_database_url, tmp_path / "worker-1.log")
    try:
        _wait_for(lambda: state().phase == "posting" and state().next_chunk >= 2, "posting two chunks", first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = state()
    assert killed_at.status == "processing" and killed_at.next_chunk < killed_at.chunk_count
    cash = _balance(runtime, tenant_id, "cash")
    assert cash % 1_000_000 == 0 and cash >= 2_000_000  # whole chunks of 1,000 lines of 10.00, never a part

    second = _worker(pg_database_url, tmp_path / "worker-2.log")
    try:
        _wait_for(lambda: state().status in ("completed", "rejected"), "the batch to finish", second)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    done = state()
    assert done.status == "completed", (tmp_path / "worker-2.log").read_text()[-2000:]
    assert done.accepted_count + done.replayed_count == LINES and done.rejected_count == 0
    assert _balance(runtime, tenant_id, "cash") == LINES * 1_000
    assert _balance(runtime, tenant_id, "sales") == -LINES * 1_000
    posted = [n for n in notifications(runtime.ledger) if n.topic.endswith("Transaction.Posted")]
    assert len(posted) == len({n.originator_id for n in posted}) == LINES


def _balance(runtime: Runtime, tenant_id: UUID, code: str) -> int:
    return runtime.ledger.get_account(tenant_id, account_id_for(tenant_id, code)).balance_minor
