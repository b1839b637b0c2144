"""Proofs over the global log (docs/proofs.md): signed checkpoints, a transaction's proof bundle, consistency.

A bundle is exactly the document ``domain.proof_bundle.verify_bundle`` checks
(``invario proof verify``), so a client saves the answer as it is; what is not
part of the proof (the log positions) travels in headers. The checkpoint and
consistency routes are ledger-wide (any tenant's key): a tree head and the
hashes of a consistency proof reveal no tenant's data. A transaction's proof is
its tenant's alone: another tenant's id answers 404.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from domain.errors import TransactionNotFound
from interfaces.http.auth import Reader
from interfaces.http.docs import errors
from interfaces.http.proof_schemas import CheckpointOut, ConsistencyProofOut, TransactionProofOut
from interfaces.http.read_access import read_models
from interfaces.http.responses import POSITION_HEADER, MinPosition, await_position
from projections.jobs.checkpoints import StoredCheckpoint
from projections.jobs.proofs import LedgerProofs

router = APIRouter(prefix="/v1", tags=["proofs"])

PROOF_ERRORS = errors(400, 401, 403, 404, 409, 429, 503)
CHECKPOINT_ERRORS = errors(400, 401, 403, 404, 429)
CONSISTENCY_ERRORS = errors(400, 401, 403, 404, 422, 429)
TreeSize = Annotated[int, Query(ge=1, le=2**63 - 1, description="A signed checkpoint's tree size")]
POSITIONS_HEADER = "Invario-Event-Positions"


def _proofs(request: Request) -> LedgerProofs:
    proofs: LedgerProofs = request.app.state.services.proofs
    return proofs


def _json(document: dict[str, Any], position: int, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return Response(body, media_type="application/json", headers={POSITION_HEADER: str(position), **(headers or {})})


def _checkpoint_document(checkpoint: StoredCheckpoint) -> dict[str, Any]:
    return {"origin": checkpoint.note.split("\n", 1)[0], "size": checkpoint.size,
            "root_hash": base64.b64encode(checkpoint.root).decode("ascii"), "position": checkpoint.position,
            "signed_at": checkpoint.signed_at.isoformat().replace("+00:00", "Z"), "note": checkpoint.note}


@router.get("/ledger/checkpoint", response_model=CheckpointOut, responses=CHECKPOINT_ERRORS,
            summary="The latest signed checkpoint of the ledger's Merkle tree, or the one of ?size=")
def get_ledger_checkpoint(request: Request, principal: Reader, size: TreeSize | None = None) -> Response:
    del principal  # any tenant's key: a tree head holds no tenant's data
    checkpoint = _proofs(request).checkpoint(size)
    return _json(_checkpoint_document(checkpoint), checkpoint.position)


@router.get("/ledger/consistency", response_model=ConsistencyProofOut, responses=CONSISTENCY_ERRORS,
            summary="RFC 9162 consistency proof between two signed checkpoints")
def get_ledger_consistency_proof(
    request: Request, principal: Reader,
    from_size: Annotated[int, Query(alias="from", ge=1, le=2**63 - 1, description="The older checkpoint's size")],
    to_size: Annotated[int, Query(alias="to", ge=1, le=2**63 - 1, description="The newer checkpoint's size")],
) -> Response:
    del principal
    document = _proofs(request).consistency(from_size, to_size)
    return _json(document, 0)


@router.get("/transactions/{transaction_id}/proof", response_model=TransactionProofOut, responses=PROOF_ERRORS,
            summary="The transaction's events with their inclusion proofs under a signed checkpoint (a bundle "
                    "'invario proof verify' checks offline)")
def get_transaction_proof(request: Request, transaction_id: UUID, principal: Reader,
                          min_position: MinPosition = None) -> Response:
    models = read_models(request)
    await_position(request, models, min_position)
    if models.get_transaction(principal.tenant_id, transaction_id) is None:  # another tenant's: 404 as well
        raise TransactionNotFound(f"transaction {transaction_id} not found", transaction_id=str(transaction_id))
    bundle = _proofs(request).transaction_bundle(transaction_id)
    return _json(bundle.document, bundle.checkpoint.position,
                 {POSITIONS_HEADER: ",".join(str(position) for position in bundle.positions)})
