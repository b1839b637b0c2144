"""The offline verifier (domain/proof_bundle.py): signed notes, checkpoints, bundles and consistency files.

Checked against the C2SP signed-note example of golang.org/x/mod/sumdb/note (a
published key, note and signature: Ed25519 is deterministic, so our notes must
match byte for byte), then with forged bundles built from
``tests/support/proof_mutations.py``: every inclusion forgery of the Merkle
tests carried in a bundle whose checkpoint the honest key signed, changed event
documents, and random one-byte edits of the saved file. None may be accepted.
"""

from __future__ import annotations

import ast
import base64
import json
import random
import sys
from itertools import chain
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain import proof_bundle
from domain.merkle import ProofRejected
from domain.proof_bundle import (
    VerifierKey,
    checkpoint_body,
    note_key_id,
    open_note,
    signed_note,
    verify_bundle,
    verify_checkpoint,
    verify_consistency_proof,
)
from infrastructure.signing import ed25519_signature_valid
from tests.support.proof_mutations import (
    BundleLog,
    bundle_claim_mutations,
    bundle_document_mutations,
    bundle_false_accepts,
    text_mutations,
)

# golang.org/x/mod/sumdb/note: the package documentation's example (also in its note_test.go).
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

CHECK = ed25519_signature_valid
LOG = BundleLog.of(57, seed=18)
KEY = VerifierKey(LOG.public_key, LOG.origin)


def reason(action: object) -> str:
    with pytest.raises(ProofRejected) as rejected:
        action()  # type: ignore[operator]
    return rejected.value.reason


def test_the_published_signed_note_opens_and_ours_are_byte_for_byte_the_same() -> None:
    key = VerifierKey.parse(GO_VERIFIER_KEY)
    assert key.name == "PeterNeumann" and note_key_id("PeterNeumann", key.public_key).hex() == "c74f20a3"
    assert open_note(GO_NOTE, key, CHECK) == GO_TEXT
    assert key.verifier_text("PeterNeumann") == GO_VERIFIER_KEY
    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])[1:]
    private = Ed25519PrivateKey.from_private_bytes(seed)
    assert signed_note(GO_TEXT.encode(), "PeterNeumann", key.public_key, private.sign(GO_TEXT.encode())) == GO_NOTE
    assert reason(lambda: open_note(GO_NOTE.replace("cryptography", "cryptographY"), key, CHECK)) == "bad_signature"
    assert reason(lambda: open_note(GO_NOTE, VerifierKey(key.public_key, "EnochRoot"), CHECK)) == "untrusted_signer"
    # A checkpoint is a note whose text is origin, size and root: this one's is not.
    assert reason(lambda: verify_checkpoint(GO_NOTE, key, CHECK)) == "malformed_checkpoint"


def test_a_verifier_key_is_c2sp_text_or_a_bare_base64_key() -> None:
    assert VerifierKey.parse(base64.b64encode(LOG.public_key).decode()) == VerifierKey(LOG.public_key)
    assert VerifierKey.parse(KEY.verifier_text(LOG.origin)) == KEY
    for bad in ("", "abc", GO_VERIFIER_KEY.replace("c74f20a3", "c74f20a4"), GO_VERIFIER_KEY.replace("AR", "AS", 1),
                "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"):
        with pytest.raises(ValueError):
            VerifierKey.parse(bad)


def test_an_honest_bundle_verifies_under_any_checkpoint_covering_it() -> None:
    for size in (max(LOG.member_indexes) + 1, 40, 57):
        verified = verify_bundle(LOG.bundle(size), KEY, CHECK)
        assert verified.leaf_indexes == tuple(LOG.member_indexes)
        assert (verified.checkpoint.size, verified.checkpoint.origin) == (size, LOG.origin)
    # The bare key (no name) trusts the note's own key name, bound by the key id.
    verify_bundle(LOG.bundle(57), VerifierKey(LOG.public_key), CHECK)


def test_a_few_thousand_forged_bundles_are_all_rejected() -> None:
    small = BundleLog.of(7, seed=3)
    found = [
        bundle_false_accepts(chain(bundle_claim_mutations(LOG, 57), bundle_claim_mutations(LOG, 44),
                                   bundle_document_mutations(LOG, 57)), KEY, CHECK),
        bundle_false_accepts(chain(bundle_claim_mutations(small, 7), bundle_document_mutations(small, 7)),
                             VerifierKey(small.public_key, small.origin), CHECK),
    ]
    assert [accepted for _, accepted in found] == [[], []]
    assert sum(checked for checked, _ in found) >= 2_000


