"""openapi-python-client, kept apart from the test venv, and the client it generates.

The generator pins typer and httpx below what Invario installs, so it is not in the
``test`` extra: ``make test`` installs the ``codegen`` extra of pyproject.toml with
``pip install --target`` into ``<venv>/codegen`` (``python -m tests.support.codegen``),
and ``generate`` runs it from there in a subprocess, whose imports find that directory
first. It reads a local file and its formatting hooks (ruff) are turned off: it needs no
network, and takes about two seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODEGEN_DIR = Path(sys.prefix) / "codegen"
GENERATE_TIMEOUT_SECONDS = 120
INSTALL_TIMEOUT_SECONDS = 600
# No post-generation hooks: the default runs `ruff check --fix` and `ruff format`, which only restyle.
CONFIG = "post_hooks: []\n"


def requirements() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return list(tomllib.load(file)["project"]["optional-dependencies"]["codegen"])


def installed() -> bool:
    return (CODEGEN_DIR / "openapi_python_client").is_dir()


def install() -> None:
    """(Re)install the generator into CODEGEN_DIR."""
    shutil.rmtree(CODEGEN_DIR, ignore_errors=True)
    subprocess.run(  # noqa: S603 - pip of this interpreter
        [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", "install", "--target", str(CODEGEN_DIR),
         *requirements()], check=True, timeout=INSTALL_TIMEOUT_SECONDS,
    )


def generate(spec: Path, output: Path) -> subprocess.CompletedProcess[str]:
    """Generate a client package from the OpenAPI document ``spec`` into the directory ``output``."""
    config = output.parent / f"{output.name}-config.yml"
    config.write_text(CONFIG)
    environment = {**os.environ, "PYTHONPATH": str(CODEGEN_DIR)}
    return subprocess.run(  # noqa: S603 - the generator installed by install()
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec), "--output-path", str(output),
         "--meta", "none", "--config", str(config)],
        capture_output=True, text=True, env=environment, timeout=GENERATE_TIMEOUT_SECONDS,
    )


if __name__ == "__main__":
    install()
