"""ops/RUNBOOK.md stays true to the product: every ``invario`` command it shows exists with the
options it uses, every alert rule has its section (and links to it), every metric it names is
exported, and every link inside it lands on a heading.

Commands other work is still adding are listed in ``PENDING``: the runbook may name them before
they exist. Once one is registered it is checked like any other; the coordinator empties the
list when they have all landed.
"""

from __future__ import annotations

import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from interfaces.cli.main import app
from tests.e2e.http_fixtures import Api, sqlite_api  # noqa: F401 - the fixture
from tests.e2e.test_metrics_ops_names import LATER
from tests.ops.conftest import clean_environment

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "ops" / "RUNBOOK.md"
ALERTS = ROOT / "ops" / "prometheus" / "invario-alerts.yml"

# Top-level commands being built by other helpers right now (names fixed in the brief).
PENDING: frozenset[str] = frozenset()

_FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)  # list items indent theirs
_INLINE = re.compile(r"`(invario [^`]+)`")
_SHELL_BREAKS = frozenset({"|", "||", "&&", ";", "(", ")", ">", ">>", "<", "&", "2>&1"})
_METRIC = re.compile(r"\b((?:invario|http|auth|rate|tenant|job)_[a-z_]+?"
                     r"(?:_total|_seconds|_status|_lag_events)(?:_bucket|_count|_sum)?)\b")


def runbook() -> str:
    return RUNBOOK.read_text()


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> dict[str, str]:
    """Anchor -> the section's text up to the next heading of the same or a higher level."""
    found = list(re.finditer(r"^(#{1,6}) (.+)$", text, re.M))
    sections = {}
    for n, match in enumerate(found):
        level = len(match.group(1))
        end = next((m.start() for m in found[n + 1:] if len(m.group(1)) <= level), len(text))
        sections[slug(match.group(2))] = text[match.end():end]
    return sections


# --- the commands ---------------------------------------------------------------------------


def command_lines(text: str) -> list[list[str]]:
    """Every ``invario ...`` invocation in shell code blocks and inline code, as argument lists."""
    found: list[list[str]] = []
    for language, body in _FENCE.findall(text):
        if language not in ("sh", "bash", "shell", ""):
            continue
        for line in body.splitlines():
            found.extend(_invocations(line.split(" #", 1)[0]))
    for span in _INLINE.findall(text):
        if _is_output(span):
            continue
        found.extend(_invocations(span.replace("\\|", " ").replace("[", " ").replace("]", " ")))
    return found


def _is_output(span: str) -> bool:
    """Quoted output, not a command: 'invario worker: stopped', 'invario X.Y.Z'."""
    word = span.split()[1] if len(span.split()) > 1 else ""
    return word.endswith(":") or not re.match(r"[a-z-]", word)


def _invocations(line: str) -> list[list[str]]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in prose
        return []
    calls, current = [], None
    for token in tokens:
        if current is not None and (token in _SHELL_BREAKS or set(token) <= set("|&;<>()")):
            calls.append(current)
            current = None
        elif current is not None:
            current.append(token)
        elif token == "invario":
            current = []
    if current is not None:
        calls.append(current)
    return calls


@lru_cache(maxsize=1)
def cli() -> Any:
    """The Typer app as its (click-style) command tree: groups have ``commands``, commands ``params``."""
    command = typer.main.get_command(app)
    assert hasattr(command, "commands")
    return command


def resolve(arguments: list[str]) -> tuple[list[str], Any, list[str]]:
    """(command path, the command, or None if pending, and the remaining arguments)."""
    command = cli()
    path: list[str] = []
    rest = list(arguments)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest[0]
        if name not in command.commands:
            if not path and name in PENDING:
                return [name], None, rest[1:]
            raise AssertionError(f"'invario {' '.join(path + [name])}' is not a command")
        command = command.commands[name]
        path.append(name)
        rest.pop(0)
    return path, command, rest


def options_of(command: Any) -> set[str]:
    names = {"--help"}
    for parameter in command.params:
        names.update(o for o in (*parameter.opts, *parameter.secondary_opts) if o.startswith("--"))
    return names


def test_the_runbook_shows_commands() -> None:
    paths = {tuple(resolve(call)[0]) for call in command_lines(runbook())}
    # The procedures lean on these; a refactor of the extraction must not silently find nothing.
    for expected in (("verify",), ("reconcile",), ("projections", "status"), ("projections", "rebuild"),
                     ("revoke-key",), ("create-key",), ("list-keys",), ("migrate",), ("worker",), ("serve",)):
        assert expected in paths, f"no 'invario {' '.join(expected)}' found in the runbook"


