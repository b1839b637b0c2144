"""The layering and purity rules of the code base hold.

The rules live in pyproject.toml ([tool.importlinter]) and are checked by
running lint-imports. import-linter cannot name *subpackages* of external
packages, so "the domain uses eventsourcing.domain and nothing else from
eventsourcing" is checked here directly, on the domain's own import lines.

No module takes part in an import cycle, counting the imports inside functions
(which hid the cycles main.py <-> every *_cmds.py and deps -> handlers ->
middleware -> handlers): checked here on grimp's graph, the one lint-imports uses.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = REPO_ROOT / "domain"
PRODUCTION_PACKAGES = ("domain", "application", "infrastructure", "projections", "interfaces")


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


@pytest.fixture(scope="module")
def import_graph() -> grimp.ImportGraph:
    # cache_dir=None: nothing written into the repository; building it takes a few seconds.
    return grimp.build_graph(*PRODUCTION_PACKAGES, cache_dir=None)


def test_the_graph_counts_imports_inside_functions(import_graph: grimp.ImportGraph) -> None:
    # 'invario serve' imports the HTTP app inside the command's function: the graph must see it,
    # or the test below would miss the cycles such imports hide.
    assert import_graph.direct_import_exists(importer="interfaces.cli.main", imported="interfaces.http.app")


def test_no_import_cycles(import_graph: grimp.ImportGraph) -> None:
    cycles = [_one_cycle(import_graph, component) for component in _cyclic_components(import_graph)]

    assert not cycles, "import cycles between modules (break them; an import inside a function counts too):\n" + (
        "\n".join(" -> ".join(cycle) for cycle in cycles)
    )


def _cyclic_components(graph: grimp.ImportGraph) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, without recursion)."""
    successors = {module: sorted(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(successors):
        if root in index:
            continue
        work = [(root, iter(successors[root]))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, pending = work[-1]
            for successor in pending:
                if successor not in successors:
                    continue  # a module outside the production packages
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(successors[successor])))
                    break
                if successor in on_stack:
                    lowlink[module] = min(lowlink[module], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[module])
                if lowlink[module] == index[module]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        components.append(component)
    return components


def _one_cycle(graph: grimp.ImportGraph, component: set[str]) -> list[str]:
    """A concrete cycle through the component's first module, e.g. ``[a, b, c, a]``."""
    start = min(component)
    shortest: tuple[str, ...] | None = None
    for successor in sorted(graph.find_modules_directly_imported_by(start) & component):
        chain = graph.find_shortest_chain(importer=successor, imported=start)
        if chain is not None and (shortest is None or len(chain) < len(shortest)):
            shortest = chain
    assert shortest is not None
    return [start, *shortest]
