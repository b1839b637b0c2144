"""The alert rules in ops/prometheus pass `promtool check rules` and their unit tests (`promtool test rules`).

promtool comes from Debian's ``prometheus`` package (it ships /usr/bin/promtool).
When it is missing and we are root with apt-get, it is installed here; if it
still cannot be had, the test is skipped with the reason - and fails under
CI=true, where an alert rule that no test ran must not go green.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import postgres

RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
INSTALL_TIMEOUT_SECONDS = 600


def _install_promtool() -> str | None:
    """Why promtool could not be installed, or None once it is."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "not root: install it with 'apt-get install prometheus'"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True,  # noqa: S603 - fixed commands
                              timeout=INSTALL_TIMEOUT_SECONDS, check=False)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None if shutil.which("promtool") else "the prometheus package installed no promtool"


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = _install_promtool()
        found = shutil.which("promtool")
        if found is None:
            message = f"promtool unavailable ({reason}): the alert rules in ops/prometheus were NOT tested"
            if postgres.running_under_ci():
                pytest.fail(message)
            pytest.skip(message)
    return found


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=RULES, capture_output=True, text=True,  # noqa: S603
                          timeout=120, check=False)


def test_alert_rules_are_valid(promtool: str) -> None:
    checked = _run(promtool, "check", "rules", "invario-alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    tested = _run(promtool, "test", "rules", "invario-alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_every_required_alert_has_a_severity_and_a_unit_test() -> None:
    import yaml  # pyyaml comes with uvicorn[standard]

    rules = yaml.safe_load((RULES / "invario-alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((RULES / "invario-alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    for rule in rules:
        assert rule["labels"]["severity"] in {"P0", "P1", "P2", "P3"}, rule["alert"]
        assert rule["alert"] in tested, f"{rule['alert']} has no promtool unit test"
    names = {rule["alert"] for rule in rules}
    assert {"InvarioLedgerIntegrityBroken", "InvarioRejectedOutpaceAccepted", "InvarioHigh5xxRate",
            "InvarioHighLatencyP95", "InvarioAuthFailureSpike", "InvarioProjectionLagHigh", "InvarioJobFailing",
            "InvarioJobStuck", "InvarioReconciliationDivergence", "InvarioTargetDown"} <= names
