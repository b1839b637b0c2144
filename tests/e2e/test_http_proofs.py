"""Issue 18's "done when", end to end on SQLite and PostgreSQL: fetch a proof over HTTP, check it offline.

A transfer's proof bundle is saved to a file and verified by ``invario proof
verify`` in a subprocess with only the public key (no database, no network);
one edited byte is refused with a named reason; checkpoints before and after
more transfers are proven consistent, and a split view (two checkpoints of one
size with different roots) is refused; a tenant gets no proof of another's
transaction.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.proof_bundle import VerifierKey, checkpoint_body, signed_note
from infrastructure.signing import SigningKey
from tests.e2e.http_fixtures import Api, Tenant, assert_problem, make_api
from tests.e2e.serve_support import ServedApi, prepare_ledger
from tests.e2e.test_cli_basics import run_invario

SIGNING_SECRET = base64.b64encode(os.urandom(32)).decode()
KEY = SigningKey.from_setting(SIGNING_SECRET)
ORIGIN = "proofs.test/ledger"
VERIFIER_KEY = VerifierKey(KEY.public_key_raw).verifier_text(ORIGIN)


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    yield from make_api(database_url, signing_key=SIGNING_SECRET, checkpoint_every_events=1,
                        checkpoint_origin=ORIGIN)


@pytest.fixture
def acme(api: Api) -> Tenant:
    return api.tenant("acme")


def transfer(api: Api, tenant: Tenant, external_id: str, amount: str = "10.00") -> dict[str, Any]:
    cash, bank = (api.accounts.get(f"{tenant.name}/{code}") or api.open_account(tenant, code) for code in ("cash", "bank"))
    response = api.post(tenant, external_id, (cash, amount), (bank, f"-{amount}"))
    assert response.status_code == 201, response.text
    return response.json()


def saved(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False))
    return path


def test_a_transfer_s_proof_verifies_offline_and_an_edit_is_named(api: Api, acme: Tenant, tmp_path: Path) -> None:
    written = transfer(api, acme, "t-1")
    early = api.client.get(f"/v1/transactions/{written['id']}/proof", headers=acme.headers)
    assert_problem(early, 409 if early.status_code == 409 else 404,
                   "checkpoint_pending" if early.status_code == 409 else "transaction_not_found")
    api.catch_up()  # the tree follower, the read models, and a checkpoint (every event here)
    response = api.client.get(f"/v1/transactions/{written['id']}/proof", headers=acme.headers)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert int(response.headers["Invario-Position"]) >= written["position"]
    assert sorted(e["event"]["event_type"] for e in bundle["events"]) == [
        "Account.PostingRecorded", "Account.PostingRecorded", "Transaction.Posted"]
    path = saved(tmp_path, "proof.json", bundle)

    valid = run_invario("proof", "verify", str(path), "--public-key", VERIFIER_KEY)
    assert valid.returncode == 0, valid.stderr
    assert f"transaction {written['id']}" in valid.stdout and "valid" in valid.stdout
    bare = run_invario("proof", "verify", str(path), "--public-key", KEY.public_key)
    assert bare.returncode == 0, bare.stderr

    text = path.read_text()
    edited = text.replace('"amount_minor": 1000', '"amount_minor": 9000', 1)
    assert edited != text
    refused = run_invario("proof", "verify", str(saved(tmp_path, "edited.json", edited)), "--public-key", VERIFIER_KEY)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("invario: rejected: root_mismatch:")
    assert len(refused.stderr.strip().splitlines()) == 1

    other_key = VerifierKey(SigningKey.from_setting(base64.b64encode(os.urandom(32)).decode()).public_key_raw)
    untrusted = run_invario("proof", "verify", str(path), "--public-key", other_key.verifier_text(ORIGIN))
    assert untrusted.returncode == 1 and "rejected: untrusted_signer" in untrusted.stderr


def test_checkpoints_before_and_after_more_transfers_are_consistent(api: Api, acme: Tenant, tmp_path: Path) -> None:
    transfer(api, acme, "t-1")
    api.catch_up()
    old = api.client.get("/v1/ledger/checkpoint", headers=acme.headers).json()
    assert old["note"].startswith(f"{ORIGIN}\n{old['size']}\n{old['root_hash']}\n\n\u2014 {ORIGIN} ")
    for n in range(3):
        transfer(api, acme, f"more-{n}")
    api.catch_up()
    new = api.client.get("/v1/ledger/checkpoint", headers=acme.headers).json()
    assert new["size"] == old["size"] + 9
    same = api.client.get(f"/v1/ledger/checkpoint?size={old['size']}", headers=acme.headers).json()
    assert same == old
    proof = api.client.get(f"/v1/ledger/consistency?from={old['size']}&to={new['size']}", headers=acme.headers)
    assert proof.status_code == 200, proof.text
    old_file, new_file = saved(tmp_path, "old.json", old), saved(tmp_path, "new.json", new["note"])
    proof_file = saved(tmp_path, "consistency.json", proof.json())
    checked = run_invario("proof", "consistency", str(old_file), str(new_file), "--proof", str(proof_file),
                          "--public-key", VERIFIER_KEY)
    assert checked.returncode == 0, checked.stderr
    assert f"size {new['size']} extends its tree of size {old['size']}" in checked.stdout

    # A split view: the log signs another root for the old size. Its own proof to itself is empty.
    forked = signed_note(checkpoint_body(ORIGIN, old["size"], bytes(32)), ORIGIN, KEY.public_key_raw,
                         KEY._private_key.sign(checkpoint_body(ORIGIN, old["size"], bytes(32))))
    nothing = saved(tmp_path, "empty.json", {"format": "invario-consistency-proof/1", "from_size": old["size"],
                                              "to_size": old["size"], "proof": []})
    split = run_invario("proof", "consistency", str(old_file), str(saved(tmp_path, "fork.txt", forked)),
                        "--proof", str(nothing), "--public-key", VERIFIER_KEY)
    assert split.returncode == 1 and "rejected: split_view" in split.stderr
    # ... and the honest proof does not lead from the forked old head to the new one.
    fork_to_new = run_invario("proof", "consistency", str(saved(tmp_path, "fork.txt", forked)), str(new_file),
                              "--proof", str(proof_file), "--public-key", VERIFIER_KEY)
    assert fork_to_new.returncode == 1 and "rejected: first_root_mismatch" in fork_to_new.stderr


def _gauge(api: Api, name: str) -> float | None:
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_checkpoint_gauges_show_what_no_checkpoint_covers_yet(api: Api, acme: Tenant) -> None:
    transfer(api, acme, "g-1")
    assert _gauge(api, "invario_checkpoint_age_seconds") is None  # none signed yet
    assert (_gauge(api, "invario_checkpoint_uncovered_events") or 0) > 0
    api.catch_up()  # the tree and a checkpoint of it
    assert _gauge(api, "invario_checkpoint_uncovered_events") == 0
    age = _gauge(api, "invario_checkpoint_age_seconds")
    assert age is not None and 0 <= age < 60
    transfer(api, acme, "g-2")  # three events: a transaction and its two entries
    time.sleep(0.2)  # past the scrape's shared reading
    assert _gauge(api, "invario_checkpoint_uncovered_events") == 3


def test_a_tenant_gets_no_proof_of_another_tenant_s_transaction(api: Api, acme: Tenant) -> None:
    globex = api.tenant("globex")
    written = transfer(api, acme, "t-1")
    api.catch_up()
    assert api.client.get(f"/v1/transactions/{written['id']}/proof", headers=acme.headers).status_code == 200
    assert_problem(api.client.get(f"/v1/transactions/{written['id']}/proof", headers=globex.headers),
                   404, "transaction_not_found")


def test_proof_routes_refuse_what_names_no_proof(api: Api, acme: Tenant) -> None:
    assert_problem(api.client.get("/v1/ledger/checkpoint", headers=acme.headers), 404, "checkpoint_not_found")
    transfer(api, acme, "t-1")
    api.catch_up()
    size = api.client.get("/v1/ledger/checkpoint", headers=acme.headers).json()["size"]
    assert_problem(api.client.get("/v1/ledger/checkpoint?size=999999", headers=acme.headers), 404,
                   "checkpoint_not_found")
    assert_problem(api.client.get(f"/v1/ledger/consistency?from={size}&to=1", headers=acme.headers), 422,
                   "invalid_proof_request")
    assert_problem(api.client.get(f"/v1/ledger/consistency?from=1&to={size}", headers=acme.headers), 404,
                   "checkpoint_not_found")
    assert api.client.get("/v1/ledger/checkpoint").status_code == 401


def test_the_verifier_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    missing = run_invario("proof", "verify", str(tmp_path / "nothing.json"), "--public-key", VERIFIER_KEY)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    not_json = run_invario("proof", "verify", str(saved(tmp_path, "x.json", "{oops")), "--public-key", VERIFIER_KEY)
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr
    bad_key = run_invario("proof", "verify", str(saved(tmp_path, "y.json", {})), "--public-key", "not-a-key")
    assert bad_key.returncode == 2 and "--public-key" in bad_key.stderr
    empty = run_invario("proof", "verify", str(saved(tmp_path, "z.json", {})), "--public-key", VERIFIER_KEY)
    assert empty.returncode == 1 and "rejected: malformed_bundle" in empty.stderr


def test_public_key_prints_the_verifier_key_of_the_signing_key() -> None:
    printed = run_invario("proof", "public-key", env={"INVARIO_SIGNING_KEY": SIGNING_SECRET,
                                                      "INVARIO_CHECKPOINT_ORIGIN": ORIGIN})
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == VERIFIER_KEY
    assert run_invario("proof", "public-key").returncode == 2


def test_the_issue_s_walkthrough_with_a_real_server(database_url: str, tmp_path: Path) -> None:
    """Issue 18's "done when": serve signs checkpoints on its own; the proof is checked after the server stops."""
    book = prepare_ledger(database_url)
    settings = {"INVARIO_SIGNING_KEY": SIGNING_SECRET, "INVARIO_CHECKPOINT_ORIGIN": ORIGIN,
                "INVARIO_CHECKPOINT_EVERY_SECONDS": "0.5"}
    with ServedApi(database_url, book, tmp_path / "serve.log", **settings) as served:
        written = served.post_transaction("walk-1")
        assert written.status_code == 201, written.text
        proof = _eventually(lambda: served.client.get(f"/v1/transactions/{written.json()['id']}/proof"))
        old = served.client.get("/v1/ledger/checkpoint").json()
        assert old["position"] >= written.json()["position"]
        for n in range(3):
            assert served.post_transaction(f"walk-more-{n}").status_code == 201
        new = _eventually(lambda: served.client.get("/v1/ledger/checkpoint"),
                          lambda response: response.json()["size"] >= old["size"] + 9).json()
        consistency = served.client.get(f"/v1/ledger/consistency?from={old['size']}&to={new['size']}").json()
    path = saved(tmp_path, "proof.json", proof.json())
    verified = run_invario("proof", "verify", str(path), "--public-key", VERIFIER_KEY)
    assert verified.returncode == 0, verified.stderr
    consistent = run_invario("proof", "consistency", str(saved(tmp_path, "old.json", old)),
                             str(saved(tmp_path, "new.json", new)), "--proof",
                             str(saved(tmp_path, "c.json", consistency)), "--public-key", VERIFIER_KEY)
    assert consistent.returncode == 0, consistent.stderr


def _eventually(fetch: Callable[[], httpx.Response],
                done: Callable[[httpx.Response], bool] = lambda response: True,
                seconds: float = 30.0) -> httpx.Response:
    """Ask until the answer is 200 and ``done``: the server's followers sign checkpoints in their own time."""
    deadline = time.monotonic() + seconds
    while True:
        response = fetch()
        if response.status_code == 200 and done(response):
            return response
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)