def test_every_command_and_option_in_the_runbook_exists() -> None:
    problems = []
    for call in command_lines(runbook()):
        try:
            path, command, rest = resolve(call)
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        if command is None:
            continue  # pending: checked once registered
        known = options_of(command)
        for token in rest:
            option = token.split("=", 1)[0]
            if option.startswith("--") and option not in known:
                problems.append(f"'invario {' '.join(path)}' has no option {option} (runbook: invario {' '.join(call)})")
    assert not problems, "\n".join(problems)


def test_help_of_every_runbook_command_exits_0() -> None:
    """In this process (the installed ``invario`` script itself is run by tests/e2e/test_cli_basics.py):
    one interpreter start per command cost half a minute of the suite for the same answer."""
    paths = sorted({tuple(path) for path, command, _ in map(resolve, command_lines(runbook())) if command})
    runner = CliRunner()
    for path in paths:
        shown = runner.invoke(app, [*path, "--help"], env=clean_environment())
        assert shown.exit_code == 0, f"invario {' '.join(path)} --help: {shown.output}"


def test_pending_commands_are_only_the_ones_being_built() -> None:
    registered = set(cli().commands)
    assert PENDING <= {"backup", "restore", "check-config", "evidence", "demo", "import", "jobs"}
    used = {resolve(call)[0][0] for call in command_lines(runbook()) if call and not call[0].startswith("-")}
    unused = {name for name in PENDING - registered if name not in used}
    assert not unused, f"PENDING names commands the runbook does not use: {sorted(unused)}"


# --- alerts --------------------------------------------------------------------------------------


def alert_rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_a_runbook_section_with_its_severity() -> None:
    sections = headings(runbook())
    for rule in alert_rules():
        anchor = rule["alert"].lower()
        assert anchor in sections, f"ops/RUNBOOK.md has no section '### {rule['alert']}'"
        severity = rule["labels"]["severity"]
        assert f"**Severity:** {severity}" in sections[anchor], f"{rule['alert']}: the section must say {severity}"
        for part in ("**Meaning:**", "**Automatic action:**", "**Procedure"):
            assert part in sections[anchor], f"{rule['alert']}: the section lacks {part}"


def test_every_alert_links_to_its_runbook_section() -> None:
    for rule in alert_rules():
        url = rule["annotations"].get("runbook_url", "")
        assert url == f"ops/RUNBOOK.md#{rule['alert'].lower()}", f"{rule['alert']}: runbook_url is {url!r}"


def test_links_inside_the_runbook_land_on_headings() -> None:
    text = runbook()
    anchors = set(headings(text))
    broken = sorted({link for link in re.findall(r"\]\(#([^)]+)\)", text) if link not in anchors})
    assert not broken, f"links to no heading: {broken}"
    for target in re.findall(r"\]\((\.\./[^)#]+)", text):
        assert (RUNBOOK.parent / target).resolve().exists(), f"link to a missing file: {target}"


def test_the_incidents_the_issue_lists_have_procedures() -> None:
    sections = " ".join(headings(runbook())).lower()
    for incident in ("database-outage", "read-only-database", "partial-restore", "401-storm", "stuck",
                     "409-spike", "broken-hash-chain", "429-storm", "projection-lag", "reconciliation-divergence",
                     "suspending-and-resuming", "api-key-compromise", "daily-checklist", "startup-checklist",
                     "shutdown-checklist", "upgrade-checklist", "rollback", "evidence-collection",
                     "severity-levels", "which-process-is-affected"):
        assert incident in sections, f"no section about {incident}"


def test_every_incident_procedure_starts_with_its_first_five_minutes() -> None:
    incidents = {anchor: text for anchor, text in headings(runbook()).items() if anchor.startswith("inc-")}
    assert len(incidents) >= 13
    lacking = sorted(anchor for anchor, text in incidents.items() if "First five minutes" not in text)
    assert not lacking, f"incident procedures without their first five minutes: {lacking}"


# --- metrics ---------------------------------------------------------------------------------------


def _base(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@pytest.fixture
def exported(sqlite_api: Api) -> set[str]:  # noqa: F811
    text = sqlite_api.client.get("/metrics").text
    # Hold counts appear with the first hold command of the process (infrastructure/hold_metrics.py).
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")} | LATER
    names |= {"invario_holds_total"}
    return names | {name + "_total" for name in names}


def test_every_metric_the_runbook_names_is_exported(exported: set[str]) -> None:
    named = {_base(name) for name in _METRIC.findall(runbook())}
    assert named, "the runbook names no metric"
    unknown = named - exported
    assert not unknown, f"the runbook names metrics nothing exports: {sorted(unknown)}"


def test_the_runbook_covers_every_invario_metric(exported: set[str]) -> None:
    ours = {name for name in exported if _METRIC.fullmatch(name)}
    text = runbook()
    missing = {name for name in ours if name not in text and name.removesuffix("_total") not in text}
    assert not missing, f"metrics the runbook never mentions: {sorted(missing)}"
