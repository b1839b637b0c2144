"""``invario check-config`` and the settings ``invario serve`` refuses to start on."""

from __future__ import annotations

import secrets
from pathlib import Path

from infrastructure.config_check import setting_fields
from tests.e2e.test_cli_basics import run_invario

STRONG_PEPPER = secrets.token_urlsafe(48)
STRONG_ADMIN = secrets.token_urlsafe(48)
PG_URL = "postgresql://invario:s3cr3t-db-password@db.internal:5432/invario"


def _lines(output: str) -> dict[str, str]:
    """``INVARIO_NAME -> its report line``."""
    found = {}
    for line in output.splitlines():
        for word in line.split():
            if word.startswith("INVARIO_"):
                found[word] = line
                break
    return found


def test_the_defaults_are_fine_for_the_embedded_store(tmp_path: Path) -> None:
    result = run_invario("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _lines(result.stdout)
    for name, _ in setting_fields():
        assert name in lines and "(default)" in lines[name]
    assert lines["INVARIO_AUTH_PEPPER"].startswith("OK") and "generated" in lines["INVARIO_AUTH_PEPPER"]
    assert lines["INVARIO_ADMIN_TOKEN"].startswith("WARN")
    assert "0 error(s)" in result.stdout


def test_a_sound_postgres_configuration_passes_and_no_secret_is_printed(tmp_path: Path) -> None:
    signing_key = run_invario("generate-signing-key", cwd=tmp_path).stdout.strip().splitlines()[-1]
    env = {"INVARIO_DATABASE_URL": PG_URL, "INVARIO_AUTH_PEPPER": STRONG_PEPPER, "INVARIO_ADMIN_TOKEN": STRONG_ADMIN,
           "INVARIO_SIGNING_KEY": signing_key, "INVARIO_PORT": "9000"}
    result = run_invario("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert "9000" in lines["INVARIO_PORT"] and "(environment)" in lines["INVARIO_PORT"]
    assert lines["INVARIO_AUTH_PEPPER"].startswith("OK") and "hidden" in lines["INVARIO_AUTH_PEPPER"]
    for secret in (STRONG_PEPPER, STRONG_ADMIN, signing_key, "s3cr3t-db-password"):
        assert secret not in result.stdout + result.stderr


def test_missing_weak_and_invalid_settings_are_named_and_fail(tmp_path: Path) -> None:
    env = {"INVARIO_DATABASE_URL": PG_URL, "INVARIO_ADMIN_TOKEN": "changeme-changeme-changeme-changeme",
           "INVARIO_SIGNING_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "INVARIO_PORT": "0",
           "INVARIO_DB_POOL_SIZ": "3"}
    result = run_invario("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = _lines(result.stdout)
    assert lines["INVARIO_AUTH_PEPPER"].startswith("ERROR") and "not set" in lines["INVARIO_AUTH_PEPPER"]
    assert lines["INVARIO_ADMIN_TOKEN"].startswith("ERROR") and "placeholder" in lines["INVARIO_ADMIN_TOKEN"]
    assert lines["INVARIO_SIGNING_KEY"].startswith("ERROR") and "entropy" in lines["INVARIO_SIGNING_KEY"]
    assert lines["INVARIO_PORT"].startswith("ERROR")
    assert lines["INVARIO_DB_POOL_SIZ"].startswith("WARN") and "typo" in lines["INVARIO_DB_POOL_SIZ"]
    assert "4 error(s)" in result.stderr
    assert "changeme-changeme" not in result.stdout + result.stderr


def test_low_entropy_and_reused_secrets_are_weak(tmp_path: Path) -> None:
    env = {"INVARIO_AUTH_PEPPER": "ab" * 24, "INVARIO_ADMIN_TOKEN": STRONG_PEPPER}
    assert run_invario("check-config", env=env, cwd=tmp_path).returncode == 2
    env = {"INVARIO_AUTH_PEPPER": STRONG_PEPPER, "INVARIO_ADMIN_TOKEN": STRONG_PEPPER}
    result = run_invario("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "must differ" in _lines(result.stdout)["INVARIO_ADMIN_TOKEN"]


def test_the_template_lists_every_setting_and_its_defaults_pass(tmp_path: Path) -> None:
    result = run_invario("check-config", "--template", cwd=tmp_path)
    assert result.returncode == 0
    assignments = [line[1:] for line in result.stdout.splitlines() if line.startswith("#INVARIO_")]
    names = [line.split("=", 1)[0] for line in assignments]
    assert names == [name for name, _ in setting_fields()]
    for name, info in setting_fields():
        assert info.description and info.description in result.stdout, name
    defaults = dict(line.split("=", 1) for line in assignments if not line.endswith("="))
    checked = run_invario("check-config", env=defaults, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout


def test_serve_refuses_unsafe_settings_with_one_line(tmp_path: Path) -> None:
    env = {"INVARIO_ADMIN_TOKEN": "x" * 40, "INVARIO_PORT": "1"}  # never gets as far as binding
    result = run_invario("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "refusing to start" in result.stderr and "INVARIO_ADMIN_TOKEN" in result.stderr
    assert "x" * 40 not in result.stderr
    assert not (tmp_path / "var").exists()  # refused before touching the store