def test_no_one_byte_edit_of_a_saved_bundle_is_accepted() -> None:
    """Every edit either breaks the JSON, changes nothing it means (a space for a newline), or is refused."""
    text = json.dumps(LOG.bundle(57), indent=2, ensure_ascii=False)
    original = json.loads(text)
    rng, checked = random.Random(57), 0
    for what, edited in text_mutations(text, rng, 3_000):
        try:
            document = json.loads(edited)
        except ValueError:
            continue  # the CLI refuses it as "not JSON"
        if document == original:
            continue  # JSON whitespace: the same bundle
        checked += 1
        with pytest.raises(ProofRejected):
            verify_bundle(document, KEY, CHECK)
            pytest.fail(f"accepted after {what}")
    assert checked >= 500


def test_each_refusal_names_what_failed() -> None:
    honest = LOG.bundle(57)
    stamp_at = honest["checkpoint"].rindex(" ") + 1
    flipped = honest["checkpoint"][:stamp_at] + base64.b64encode(bytes(
        b ^ (i == 10) for i, b in enumerate(base64.b64decode(honest["checkpoint"][stamp_at:])))).decode() + "\n"
    cases = {
        "bad_signature": {**honest, "checkpoint": flipped},
        "untrusted_signer": {**honest, "checkpoint": LOG.note(57, LOG.log.source.root(57)).replace(LOG.origin, "x/y")},
        "malformed_checkpoint": {**honest, "checkpoint": "not a note"},
        "malformed_bundle": {**honest, "format": "invario-proof-bundle/2"},
        "wrong_transaction": {**honest, "transaction_id": "00000000-0000-0000-0000-000000000000"},
        "index_out_of_range": LOG.bundle(57, {LOG.member_indexes[0]: (57, ())}),
        "malformed_hash": {**honest, "events": [{**honest["events"][0], "inclusion_path": ["not base64!"]}]},
    }
    for expected, bundle in cases.items():
        assert reason(lambda bundle=bundle: verify_bundle(bundle, KEY, CHECK)) == expected, expected


def consistency_document(first: int, second: int) -> dict[str, object]:
    proof = LOG.log.source.consistency_proof(first, second)
    return {"format": "invario-consistency-proof/1", "from_size": first, "to_size": second,
            "proof": [base64.b64encode(entry).decode() for entry in proof]}


def test_consistency_between_two_signed_checkpoints_and_a_split_view() -> None:
    root = LOG.log.source.root
    old, new = LOG.note(20, root(20)), LOG.note(57, root(57))
    first, second = verify_consistency_proof(old, new, consistency_document(20, 57), KEY, CHECK)
    assert (first.size, second.size) == (20, 57)
    forked = LOG.note(20, bytes(32))
    assert reason(lambda: verify_consistency_proof(old, forked, consistency_document(20, 20), KEY, CHECK)) == "split_view"
    assert reason(lambda: verify_consistency_proof(forked, new, consistency_document(20, 57), KEY, CHECK)) == \
        "first_root_mismatch"
    assert reason(lambda: verify_consistency_proof(old, new, consistency_document(21, 57), KEY, CHECK)) == "wrong_sizes"
    other_log = signed_note(checkpoint_body("other/log", 57, root(57)), LOG.origin, LOG.public_key,
                            LOG.private_key.sign(checkpoint_body("other/log", 57, root(57))))
    assert reason(lambda: verify_consistency_proof(old, other_log, consistency_document(20, 57), KEY, CHECK)) == \
        "origin_mismatch"


@pytest.mark.parametrize("hostile", [None, 7, [], "x", {"format": 1}, {"events": None}, float("nan"),
                                     {"format": "invario-proof-bundle/1", "transaction_id": "t", "checkpoint": "\ud800\n",
                                      "events": []}])
def test_hostile_documents_are_refused_never_crash(hostile: object) -> None:
    for action in (lambda: verify_bundle(hostile, KEY, CHECK), lambda: verify_checkpoint(hostile, KEY, CHECK),
                   lambda: verify_consistency_proof(hostile, hostile, hostile, KEY, CHECK)):
        reason(action)


def test_the_verifier_can_be_vendored_it_imports_the_stdlib_merkle_and_canonical_alone() -> None:
    for module in (proof_bundle, sys.modules["domain.canonical"]):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))  # type: ignore[arg-type]
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        outside = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
        assert outside <= {"__future__", "domain.merkle", "domain.canonical"}, outside
