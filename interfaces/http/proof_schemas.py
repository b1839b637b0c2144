"""The proof routes' answers, for the OpenAPI schema (the formats are domain/proof_bundle.py's)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CheckpointOut(BaseModel):
    origin: str = Field(description="The log's name (INVARIO_CHECKPOINT_ORIGIN), the note's first line")
    size: int = Field(description="Tree size: how many events of the log the tree holds")
    root_hash: str = Field(description="RFC 9162 root hash, base64")
    position: int = Field(description="Log position of the tree's last event: a write at or below it is covered")
    signed_at: str = Field(description="When it was signed (UTC); not signed itself")
    note: str = Field(description="The C2SP signed note (tlog-checkpoint): what a verifier checks and keeps")


class ProofEventOut(BaseModel):
    leaf_index: int = Field(description="The event's leaf in the tree: its place in the log, from 0")
    event: dict[str, Any] = Field(description="The event's canonical document {event_type, fields}: its hash is "
                                  "SHA-256 of these bytes re-encoded canonically")
    inclusion_path: list[str] = Field(description="RFC 9162 inclusion path, base64 hashes from the leaf up")


class TransactionProofOut(BaseModel):
    format: str = Field(description="invario-proof-bundle/1")
    transaction_id: str
    checkpoint: str = Field(description="The signed checkpoint note every path leads to")
    events: list[ProofEventOut]


class ConsistencyProofOut(BaseModel):
    format: str = Field(description="invario-consistency-proof/1")
    from_size: int
    to_size: int
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64 hashes")
