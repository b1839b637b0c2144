"""A client generated from /openapi.json with openapi-python-client works end to end, with clean names.

The client is generated once per module (tests/support/codegen.py runs the generator,
installed apart by ``make test``), then used against a real ``invario serve`` on localhost:
open two accounts, post a transaction, read the balances, and get a typed problem
document back for a request the ledger refuses.
"""

from __future__ import annotations

import datetime
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from infrastructure.migrate import upgrade_to_head
from infrastructure.runtime import open_runtime
from interfaces.http.app import create_app
from tests.e2e.http_fixtures import DAY, settings_for
from tests.e2e.serve_support import ServedApi, prepare_ledger
from tests.support import codegen

PACKAGE = "invario_generated_client"
# What a client's user calls, as peers' SDKs name them (not FastAPI's open_account_v1_accounts_post).
EXPECTED_FUNCTIONS = {
    "accounts": {"open_account", "get_account", "list_accounts", "get_balance", "list_entries", "list_holds",
                 "freeze_account", "unfreeze_account", "close_account"},
    "transactions": {"post_transaction", "get_transaction", "list_transactions", "reverse_transaction",
                     "post_hold", "void_hold", "post_transaction_batch"},
    "admin": {"create_tenant", "get_tenant", "list_tenants", "suspend_tenant", "resume_tenant"},
}
# The generator skips operations whose body it cannot model; a batch file (text/csv, JSONL) is one.
NOT_GENERATED = {"upload_batch"}


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert codegen.installed(), (f"openapi-python-client is not installed in {codegen.CODEGEN_DIR}: run "
                                 "'make .venv/.installed-test' (or python -m tests.support.codegen)")
    where = tmp_path_factory.mktemp("generated")
    runtime = open_runtime(settings_for(f"sqlite:///{where / 'spec.db'}"))
    try:
        upgrade_to_head(runtime.engine)
        (where / "openapi.json").write_text(json.dumps(create_app(runtime).openapi()))
    finally:
        runtime.close()
    generated = codegen.generate(where / "openapi.json", where / PACKAGE)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(where))
    try:
        yield where / PACKAGE
    finally:
        sys.path.remove(str(where))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_operations_have_clean_function_names(client_package: Path) -> None:
    generated = {tag.name: {f.stem for f in tag.glob("*.py") if f.stem != "__init__"}
                 for tag in (client_package / "api").iterdir() if tag.is_dir()}
    for tag, functions in EXPECTED_FUNCTIONS.items():
        assert functions <= generated[tag], f"{tag}: missing {sorted(functions - generated[tag])}"
    every = set().union(*generated.values())
    assert not {name for name in every if "_v1_" in name or name.endswith(("_get", "_post", "_put", "_delete"))}
    assert not NOT_GENERATED & every  # if the generator learns text/csv bodies, list upload_batch above


def test_a_generated_client_opens_accounts_posts_and_reads_balances(client_package: Path, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    book = prepare_ledger(database_url)
    models: Any = module("models")
    open_account, post_transaction, get_balance = (
        module(f"api.{tag}.{name}") for tag, name in
        (("accounts", "open_account"), ("transactions", "post_transaction"), ("accounts", "get_balance")))
    with ServedApi(database_url, book, tmp_path / "serve.log") as served:
        client = module("client").AuthenticatedClient(base_url=served.base_url, token=book.key,
                                                       raise_on_unexpected_status=True)
        with client:
            float_, sales = (
                open_account.sync(client=client, body=models.OpenAccount(
                    code=code, name=code.title(), currency="BRL", type_=models.OpenAccountType(kind)))
                for code, kind in (("float", "asset"), ("sales", "income")))
            assert isinstance(float_, models.AccountOut) and isinstance(sales, models.AccountOut)

            def transfer(external_id: str, debit: str, credit: str) -> Any:
                body = models.PostTransaction(
                    external_id=external_id, effective_date=datetime.date.fromisoformat(DAY),
                    postings=[models.PostingIn(account_id=float_.id, amount=debit),
                              models.PostingIn(account_id=sales.id, amount=credit)])
                return post_transaction.sync(client=client, body=body, idempotency_key=f"key-{external_id}")

            written = transfer("inv-1", "12.34", "-12.34")
            assert isinstance(written, models.TransactionWritten), written
            balances = {account.code: get_balance.sync(account.id, client=client, min_position=written.position)
                        for account in (float_, sales)}
            assert all(isinstance(b, models.BalanceOut) for b in balances.values()), balances
            assert (balances["float"].balance, balances["sales"].balance) == ("12.34", "12.34")

            refused = transfer("inv-2", "5.00", "-4.00")
            assert isinstance(refused, models.Problem), refused
            assert (refused.status, refused.code) == (422, "transaction_unbalanced")
            assert refused.type_ == "urn:invario:problem:transaction_unbalanced" and refused.detail
            again = get_balance.sync(float_.id, client=client, min_position=written.position)
            assert again.balance == "12.34"
