"""``invario proof``: check proofs offline, with no database and no network (docs/proofs.md).

- ``invario proof verify FILE --public-key KEY``: a bundle saved from
  ``GET /v1/transactions/{id}/proof``;
- ``invario proof consistency OLD NEW --proof FILE --public-key KEY``: two saved
  checkpoints (``GET /v1/ledger/checkpoint``, as JSON or the bare note) and the
  proof between them (``GET /v1/ledger/consistency``);
- ``invario proof public-key``: the verifier key of INVARIO_SIGNING_KEY, to hand
  to whoever verifies (read from the setting; no database either).

The checking is ``domain/proof_bundle.py``'s; this module only reads files.
Exit codes: 0 the proof holds; 1 it does not (one line: ``rejected: <reason>:
<what failed>``); 2 bad input (an unreadable file, not JSON, a malformed key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from domain.merkle import ProofRejected
from domain.proof_bundle import VerifierKey, verify_bundle, verify_consistency_proof
from interfaces.cli.common import EXIT_USAGE, fail, operator_errors, read_bounded

EXIT_REJECTED = 1
FILE_MAX_BYTES = 16 * 1024 * 1024

proof_app = typer.Typer(name="proof", no_args_is_help=True,
                        help="Check proofs of inclusion and consistency offline (docs/proofs.md).")

PublicKey = Annotated[str, typer.Option(
    "--public-key", help="The ledger's public key: a C2SP verifier key (name+id+key, from 'invario proof "
    "public-key') or the base64 of the 32-byte Ed25519 key. Get it from the ledger's operator, not from the proof",
)]


def register(app: typer.Typer) -> None:
    app.add_typer(proof_app)


def _key(text: str) -> VerifierKey:
    try:
        return VerifierKey.parse(text)
    except ValueError as exc:
        raise fail(f"--public-key: {exc}", EXIT_USAGE) from None


def _read(path: Path, what: str) -> str:
    data = read_bounded(path, FILE_MAX_BYTES, what, f"{FILE_MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(f"{what}: {path} is not UTF-8 text", EXIT_USAGE) from None


def _json(path: Path, what: str) -> Any:
    text = _read(path, what)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise fail(f"{what}: {path} is not JSON", EXIT_USAGE) from None


def _checkpoint_note(path: Path, what: str) -> Any:
    """A saved checkpoint: the JSON of GET /v1/ledger/checkpoint (its note), or the note itself."""
    text = _read(path, what)
    if not text.lstrip().startswith("{"):
        return text
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise fail(f"{what}: {path} is neither a checkpoint note nor JSON", EXIT_USAGE) from None
    return document.get("note") if isinstance(document, dict) else None


def _rejected(rejection: ProofRejected) -> typer.Exit:
    return fail(f"rejected: {rejection.reason}: {rejection.detail}", EXIT_REJECTED)


@proof_app.command("verify")
def verify_proof(
    file: Annotated[Path, typer.Argument(help="A bundle saved from GET /v1/transactions/{id}/proof", dir_okay=False)],
    public_key: PublicKey,
) -> None:
    """Check a transaction's proof bundle: the checkpoint's signature and every event's inclusion under it."""
    key = _key(public_key)
    try:
        verified = verify_bundle(_json(file, "FILE"), key, _signature_check())
    except ProofRejected as rejection:
        raise _rejected(rejection) from None
    checkpoint = verified.checkpoint
    typer.echo(f"valid: {len(verified.leaf_indexes)} event(s) of transaction {verified.transaction_id} are leaves "
               f"{', '.join(map(str, verified.leaf_indexes))} of {checkpoint.origin}, tree size {checkpoint.size}")


@proof_app.command("consistency")
def verify_consistency(
    old: Annotated[Path, typer.Argument(help="The older saved checkpoint", dir_okay=False)],
    new: Annotated[Path, typer.Argument(help="The newer saved checkpoint", dir_okay=False)],
    proof: Annotated[Path, typer.Option("--proof", help="Saved from GET /v1/ledger/consistency?from=OLD&to=NEW",
                                        dir_okay=False)],
    public_key: PublicKey,
) -> None:
    """Check that the log of NEW extends the log of OLD: nothing up to OLD was changed, dropped or reordered."""
    key = _key(public_key)
    old_note, new_note = _checkpoint_note(old, "OLD"), _checkpoint_note(new, "NEW")
    try:
        first, second = verify_consistency_proof(old_note, new_note, _json(proof, "--proof"), key,
                                                 _signature_check())
    except ProofRejected as rejection:
        raise _rejected(rejection) from None
    typer.echo(f"consistent: {first.origin} of size {second.size} extends its tree of size {first.size}")


@proof_app.command("public-key")
def public_key_cmd() -> None:
    """Print the verifier key of INVARIO_SIGNING_KEY (C2SP format, named after INVARIO_CHECKPOINT_ORIGIN)."""
    from infrastructure.settings import get_settings
    from infrastructure.signing import load_signing_key

    with operator_errors():
        settings = get_settings()
        secret = settings.signing_key
        key = load_signing_key(secret.get_secret_value() if secret else None)
    if key is None:
        raise fail("INVARIO_SIGNING_KEY is not set: no checkpoints are signed", EXIT_USAGE)
    typer.echo(VerifierKey(key.public_key_raw).verifier_text(settings.checkpoint_origin))


def _signature_check() -> Any:
    # Deferred: cryptography's Ed25519 only when a proof is checked (infrastructure.signing wraps it).
    from infrastructure.signing import ed25519_signature_valid

    return ed25519_signature_valid
