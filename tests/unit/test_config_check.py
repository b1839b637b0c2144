"""Which secrets are weak, and the rule 'invario serve' refuses to start on."""

from __future__ import annotations

import base64
import secrets

import pytest
from pydantic import ValidationError

from infrastructure.config_check import secret_problems, secret_weakness, unsafe_to_serve
from infrastructure.errors import ConfigError
from infrastructure.settings import Settings

PG = {"INVARIO_DATABASE_URL": "postgresql://invario@db/invario"}


@pytest.mark.parametrize("secret", [secrets.token_urlsafe(48), secrets.token_urlsafe(24), secrets.token_hex(16),
                                    "test-pepper-do-not-use-anywhere-0123456789"],
                         ids=["urlsafe-48", "urlsafe-24", "hex-16", "fixed"])  # stable ids: xdist workers collect alike
def test_generated_secrets_are_strong(secret: str) -> None:
    assert secret_weakness(secret) is None


@pytest.mark.parametrize(("secret", "why"), [
    ("short", "shorter"),
    ("changeme" * 5, "placeholder"),
    ("my-example-token-for-the-ledger-service-2026", "placeholder"),
    ("a" * 64, "entropy"),
    ("abab" * 16, "entropy"),
])
def test_weak_secrets_say_why(secret: str, why: str) -> None:
    weakness = secret_weakness(secret)
    assert weakness is not None and why in weakness


def test_postgres_needs_a_pepper_and_sqlite_does_not() -> None:
    assert "INVARIO_AUTH_PEPPER" in secret_problems(PG)
    assert secret_problems({}) == {}


def test_a_signing_key_must_be_32_random_bytes() -> None:
    good = base64.b64encode(secrets.token_bytes(32)).decode()
    assert secret_problems({"INVARIO_SIGNING_KEY": good}) == {}
    for bad in ("not base64!", base64.b64encode(b"k" * 32).decode(), base64.b64encode(b"short").decode()):
        assert "INVARIO_SIGNING_KEY" in secret_problems({"INVARIO_SIGNING_KEY": bad})


def test_serving_refuses_every_problem_in_one_message_without_the_secret() -> None:
    environ = {**PG, "INVARIO_ADMIN_TOKEN": "z" * 40}
    with pytest.raises(ConfigError) as raised:
        unsafe_to_serve(environ)
    message = str(raised.value)
    assert "\n" not in message and "INVARIO_AUTH_PEPPER" in message and "INVARIO_ADMIN_TOKEN" in message
    assert "z" * 40 not in message
    unsafe_to_serve({"INVARIO_AUTH_PEPPER": secrets.token_urlsafe(48)})


def test_unbounded_api_statements_are_a_warning_on_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    from infrastructure.config_check import WARN, check_environment

    monkeypatch.setenv("INVARIO_DATABASE_URL", "postgresql://invario@db.internal:5432/invario")
    monkeypatch.setenv("INVARIO_DB_STATEMENT_TIMEOUT_SECONDS", "0")
    found = {finding.name: finding for finding in check_environment()}
    assert found["INVARIO_DB_STATEMENT_TIMEOUT_SECONDS"].status == WARN
    assert "unbounded" in found["INVARIO_DB_STATEMENT_TIMEOUT_SECONDS"].note
    monkeypatch.setenv("INVARIO_DB_STATEMENT_TIMEOUT_SECONDS", "30")
    assert {f.name: f for f in check_environment()}["INVARIO_DB_STATEMENT_TIMEOUT_SECONDS"].status != WARN


def test_one_settings_class_holds_every_variable_and_check_config_reports_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infrastructure.config_check import ERROR, check_environment, setting_fields, template
    from infrastructure.settings import Settings

    names = [name for name, _ in setting_fields()]
    assert names == ["INVARIO_" + field.upper() for field in Settings.model_fields]
    integrity = ["INVARIO_SIGNING_KEY", "INVARIO_DIGEST_INTERVAL_SECONDS", "INVARIO_INTEGRITY_RECHECK_SECONDS",
                 "INVARIO_INTEGRITY_FULL_VERIFY_SECONDS", "INVARIO_INTEGRITY_STATE_REFRESH_SECONDS",
                 "INVARIO_HEALTH_TIMEOUT_SECONDS", "INVARIO_READY_MAX_LAG"]
    assert set(integrity) <= set(names)
    assert all(f"#{name}=" in template() for name in integrity)
    monkeypatch.setenv("INVARIO_READY_MAX_LAG", "-1")
    found = {finding.name: finding for finding in check_environment()}
    assert found["INVARIO_READY_MAX_LAG"].status == ERROR


def test_the_amqp_url_is_in_the_template_and_its_password_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from infrastructure.config_check import ERROR, check_environment, template

    assert "#INVARIO_RELAY_AMQP_URL=" in template() and "#INVARIO_RELAY_AMQP_EXCHANGE=invario" in template()
    monkeypatch.setenv("INVARIO_RELAY_AMQP_URL", "amqp://relay:s3cret-pass@127.0.0.1:5672/ledger")
    found = {finding.name: finding for finding in check_environment()}
    assert "s3cret-pass" not in found["INVARIO_RELAY_AMQP_URL"].shown and found["INVARIO_RELAY_AMQP_URL"].status != ERROR
    assert "127.0.0.1:5672" in found["INVARIO_RELAY_AMQP_URL"].shown
    monkeypatch.setenv("INVARIO_RELAY_AMQP_URL", "nats://127.0.0.1:4222")
    assert {f.name: f for f in check_environment()}["INVARIO_RELAY_AMQP_URL"].status == ERROR


def test_the_relay_url_is_in_the_template_and_its_password_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from infrastructure.config_check import ERROR, check_environment, template

    assert "#INVARIO_RELAY_NATS_URL=" in template()
    monkeypatch.setenv("INVARIO_RELAY_NATS_URL", "nats://relay:s3cret-pass@127.0.0.1:4222")
    found = {finding.name: finding for finding in check_environment()}
    assert "s3cret-pass" not in found["INVARIO_RELAY_NATS_URL"].shown and found["INVARIO_RELAY_NATS_URL"].status != ERROR
    monkeypatch.setenv("INVARIO_RELAY_NATS_URL", "http://127.0.0.1:4222")
    assert {f.name: f for f in check_environment()}["INVARIO_RELAY_NATS_URL"].status == ERROR


def test_trusted_proxies_are_written_as_uvicorn_reads_them() -> None:
    """uvicorn takes a malformed entry for a name that never matches, silently: refuse it here."""
    assert Settings().trusted_proxies == "127.0.0.1,::1"
    assert Settings(trusted_proxies=" 10.0.0.1/8, 192.168.1.5 ,").trusted_proxies == "10.0.0.0/8,192.168.1.5"
    assert Settings(trusted_proxies="").trusted_proxies == ""
    assert Settings(trusted_proxies="10.0.0.1, *").trusted_proxies == "*"
    with pytest.raises(ValidationError, match="'proxy.local' is not an IP address or network"):
        Settings(trusted_proxies="10.0.0.1,proxy.local")
