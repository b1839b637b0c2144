"""The application's own posting rate, without HTTP: grouped and ungrouped commits, and bulk.

N threads call ``ledger.post_transaction`` (two postings between random
accounts) on a runtime opened from ``Settings`` on a throwaway PostgreSQL
database, as fast as it returns, for a fixed window after a warm-up. The rows
differ only by the group-commit settings read from the environment:
``INVARIO_WRITE_BATCH_SIZE_MAX=1`` (one commit per command) and ``=256`` with
``INVARIO_WRITE_BATCH_WAIT_MS`` (commands share commits). A build without
those settings ignores them, and both rows then measure the same path: each
row's note says which settings the runtime actually had. The last row is
``ledger.post_transactions`` (many transfers per call), when the build has it.

Target (issue 8): 10,000 transfers/s in-process.
"""

from __future__ import annotations

import inspect
import random
import secrets
import threading
import time
from datetime import date
from typing import Any
from uuid import UUID

import application.ledger as ledger_module
from application.ledger import Ledger, PostingInstruction
from domain.account import Account
from infrastructure.runtime import open_runtime
from infrastructure.migrate import upgrade_to_head
from infrastructure.settings import Settings
from tests.bench.measurement import Measurement
from tests.bench.support import environment, throwaway_postgres

TARGET = 10_000
FULL = {"accounts": 2_000, "threads": 16, "warmup": 1.0, "seconds": 8.0, "bulk_call": 1_000}
SMOKE = {"accounts": 100, "threads": 2, "warmup": 0.2, "seconds": 1.0, "bulk_call": 100}
MODES = (
    ("ungrouped", {"INVARIO_WRITE_BATCH_SIZE_MAX": "1"}),
    ("grouped", {"INVARIO_WRITE_BATCH_SIZE_MAX": "256", "INVARIO_WRITE_BATCH_WAIT_MS": "2"}),
)
DAY = date(2026, 11, 23)
# Names a bulk request type might have; the bench builds requests by keyword, so a new field is not a problem.
REQUEST_TYPE_NAMES = ("TransactionRequest", "PostTransactionRequest", "TransferRequest", "TransactionInstruction",
                      "PostingRequest")


def run(smoke: bool) -> list[Measurement]:
    shape = SMOKE if smoke else FULL
    with throwaway_postgres() as found:
        if found is None:
            return [Measurement("in-process post_transaction", 0, "transfers/s",
                                note="skipped: no PostgreSQL server found")]
        url = found[1]
        tenant_id, accounts = _open_book(url, shape["accounts"])
        results = [_threads(url, label, overrides, tenant_id, accounts, shape) for label, overrides in MODES]
        results.append(_bulk(url, tenant_id, accounts, shape))
        return results


def _open_book(database_url: str, accounts: int) -> tuple[UUID, list[UUID]]:
    runtime = open_runtime(Settings(database_url=database_url))
    try:
        upgrade_to_head(runtime.engine)
        tenant = runtime.ledger.create_tenant("bench").aggregate
        opened = [Account.open(tenant.id, f"acc-{n}", f"Account {n}", "BRL", "asset") for n in range(accounts)]
        for start in range(0, len(opened), 500):
            runtime.ledger.save(*opened[start:start + 500])
        return tenant.id, [a.id for a in opened]
    finally:
        runtime.close()


def _settings(database_url: str, overrides: dict[str, str]) -> tuple[Settings, str]:
    with environment(**overrides):
        settings = Settings(database_url=database_url)
    size = getattr(settings, "write_batch_size_max", None)
    if size is None:
        return settings, "this build has no group commit: same path as ungrouped"
    return settings, f"write_batch_size_max={size}, write_batch_wait_ms={getattr(settings, 'write_batch_wait_ms', '?')}"


def _threads(database_url: str, label: str, overrides: dict[str, str], tenant_id: UUID, accounts: list[UUID],
             shape: dict[str, Any]) -> Measurement:
    settings, effective = _settings(database_url, overrides)
    runtime = open_runtime(settings)
    try:
        done = _post_for_a_while(runtime.ledger, tenant_id, accounts, shape)
    finally:
        runtime.close()
    name = f"in-process post_transaction, {shape['threads']} threads, {label} ({_setting_label(overrides)})"
    return Measurement(name, done / shape["seconds"], "transfers/s", TARGET, note=effective)


def _setting_label(overrides: dict[str, str]) -> str:
    return f"INVARIO_WRITE_BATCH_SIZE_MAX={overrides['INVARIO_WRITE_BATCH_SIZE_MAX']}"


def _post_for_a_while(ledger: Ledger, tenant_id: UUID, accounts: list[UUID], shape: dict[str, Any]) -> int:
    """Transfers completed inside the window by ``shape['threads']`` threads posting back to back."""
    run_id = secrets.token_hex(4)
    opens = time.perf_counter() + shape["warmup"]
    closes = opens + shape["seconds"]
    counts = [0] * shape["threads"]
    errors: list[BaseException] = []

    def work(number: int) -> None:
        rng = random.Random(number)  # noqa: S311 - load shape, not security
        sent = 0
        try:
            while time.perf_counter() < closes:
                debit, credit = rng.sample(accounts, 2)
                ledger.post_transaction(tenant_id, f"{run_id}-{number}-{sent}", DAY,
                                        [PostingInstruction(debit, "1.00"), PostingInstruction(credit, "-1.00")])
                sent += 1
                if opens <= time.perf_counter() <= closes:
                    counts[number] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(shape["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a posting thread failed: {errors[0]!r}") from errors[0]
    return sum(counts)


# --- bulk --------------------------------------------------------------------------------------


def _bulk(database_url: str, tenant_id: UUID, accounts: list[UUID], shape: dict[str, Any]) -> Measurement:
    name = f"in-process post_transactions, {shape['bulk_call']:,} per call, 1 thread"
    if not hasattr(Ledger, "post_transactions"):
        return Measurement(name, 0, "transfers/s", TARGET, note="skipped: this build has no Ledger.post_transactions")
    request_type = _request_type()
    if request_type is None:
        return Measurement(name, 0, "transfers/s", TARGET,
                           note="skipped: Ledger.post_transactions exists but its request type was not found")
    runtime = open_runtime(Settings(database_url=database_url))
    try:
        rng = random.Random(1)  # noqa: S311 - load shape, not security
        run_id, done, rejected, calls = secrets.token_hex(4), 0, 0, 0
        began = time.perf_counter()
        while time.perf_counter() - began < shape["seconds"] or calls == 0:
            requests = [_request(request_type, f"{run_id}-{calls}-{n}", *rng.sample(accounts, 2))
                        for n in range(shape["bulk_call"])]
            outcomes = runtime.ledger.post_transactions(tenant_id, requests)  # type: ignore[attr-defined]
            accepted = sum(not isinstance(outcome, Exception) for outcome in outcomes or ())
            done, rejected, calls = done + accepted, rejected + len(requests) - accepted, calls + 1
        elapsed = time.perf_counter() - began
    finally:
        runtime.close()
    note = f"{calls} calls, default settings" + (f"; {rejected} rejected" if rejected else "")
    return Measurement(name, done / elapsed, "transfers/s", TARGET, note=note)


def _request_type() -> type | None:
    for name in REQUEST_TYPE_NAMES:
        candidate = getattr(ledger_module, name, None)
        if inspect.isclass(candidate):
            return candidate
    return None


def _request(request_type: type, external_id: str, debit: UUID, credit: UUID) -> Any:
    return request_type(external_id=external_id, effective_date=DAY,
                        postings=[PostingInstruction(debit, "1.00"), PostingInstruction(credit, "-1.00")])
