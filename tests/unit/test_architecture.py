"""The layering and purity rules of the code base hold.

The rules live in pyproject.toml ([tool.importlinter]) and are checked by
running lint-imports. import-linter cannot name *subpackages* of external
packages, so "the domain uses eventsourcing.domain and nothing else from
eventsourcing" is checked here directly, on the domain's own import lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = REPO_ROOT / "domain"


def test_import_contracts_hold() -> None:
    # The venv's console script sits next to its interpreter; no resolve():
    # the interpreter is usually a symlink out of the venv.
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), f"{lint_imports} missing: pip install -e '.[test]'"

    result = subprocess.run(
        [str(lint_imports), "--config", "pyproject.toml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    if result.returncode != 0:
        pytest.fail(
            f"lint-imports exited {result.returncode}:\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )


def test_domain_uses_only_eventsourcing_domain() -> None:
    offending = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {name}"
        for path in sorted(DOMAIN.rglob("*.py"))
        for line, name in _imported_names(path)
        if _is_forbidden_eventsourcing(name)
    ]

    assert not offending, "domain/ may import only eventsourcing.domain:\n" + "\n".join(offending)


def _imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """Every module named by an import in ``path``, as ``(line, dotted name)``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def _is_forbidden_eventsourcing(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "eventsourcing" and parts[1:2] != ["domain"]
