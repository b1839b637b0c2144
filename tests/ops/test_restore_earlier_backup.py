"""A backup written by an earlier release, whose log holds text no read model could store, restores.

``tests/fixtures/backups/nul-text-main-338e447.dump`` was written by main before
control characters were refused (its README says how): an account name, metadata
and a transaction description hold NUL. Restored with today's code, every
projection must run, every hash chain verify, and the event itself stay as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.helpers import notifications, runtime_on
from tests.ops.conftest import Deployment
from tests.support.event_encoders import assert_same_store, reference_ledger

pytestmark = pytest.mark.postgres

BACKUP = Path(__file__).resolve().parents[1] / "fixtures" / "backups" / "nul-text-main-338e447.dump"
EVENTS = 12


def test_a_backup_holding_nul_text_restores_with_every_projection_current(make_deployment) -> None:  # type: ignore[no-untyped-def]
    deployment: Deployment = make_deployment(migrate=False)
    restored = deployment.invario("restore", str(BACKUP), "--force")
    output = restored.stdout + restored.stderr
    assert restored.returncode == 0, output
    assert "Traceback" not in output
    assert "INTACT" in restored.stdout

    status = deployment.invario("projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["head"] == EVENTS
    assert {p["name"]: p["state"] for p in document["projections"]} == {
        p["name"]: "current" for p in document["projections"]}

    verified = deployment.invario("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # The event keeps its NUL; only the read model's copy of the text is made storable.
    rows = deployment.sql("SELECT description FROM read_transactions WHERE external_id = 'nul-1'")
    assert rows and "\x00" not in rows[0][0] and rows[0][0].startswith("coffee")
    shown = deployment.invario("projections", "event", "9")  # nul-1's Transaction.Posted
    assert shown.returncode == 0, shown.stderr
    assert "\\u0000" in shown.stdout


def test_every_event_of_the_backup_reads_and_hashes_alike_with_the_fast_encoders(make_deployment) -> None:  # type: ignore[no-untyped-def]
    """The events main wrote at 338e447 (the standard library's encoders) decode with orjson to the
    same values, re-encode to the same bytes, hash to their stored hashes, and their aggregates load."""
    deployment: Deployment = make_deployment(migrate=False)
    restored = deployment.invario("restore", str(BACKUP), "--force")
    assert restored.returncode == 0, restored.stdout + restored.stderr

    runtime = runtime_on(deployment.database_url)
    try:
        with reference_ledger(deployment.database_url) as reference:
            assert assert_same_store(runtime.ledger, reference) == EVENTS
        for stored in notifications(runtime.ledger):
            assert runtime.ledger.repository.get(stored.originator_id).version >= stored.originator_version
    finally:
        runtime.close()

    verified = deployment.invario("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
