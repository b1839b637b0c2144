"""Offline checks of what Invario hands out: signed checkpoints, proof bundles, consistency proofs.

A **checkpoint** is a C2SP ``tlog-checkpoint`` in the C2SP ``signed-note`` format::

    <origin>\\n<tree size, decimal>\\n<root hash, base64>\\n\\n\u2014 <key name> <base64(key id || signature)>\\n

signed with Ed25519 over the body (the text up to and including the line before
the blank line); the key id is the first 4 bytes of
SHA-256(key name || 0x0A || 0x01 || public key), 0x01 naming Ed25519.

A **proof bundle** (``GET /v1/transactions/{id}/proof``) is JSON::

    {"format": "invario-proof-bundle/1", "transaction_id": "...", "checkpoint": "<note>",
     "events": [{"leaf_index": 7, "event": {"event_type": ..., "fields": {...}},
                 "inclusion_path": ["<base64>", ...]}, ...]}

Each event is its canonical document (``domain.canonical``): the verifier
re-encodes it, hashes it (the event hash), takes the RFC 9162 leaf hash of that
and checks the inclusion path up to the checkpoint's root. Every member is
checked or authenticated; an unknown one is refused, so no byte of a bundle can
change its meaning unnoticed.

This module imports the standard library, ``domain.merkle`` and
``domain.canonical`` only, so a client can vendor the three files. Ed25519 is not
in the standard library: the caller passes a ``SignatureCheck`` (Invario's CLI
uses ``cryptography``; docs/proofs.md shows the three lines). Every refusal is a
``ProofRejected`` whose ``reason`` is a ``REJECTED_*`` code of this module or of
``domain.merkle``; nothing else is raised for any input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.canonical import reference_encoding
from domain.merkle import HASH_SIZE, MAX_TREE_SIZE, ProofRejected, leaf_hash, verify_consistency, verify_inclusion

BUNDLE_FORMAT = "invario-proof-bundle/1"
CONSISTENCY_FORMAT = "invario-consistency-proof/1"
ED25519_SIGNATURE_TYPE = b"\x01"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_BYTES = 4
NOTE_CHARS_MAX = 16_384
BUNDLE_EVENTS_MAX = 10_000
EM_DASH = "\u2014"

REJECTED_MALFORMED_BUNDLE = "malformed_bundle"  # not a bundle or proof document: a member missing, unknown or mistyped
REJECTED_MALFORMED_CHECKPOINT = "malformed_checkpoint"  # not a signed checkpoint note
REJECTED_UNTRUSTED_SIGNER = "untrusted_signer"  # no signature by the trusted key
REJECTED_BAD_SIGNATURE = "bad_signature"  # the trusted key's signature does not verify: the note was altered
REJECTED_WRONG_TRANSACTION = "wrong_transaction"  # an event of another transaction
REJECTED_DUPLICATE_LEAF = "duplicate_leaf"  # one leaf index twice
REJECTED_ORIGIN_MISMATCH = "origin_mismatch"  # two checkpoints of different logs
REJECTED_WRONG_SIZES = "wrong_sizes"  # a consistency proof between other sizes than the checkpoints'

# (public key, signature, message) -> whether the Ed25519 signature is valid.
SignatureCheck = Callable[[bytes, bytes, bytes], bool]

_KEY_NAME = re.compile(r"^[^\s+]+$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,19})$")


@dataclass(frozen=True)
class VerifierKey:
    """A trusted public key; ``name`` is None for a bare key (the note's own name is then taken)."""

    public_key: bytes
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """A C2SP verifier key ``<name>+<hex key id>+<base64(0x01 || key)>``, or the base64 of a bare 32-byte key.

        Raises ``ValueError`` when it is neither.
        """
        text = text.strip()
        raw = _b64(text)
        if raw is not None and len(raw) == PUBLIC_KEY_BYTES:
            return cls(raw)
        parts = text.split("+", 2)  # a name has no '+'; the base64 after the key id may
        if len(parts) != 3:
            raise ValueError("a public key is the base64 of 32 bytes, or a verifier key name+id+key")
        name, key_id_hex, encoded = parts
        raw = _b64(encoded)
        if raw is None or len(raw) != 1 + PUBLIC_KEY_BYTES or raw[:1] != ED25519_SIGNATURE_TYPE:
            raise ValueError("a verifier key's last part is the base64 of 0x01 and a 32-byte Ed25519 key")
        key = cls(raw[1:], name)
        if not _KEY_NAME.match(name) or key_id_hex != note_key_id(name, key.public_key).hex():
            raise ValueError("a verifier key's name and key id do not belong to its key")
        return key

    def verifier_text(self, name: str) -> str:
        """This key as a C2SP verifier key under ``name``."""
        encoded = base64.b64encode(ED25519_SIGNATURE_TYPE + self.public_key).decode("ascii")
        return f"{name}+{note_key_id(name, self.public_key).hex()}+{encoded}"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature was checked: the log ``origin`` had ``size`` leaves and ``root``."""

    origin: str
    size: int
    root: bytes


@dataclass(frozen=True)
class VerifiedBundle:
    transaction_id: str
    checkpoint: Checkpoint
    leaf_indexes: tuple[int, ...]


# --- writing notes (the signing side uses these exact bytes) ---------------------------------------


def note_key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_SIGNATURE_TYPE + public_key).digest()[:KEY_ID_BYTES]


def checkpoint_body(origin: str, size: int, root: bytes) -> bytes:
    """The signed text of a C2SP tlog-checkpoint: origin, size, base64 root, each on its line."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n".encode()


def signed_note(body: bytes, name: str, public_key: bytes, signature: bytes) -> str:
    """The note: body, a blank line, and the signature line ``— name base64(key id || signature)``."""
    stamp = base64.b64encode(note_key_id(name, public_key) + signature).decode("ascii")
    return f"{body.decode('utf-8')}\n{EM_DASH} {name} {stamp}\n"


# --- checking ---------------------------------------------------------------------------------------


def open_note(note: Any, key: VerifierKey, check_signature: SignatureCheck) -> str:
    """A C2SP signed note's text, once ``key``'s signature on it is checked (other signatures are ignored)."""
    if not isinstance(note, str) or not note.endswith("\n") or len(note) > NOTE_CHARS_MAX or "\r" in note:
        raise _malformed_checkpoint("a note is text ending with a newline")
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's \ud800 escapes can make
        raise _malformed_checkpoint("a note is UTF-8 text") from None
    split = note.rfind("\n\n")
    if split < 0:
        raise _malformed_checkpoint("no blank line between the text and its signatures")
    text, signatures = note[: split + 1], note[split + 2:].splitlines()
    stamps = [_parse_signature_line(line) for line in signatures]
    if not stamps:
        raise _malformed_checkpoint("no signature line")
    for name, stamp in stamps:
        if key.name not in (None, name) or stamp[:KEY_ID_BYTES] != note_key_id(name, key.public_key):
            continue
        if len(stamp) != KEY_ID_BYTES + SIGNATURE_BYTES:
            raise ProofRejected(REJECTED_BAD_SIGNATURE, f"the signature by {name} is not {SIGNATURE_BYTES} bytes")
        if not _signature_holds(check_signature, key.public_key, stamp[KEY_ID_BYTES:], text.encode("utf-8")):
            raise ProofRejected(REJECTED_BAD_SIGNATURE, f"the signature by {name} does not verify: the note was altered")
        return text
    raise ProofRejected(REJECTED_UNTRUSTED_SIGNER, "the note carries no signature by the trusted key")


def verify_checkpoint(note: Any, key: VerifierKey, check_signature: SignatureCheck) -> Checkpoint:
    """Parse a signed checkpoint note and check ``key``'s signature on it."""
    return _parse_body(open_note(note, key, check_signature))


def verify_bundle(bundle: Any, key: VerifierKey, check_signature: SignatureCheck) -> VerifiedBundle:
    """Check a proof bundle: its checkpoint's signature, and every event's inclusion under that checkpoint."""
    document = _members(bundle, {"format", "transaction_id", "checkpoint", "events"}, "the bundle")
    if document["format"] != BUNDLE_FORMAT:
        raise _malformed(f"format is not {BUNDLE_FORMAT!r}")
    transaction_id = document["transaction_id"]
    if not isinstance(transaction_id, str):
        raise _malformed("transaction_id is not a string")
    checkpoint = verify_checkpoint(document["checkpoint"], key, check_signature)
    events = document["events"]
    if not isinstance(events, list) or not 0 < len(events) <= BUNDLE_EVENTS_MAX:
        raise _malformed(f"events is a list of 1 to {BUNDLE_EVENTS_MAX} entries")
    seen: set[int] = set()
    for number, entry in enumerate(events):
        index = _verify_entry(entry, number, transaction_id, checkpoint)
        if index in seen:
            raise ProofRejected(REJECTED_DUPLICATE_LEAF, f"leaf {index} appears twice")
        seen.add(index)
    return VerifiedBundle(transaction_id, checkpoint, tuple(sorted(seen)))


def verify_consistency_proof(
    old_note: Any, new_note: Any, proof_document: Any, key: VerifierKey, check_signature: SignatureCheck
) -> tuple[Checkpoint, Checkpoint]:
    """Check that the log of the old checkpoint is a prefix of the new one's (``GET /v1/ledger/consistency``)."""
    old = verify_checkpoint(old_note, key, check_signature)
    new = verify_checkpoint(new_note, key, check_signature)
    if old.origin != new.origin:
        raise ProofRejected(REJECTED_ORIGIN_MISMATCH, f"checkpoints of two logs: {old.origin!r} and {new.origin!r}")
    document = _members(proof_document, {"format", "from_size", "to_size", "proof"}, "the consistency proof")
    if document["format"] != CONSISTENCY_FORMAT:
        raise _malformed(f"format is not {CONSISTENCY_FORMAT!r}")
    sizes = (document["from_size"], document["to_size"])
    if any(type(size) is not int for size in sizes) or sizes != (old.size, new.size):  # bool is no size
        raise ProofRejected(REJECTED_WRONG_SIZES, f"the proof is from {sizes[0]!r} to {sizes[1]!r}, "
                                                  f"the checkpoints {old.size} and {new.size}")
    verify_consistency(old.size, new.size, old.root, new.root, _hashes(document["proof"], "proof"))
    return old, new


def _verify_entry(entry: Any, number: int, transaction_id: str, checkpoint: Checkpoint) -> int:
    member = _members(entry, {"leaf_index", "event", "inclusion_path"}, f"events[{number}]")
    event = _members(member["event"], {"event_type", "fields"}, f"events[{number}].event")
    if not isinstance(event["event_type"], str) or not isinstance(event["fields"], dict):
        raise _malformed(f"events[{number}].event is not an event document")
    if not _belongs_to(event, transaction_id):
        raise ProofRejected(REJECTED_WRONG_TRANSACTION, f"events[{number}] is not an event of {transaction_id}")
    try:
        encoded = reference_encoding(event)
    except (TypeError, ValueError, RecursionError) as exc:  # e.g. a lone surrogate: not canonical JSON
        raise _malformed(f"events[{number}].event cannot be encoded: {exc}") from None
    leaf = leaf_hash(hashlib.sha256(encoded).digest())
    index = member["leaf_index"]
    verify_inclusion(leaf, index, checkpoint.size, _hashes(member["inclusion_path"], f"events[{number}]"),
                     checkpoint.root)
    return index


def _belongs_to(event: dict[str, Any], transaction_id: str) -> bool:
    fields = event["fields"]
    if event["event_type"].startswith("Transaction."):
        return fields.get("originator_id") == transaction_id
    return fields.get("transaction_id") == transaction_id


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise _malformed_checkpoint("the text has fewer than three lines (origin, size, root)")
    origin, size_text, root_text = lines[:3]
    if not origin or not _DECIMAL.match(size_text) or int(size_text) > MAX_TREE_SIZE:
        raise _malformed_checkpoint("the first lines are not an origin and a decimal tree size")
    root = _b64(root_text)
    if root is None or len(root) != HASH_SIZE:
        raise _malformed_checkpoint("the third line is not the base64 of a 32-byte root hash")
    return Checkpoint(origin, int(size_text), root)


def _parse_signature_line(line: str) -> tuple[str, bytes]:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != EM_DASH or not _KEY_NAME.match(parts[1]):
        raise _malformed_checkpoint("a signature line is '\u2014 <name> <base64>'")
    stamp = _b64(parts[2])
    if stamp is None or len(stamp) <= KEY_ID_BYTES:
        raise _malformed_checkpoint("a signature is the base64 of a key id and a signature")
    return parts[1], stamp


def _signature_holds(check: SignatureCheck, public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        return check(public_key, signature, message) is True
    except Exception:  # noqa: BLE001 - a failing check is a failed signature, never a crash
        return False


def _members(value: Any, names: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != names:
        found = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise _malformed(f"{what} must have exactly the members {sorted(names)}, found {found}")
    return value


def _hashes(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise _malformed(f"{what}: a proof is a list of base64 hashes")
    decoded = [_b64(value) if isinstance(value, str) else None for value in values]
    if any(entry is None for entry in decoded):
        raise ProofRejected("malformed_hash", f"{what}: an entry is not canonical base64")
    return decoded  # type: ignore[return-value]  # lengths are checked by domain.merkle


def _b64(text: str) -> bytes | None:
    """Strict, canonical base64: one text per value, so an edited character is never read as the same bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def _malformed(detail: str) -> ProofRejected:
    return ProofRejected(REJECTED_MALFORMED_BUNDLE, detail)


def _malformed_checkpoint(detail: str) -> ProofRejected:
    return ProofRejected(REJECTED_MALFORMED_CHECKPOINT, detail)
