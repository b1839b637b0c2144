"""The invariants checked at the end of a soak, each held or failed with its evidence.

They read the write side (the aggregates, in-process, straight to the database),
the read models (over the API, which serves the worker's projections) and the
operator commands (``invario verify``, ``invario reconcile --no-catch-up``,
``invario projections status``), once the faults have stopped, the network is
healed and the worker has caught up.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx

from domain.ids import reversal_id_for, transaction_id_for
from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from tests.e2e.http_fixtures import PEPPER
from tests.e2e.test_cli_basics import INVARIO
from tests.soak.cluster import FUNDING_MINOR, SETTLE_SECONDS, Cluster, FaultInjector
from tests.soak.traffic import CLIENT_TIMEOUT_SECONDS, Client, Model, Op

CATCH_UP_DEADLINE_SECONDS = 90.0
COMMAND_TIMEOUT_SECONDS = 300
PAGES_MAX = 1_000  # 200 items a page: far more than a 30-minute run writes
EXPECTED_REJECTIONS = ("insufficient_funds", "atomic_batch_rejected")
EVIDENCE_ITEMS_MAX = 10


@dataclass(frozen=True)
class Invariant:
    name: str
    held: bool
    evidence: str


def _minor(amount: str) -> int:
    return int(Decimal(amount) * 100)


class Checker:
    """Runs every check once the run is over; ``results`` in the order of the report."""

    def __init__(self, cluster: Cluster, injector: FaultInjector, clients: list[Client], model: Model) -> None:
        self.cluster, self.injector, self.clients, self.model = cluster, injector, clients, model
        self.book = cluster.book
        self.http = httpx.Client(base_url=cluster.base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {self.book.key}"})
        self.results: list[Invariant] = []

    def run(self) -> list[Invariant]:
        unresolved = [c.unresolved for c in self.clients if c.unresolved is not None]
        checks: list[Callable[[], Invariant]] = [
            lambda: self._resolved(unresolved), self._caught_up, lambda: self._present_once(unresolved),
            self._replays, self._floors, lambda: self._model_balances(unresolved), self._read_models,
            lambda: self._command("verify", ["verify"]),
            lambda: self._command("reconcile finds nothing", ["reconcile", "--no-catch-up"]),
            self._no_5xx, self._no_slow_request, self._expected_rejections, self._graceful_stops,
            self._faults_played,
        ]
        for check in checks:
            try:
                self.results.append(check())
            except Exception as exc:  # noqa: BLE001 - a check that cannot run has failed
                self.results.append(Invariant(getattr(check, "__name__", "check").strip("_"), False,
                                              f"could not check: {type(exc).__name__}: {exc}"))
        self.http.close()
        return self.results

    # --- the ledger ---------------------------------------------------------------------------

    def _resolved(self, unresolved: list[Op]) -> Invariant:
        evidence = ", ".join(f"{op.kind} {op.key}" for op in unresolved[:EVIDENCE_ITEMS_MAX])
        return Invariant("every write got a final answer", not unresolved,
                         f"{sum(len(c.done) for c in self.clients)} writes answered; "
                         + (f"unresolved after the bounded wait: {evidence}" if unresolved else "none unresolved"))

    def _caught_up(self) -> Invariant:
        deadline, statuses = time.monotonic() + CATCH_UP_DEADLINE_SECONDS, []
        while time.monotonic() < deadline:
            result = self._invario(["projections", "status", "--json"])
            status = json.loads(result.stdout) if result.returncode == 0 else {}
            statuses = status.get("projections", [])
            if statuses and all(s["lag"] == 0 for s in statuses):
                return Invariant("the worker caught up", True,
                                 f"{len(statuses)} projections at lag 0, head of the log {status['head']}")
            time.sleep(1)
        lagging = [f"{s['name']} lag {s['lag']} ({s['state']})" for s in statuses if s["lag"]]
        return Invariant("the worker caught up", False,
                         f"not within {CATCH_UP_DEADLINE_SECONDS:.0f} s: {', '.join(lagging) or 'no status'}")

    def _present_once(self, unresolved: list[Op]) -> Invariant:
        listed = Counter(item["id"] for item in self._pages("/v1/transactions"))
        funding = {str(transaction_id_for(self.book.tenant_id, f"funding-{n}")) for n in range(len(self.book.wallets))}
        acknowledged = set(self.model.acknowledged)
        maybe = self._maybe_written(unresolved)
        twice = sorted(i for i, count in listed.items() if count > 1)
        missing = sorted(acknowledged - set(listed))
        unexpected = sorted(set(listed) - acknowledged - funding - maybe)
        missing_write_side = self._absent_from_write_side(acknowledged)
        held = not (twice or missing or unexpected or missing_write_side)
        return Invariant("every acknowledged write is present exactly once", held,
                         f"{len(acknowledged)} acknowledged transactions, {sum(listed.values())} listed by the read "
                         f"model; twice: {twice[:EVIDENCE_ITEMS_MAX]}; missing: {missing[:EVIDENCE_ITEMS_MAX]}; "
                         f"missing from the write side: {missing_write_side[:EVIDENCE_ITEMS_MAX]}; present but never "
                         f"acknowledged: {unexpected[:EVIDENCE_ITEMS_MAX]}")

    def _maybe_written(self, unresolved: list[Op]) -> set[str]:
        """Transactions an op without a final answer may have written."""
        maybe = set()
        for op in unresolved:
            items = (op.body or {}).get("transactions", [op.body or {}])
            maybe.update(str(transaction_id_for(self.book.tenant_id, i["external_id"])) for i in items
                         if "external_id" in i)
            if op.kind == "reverse":
                maybe.add(str(reversal_id_for(UUID(op.path.split("/")[3]))))
        return maybe

    def _absent_from_write_side(self, ids: set[str]) -> list[str]:
        from domain.errors import TransactionNotFound

        runtime = open_runtime(Settings(database_url=self.cluster.database_url, auth_pepper=PEPPER))
        try:
            absent = []
            for transaction_id in sorted(ids):
                try:
                    runtime.ledger.get_transaction(self.book.tenant_id, UUID(transaction_id))
                except TransactionNotFound:
                    absent.append(transaction_id)
            return absent
        finally:
            runtime.close()

    def _replays(self) -> Invariant:
        mismatches = self.model.replay_mismatches
        return Invariant("every replayed key answers as it did first", not mismatches,
                         f"{self.model.replays} keys replayed after a final answer; mismatches: "
                         f"{mismatches[:EVIDENCE_ITEMS_MAX]}")

    def _floors(self) -> Invariant:
        accepted = self.model.overdrafts_accepted()
        below = []
        for wallet in self.book.wallets:
            balance = self.http.get(f"/v1/accounts/{wallet}/balance").json()
            if _minor(balance["balance"]) < 0 or _minor(balance["available"]) < 0:
                below.append(f"{wallet}: balance {balance['balance']}, available {balance['available']}")
        write_side = [f"{a}: {b}" for a, b in self._write_side().items()
                      if a != self.book.cash and min(b[2], -b[0]) < 0]
        return Invariant("no floor crossed", not (accepted or below or write_side),
                         f"{len(self.model.overdraft_external_ids)} deliberate overdrafts, accepted: "
                         f"{accepted[:EVIDENCE_ITEMS_MAX]}; wallets below 0.00 (read model): {below}; "
                         f"(write side, balance and available): {write_side}")

    def _write_side(self) -> dict[str, tuple[int, int, int]]:
        """Each account's (raw posted balance, raw pending, available on its normal side), from the aggregates."""
        runtime = open_runtime(Settings(database_url=self.cluster.database_url, auth_pepper=PEPPER))
        try:
            accounts = {}
            for account_id in (self.book.cash, *self.book.wallets):
                account = runtime.ledger.get_account(self.book.tenant_id, UUID(account_id))
                accounts[account_id] = (account.balance_minor, account.pending_minor, account.available_normal_minor)
            return accounts
        finally:
            runtime.close()

    def _model_balances(self, unresolved: list[Op]) -> Invariant:
        funding = {w: -FUNDING_MINOR for w in self.book.wallets}
        funding[self.book.cash] = FUNDING_MINOR * len(self.book.wallets)
        expected = self.model.expected_raw_minor(funding)
        pending = Counter[str]()
        with self.model.lock:
            for deltas in self.model.pending.values():
                pending.update(deltas)
        actual = self._write_side()
        touched = {a for op in unresolved for d in op.deltas.values() for a in d}
        differ = [f"{a}: expected raw {expected.get(a, 0)} pending {pending.get(a, 0)}, ledger {actual[a]}"
                  for a in actual if a not in touched and actual[a][:2] != (expected.get(a, 0), pending.get(a, 0))]
        return Invariant("balances equal what the acknowledged writes moved", not differ,
                         f"{len(self.model.posted)} posted and {len(self.model.pending)} open holds in the "
                         f"clients' model, {len(actual)} accounts compared with the aggregates"
                         + (f" (skipped, touched by unresolved writes: {sorted(touched)})" if touched else "")
                         + f"; differences: {differ}")

    def _read_models(self) -> Invariant:
        write_side, differ = self._write_side(), []
        for account_id, (raw, raw_pending, _) in write_side.items():
            balance = self.http.get(f"/v1/accounts/{account_id}/balance").json()
            entries = sum(_minor(e["amount"]) for e in self._pages(f"/v1/accounts/{account_id}/entries"))
            holds = sum(_minor(h["amount"]) for h in self._pages(f"/v1/accounts/{account_id}/holds", status="pending"))
            seen = (_minor(balance["raw_balance"]), _minor(balance["raw_pending"]), entries, holds)
            if seen != (raw, raw_pending, raw, raw_pending):
                differ.append(f"{account_id}: aggregate ({raw}, pending {raw_pending}); balance read model "
                              f"{seen[:2]}, sum of entries {entries}, sum of open holds {holds}")
        return Invariant("balances equal the sum of postings in every read model", not differ,
                         f"{len(write_side)} accounts: balances, pending, statement entries and open holds against "
                         f"the aggregates; differences: {differ}")

    def _pages(self, path: str, **query: str) -> list[dict[str, Any]]:
        items, cursor = [], None
        for _ in range(PAGES_MAX):
            params = {"limit": 200, **query, **({"cursor": cursor} if cursor else {})}
            response = self.http.get(path, params=params)
            response.raise_for_status()
            page = response.json()
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items
        raise RuntimeError(f"{path}: more than {PAGES_MAX} pages")

    def _command(self, name: str, arguments: list[str]) -> Invariant:
        result = self._invario(arguments)
        output = (result.stdout + result.stderr).strip().splitlines()
        return Invariant(name, result.returncode == 0,
                         f"`invario {' '.join(arguments)}` exit {result.returncode}: {' / '.join(output[-4:])}")

    def _invario(self, arguments: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([INVARIO, *arguments], env=self.cluster.direct_environment,  # noqa: S603
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False)

    # --- the answers --------------------------------------------------------------------------

    def _no_5xx(self) -> Invariant:
        windows = self.injector.database_faults()
        allowed, violations = 0, []
        for client in self.clients:
            for attempt in client.attempts:
                if attempt.status is None or attempt.status < 500:
                    continue
                if _documented_outage_answer(attempt, windows):
                    allowed += 1
                else:
                    violations.append(f"{attempt.kind} at {attempt.at:.2f}s: {attempt.outcome} "
                                      f"(Retry-After {attempt.retry_after})")
        return Invariant("no 5xx answered (but 503 with Retry-After during a database fault)", not violations,
                         f"{allowed} allowed 503s; violations: {len(violations)} {violations[:EVIDENCE_ITEMS_MAX]}")

    def _no_slow_request(self) -> Invariant:
        slow = [f"{a.kind} at {a.at:.2f}s took {a.seconds:.2f}s ({a.outcome})" for c in self.clients
                for a in c.attempts if a.outcome == "timeout" or a.seconds > CLIENT_TIMEOUT_SECONDS]
        slowest = max((a for c in self.clients for a in c.attempts), key=lambda a: a.seconds, default=None)
        seen = f"slowest: {slowest.kind} at {slowest.at:.2f}s, {slowest.seconds:.2f}s ({slowest.outcome})" \
            if slowest else "no requests"
        return Invariant(f"no request took more than {CLIENT_TIMEOUT_SECONDS:.0f} s", not slow,
                         f"{seen}; over the bound: {len(slow)} {slow[:EVIDENCE_ITEMS_MAX]}")

    def _expected_rejections(self) -> Invariant:
        codes = Counter(a.outcome for c in self.clients for a in c.attempts
                        if a.status is not None and 400 <= a.status < 500)
        unexpected = {code: n for code, n in codes.items() if code.split(":", 1)[-1] not in EXPECTED_REJECTIONS}
        return Invariant("every 4xx is an expected rejection", not unexpected,
                         f"4xx answers: {dict(codes)}; unexpected: {unexpected}")

    # --- the processes ------------------------------------------------------------------------

    def _graceful_stops(self) -> Invariant:
        bad = []
        for process in (self.cluster.serve, self.cluster.worker):
            for how, code, seconds in process.exits:
                # docs/failure-modes.md: serve exits 0; the worker 0, or 1 if a follower was failing (an outage).
                codes_allowed = (0,) if process.name == "serve" else (0, 1)
                if how == "sigterm" and code not in codes_allowed:
                    bad.append(f"{process.name}: exit {code} after {seconds}s")
        stops = [f"{p.name} {how} -> {code}" for p in (self.cluster.serve, self.cluster.worker)
                 for how, code, _ in p.exits]
        return Invariant("SIGTERM stops each process cleanly within 30 s", not bad,
                         f"stops: {stops}; bad: {bad}")

    def _faults_played(self) -> Invariant:
        injected = [i for i in self.injector.injected if i.kind != "restart"]
        planned = len(self.injector.network) + len(self.injector.processes)
        return Invariant("every fault was injected and healed", not self.injector.errors,
                         f"{len(injected)} of {planned} planned faults played (a lane runs late while a restart "
                         f"takes long; what it has left when the load stops is skipped); errors: "
                         f"{self.injector.errors}")


def _documented_outage_answer(attempt: Any, windows: list[tuple[float, float]]) -> bool:
    """A 503 problem with a database_* code and Retry-After, begun or ended while the database was
    broken or within SETTLE_SECONDS of its healing (docs/failure-modes.md, docs/soak.md)."""
    if attempt.status != 503 or not attempt.retry_after or not attempt.problem_json:
        return False
    if not attempt.outcome.startswith("503:database_"):
        return False
    begun, ended = attempt.at, attempt.at + attempt.seconds
    return any(start <= ended and begun <= end + SETTLE_SECONDS for start, end in windows)
