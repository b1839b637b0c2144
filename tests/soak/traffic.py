"""The clients: keyed writes of every kind, retried until they get a final answer, and the model they keep.

Each client is a thread with its own ``random.Random`` derived from the seed, and
draws the same values for every request whatever came of the earlier ones, so a
seed replays the same sequence of request kinds, accounts and amounts. (Which
earlier request a replay, a capture or a reversal picks depends on what had been
acknowledged by then, and so on timing.)

Every request carries an Idempotency-Key. One that gets no final answer (a
transport error, a timeout, a 409 or a 5xx) is sent again, same key, same body,
until it gets one: at the end every write has a known outcome, and the client's
model (what each acknowledged write moved) must equal the ledger to the cent.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.http_fixtures import DAY

CLIENT_TIMEOUT_SECONDS = 5.0  # a request slower than this is a violation (issue 19)
RETRY_PAUSE_SECONDS = 0.2
AMOUNT_MINOR_MAX = 5_000  # 50.00 per transfer: wallets of 1,000.00 rarely run dry
OVERDRAFT_MINOR = 10_000_000_000  # more than all the money there is: always insufficient_funds
BATCH_SIZE = (2, 6)
DRAWS_PER_REQUEST = 8
KINDS = ("transfer", "overdraft", "batch", "hold", "settle", "reverse", "replay")
WEIGHTS = (35, 8, 10, 12, 12, 8, 15)
FINAL_4XX_EXCLUDED = (408, 409, 425, 429)  # answers that say "try again", not an outcome


@dataclass(frozen=True)
class Attempt:
    """One HTTP exchange: when (seconds after the start), how long, and what came back."""

    kind: str
    at: float
    seconds: float
    status: int | None
    outcome: str  # "201", "422:insufficient_funds", "503:database_unavailable", "transport:ConnectError", "timeout"
    retry_after: str | None = None
    problem_json: bool = False


@dataclass(frozen=True)
class Answer:
    """What a final answer says, for comparing a replayed key with its first answer."""

    status: int
    identity: tuple[Any, ...]


@dataclass
class Op:
    """One logical write: its request, its key, and its final answer once it has one."""

    client: int
    number: int
    kind: str
    path: str
    body: dict[str, Any] | None
    key: str
    deltas: dict[str, dict[str, int]] = field(default_factory=dict)  # by external id: raw delta per account
    overdraft_ids: tuple[str, ...] = ()  # external ids that must never be accepted
    replay_of: Op | None = None
    answer: Answer | None = None
    response: dict[str, Any] | None = None


def _money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def answer_of(response: httpx.Response) -> tuple[Answer, dict[str, Any]]:
    body = response.json() if response.content else {}
    if response.status_code >= 300:
        results = tuple((r["status"], (r.get("problem") or {}).get("code")) for r in body.get("results", []))
        return Answer(response.status_code, (body.get("code"), results)), body
    if "results" in body:
        return Answer(response.status_code, tuple(
            (r["status"], (r["transaction"] or {}).get("id"), (r["problem"] or {}).get("code")) for r in body["results"]
        )), body
    return Answer(response.status_code, (body.get("id"),)), body


class Model:
    """What the acknowledged writes moved (shared by the clients) and the breaches seen on the way."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posted: dict[str, dict[str, int]] = {}  # transaction id -> raw delta per account
        self.pending: dict[str, dict[str, int]] = {}  # open holds
        self.voided: set[str] = set()
        self.acknowledged: dict[str, str] = {}  # every transaction id a first 2xx named -> its external id
        self.overdraft_external_ids: set[str] = set()
        self.replays = 0
        self.replay_mismatches: list[str] = []

    def record(self, op: Op) -> None:
        """Apply a final answer to the model."""
        assert op.answer is not None
        with self.lock:
            if op.replay_of is not None:
                self._compare(op)
                return
            self.overdraft_external_ids.update(op.overdraft_ids)
            if op.answer.status >= 300:
                return
            for transaction_id, external_id, status in _written(op.response or {}):
                self.acknowledged[transaction_id] = external_id
                self._apply(op, transaction_id, op.deltas.get(external_id, {}), status)

    def _apply(self, op: Op, transaction_id: str, deltas: dict[str, int], status: str) -> None:
        if op.kind == "settle":
            held = self.pending.pop(transaction_id, {})
            if op.path.endswith("/post"):
                self.posted[transaction_id] = held
            else:
                self.voided.add(transaction_id)
        elif op.kind == "reverse":
            original = op.path.split("/")[3]
            self.posted[transaction_id] = {a: -d for a, d in self.posted.get(original, {}).items()}
        elif status == "pending":
            self.pending[transaction_id] = deltas
        else:
            self.posted[transaction_id] = deltas

    def _compare(self, op: Op) -> None:
        first = op.replay_of
        assert first is not None and first.answer is not None and op.answer is not None
        self.replays += 1
        if op.answer != first.answer:
            self.replay_mismatches.append(
                f"key {op.key}: first {first.answer.status} {first.answer.identity}, "
                f"replayed {op.answer.status} {op.answer.identity}")

    def overdrafts_accepted(self) -> list[str]:
        with self.lock:
            return sorted(self.overdraft_external_ids & set(self.acknowledged.values()))

    def expected_raw_minor(self, funding: dict[str, int]) -> dict[str, int]:
        """Each account's debit-positive balance as the acknowledged writes leave it."""
        balances = dict(funding)
        with self.lock:
            for deltas in self.posted.values():
                for account, delta in deltas.items():
                    balances[account] = balances.get(account, 0) + delta
        return balances


def _written(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(transaction id, external id, status) of every transaction a 2xx answer wrote or named."""
    items = [r["transaction"] for r in body["results"] if r["transaction"]] if "results" in body else [body]
    return [(t["id"], t.get("external_id") or "", t.get("status", "posted")) for t in items if "id" in t]


class Client(threading.Thread):
    """One client: draws a request, sends it until it has a final answer, and again."""

    def __init__(self, index: int, seed: int, base_url: str, key: str, wallets: tuple[str, ...], model: Model,
                 clock: Clock) -> None:
        super().__init__(name=f"soak-client-{index}", daemon=True)
        self.index, self.seed, self.wallets, self.model, self.clock = index, seed, wallets, model, clock
        self.rng = random.Random(f"client-{seed}-{index}")
        self.http = httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS,
                                 headers={"Authorization": f"Bearer {key}"})
        self.attempts: list[Attempt] = []
        self.finished: list[Op] = []  # first sendings with a final answer, in order (replays pick from them)
        self.done: list[Op] = []  # every op with a final answer, replays too
        self.unresolved: Op | None = None  # the op the run ended in the middle of
        self.open_holds: list[str] = []
        self.reversible: list[str] = []
        self.stop_at = 0.0

    def run(self) -> None:
        number = 0
        while self.clock.now() < self.stop_at:
            number += 1
            op = self.draw(number)
            if not self.send(op, lambda: self.clock.now() < self.stop_at):
                self.unresolved = op
                return

    # --- drawing requests -------------------------------------------------------------------

    def draw(self, number: int) -> Op:
        kind = self.rng.choices(KINDS, WEIGHTS)[0]
        draws = [self.rng.random() for _ in range(DRAWS_PER_REQUEST)]  # the same count, whatever the kind
        key = f"soak-{self.seed}-{self.index}-{number}"
        if kind == "settle" and self.open_holds:
            hold = self.open_holds.pop(int(draws[0] * len(self.open_holds)))
            action = "post" if draws[1] < 0.6 else "void"
            return Op(self.index, number, kind, f"/v1/transactions/{hold}/{action}", None, key)
        if kind == "reverse" and self.reversible:
            original = self.reversible.pop(int(draws[0] * len(self.reversible)))
            return Op(self.index, number, kind, f"/v1/transactions/{original}/reverse", {}, key)
        if kind == "replay" and self.finished:
            first = self.finished[int(draws[0] * len(self.finished))]
            return Op(self.index, number, kind, first.path, first.body, first.key, replay_of=first)
        if kind == "batch":
            return self._batch(number, key, draws)
        if kind not in ("overdraft", "hold"):
            kind = "transfer"  # settle, reverse or replay with nothing to act on yet
        item, deltas = self._transfer(f"s{self.seed}-c{self.index}-{number}", draws, kind == "overdraft")
        if kind == "hold":
            item["status"] = "pending"
        op = Op(self.index, number, kind, "/v1/transactions", item, key, deltas={item["external_id"]: deltas})
        op.overdraft_ids = (item["external_id"],) if kind == "overdraft" else ()
        return op

    def _transfer(self, external_id: str, draws: list[float], overdraft: bool) -> tuple[dict[str, Any], dict]:
        source = int(draws[2] * len(self.wallets))
        target = (source + 1 + int(draws[3] * (len(self.wallets) - 1))) % len(self.wallets)
        amount = OVERDRAFT_MINOR if overdraft else 1 + int(draws[4] * AMOUNT_MINOR_MAX)
        debit, credit = self.wallets[source], self.wallets[target]  # a debit lowers a liability's balance
        body = {"external_id": external_id, "effective_date": DAY, "postings": [
            {"account_id": debit, "amount": _money(amount)}, {"account_id": credit, "amount": _money(-amount)}]}
        return body, {debit: amount, credit: -amount}

    def _batch(self, number: int, key: str, draws: list[float]) -> Op:
        size = BATCH_SIZE[0] + int(draws[5] * (BATCH_SIZE[1] - BATCH_SIZE[0] + 1))
        overdraft_at = int(draws[6] * size) if draws[6] < 0.5 else -1
        items, deltas, overdrafts = [], {}, []
        for n in range(size):
            external_id = f"s{self.seed}-c{self.index}-{number}-{n}"
            item_draws = [*draws[:2], *(random.Random(f"{key}-{n}").random() for _ in range(3))]
            item, item_deltas = self._transfer(external_id, item_draws, n == overdraft_at)
            items.append(item)
            deltas[external_id] = item_deltas
            if n == overdraft_at:
                overdrafts.append(external_id)
        return Op(self.index, number, "batch", "/v1/transactions/batch",
                  {"atomic": draws[7] < 0.3, "transactions": items}, key, deltas, tuple(overdrafts))

    # --- sending ----------------------------------------------------------------------------

    def send(self, op: Op, keep_trying: Any) -> bool:
        """Send until a final answer (True) or until ``keep_trying()`` says stop (False)."""
        while True:
            response = self._attempt(op)
            if response is not None and _final(response.status_code):
                op.answer, op.response = answer_of(response)
                self._settled(op)
                return True
            if not keep_trying():
                return False
            time.sleep(RETRY_PAUSE_SECONDS)

    def _attempt(self, op: Op) -> httpx.Response | None:
        started = self.clock.now()
        headers = {"Idempotency-Key": op.key}
        try:
            response = self.http.post(op.path, json=op.body, headers=headers) if op.body is not None \
                else self.http.post(op.path, headers=headers)
        except httpx.TimeoutException:
            self._note(op, started, None, "timeout")
            return None
        except httpx.TransportError as exc:
            self._note(op, started, None, f"transport:{type(exc).__name__}")
            return None
        code = _problem_code(response)
        self._note(op, started, response.status_code, f"{response.status_code}:{code}" if code else
                   str(response.status_code), response.headers.get("retry-after"),
                   response.headers.get("content-type", "").startswith("application/problem+json"))
        return response

    def _note(self, op: Op, started: float, status: int | None, outcome: str, retry_after: str | None = None,
              problem_json: bool = False) -> None:
        kind = "replay" if op.replay_of is not None else op.kind
        self.attempts.append(Attempt(kind, round(started, 3), round(self.clock.now() - started, 3), status, outcome,
                                     retry_after, problem_json))

    def _settled(self, op: Op) -> None:
        self.model.record(op)
        self.done.append(op)
        if op.replay_of is None:
            self.finished.append(op)
            if op.answer and op.answer.status == 201 and op.kind == "hold":
                self.open_holds.append(op.response["id"])  # type: ignore[index]
            elif op.answer and op.answer.status == 201 and op.kind == "transfer":
                self.reversible.append(op.response["id"])  # type: ignore[index]

    def close(self) -> None:
        self.http.close()


def _problem_code(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        return response.json().get("code")
    except ValueError:
        return None


def _final(status: int) -> bool:
    return status < 500 and status not in FINAL_4XX_EXCLUDED


class Clock:
    """Seconds since the clients started: one time base for attempts and faults."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.started


def tally(clients: list[Client]) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(attempts by kind and outcome, final answers by kind and status)."""
    attempts: Counter[tuple[str, str]] = Counter()
    finals: Counter[tuple[str, str]] = Counter()
    for client in clients:
        attempts.update((a.kind, a.outcome) for a in client.attempts)
        for op in client.done:
            kind = "replay" if op.replay_of is not None else op.kind
            finals[(kind, str(op.answer.status) if op.answer else "none")] += 1
    return attempts, finals
