"""The README, docs/ and benchmarks/results/ point only at files, sections and flags that exist, and keep the two
commands true."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         *sorted((ROOT / "benchmarks" / "results").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@functools.cache
def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, skipping fenced code (shell comments there are not headings)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_slug_follows_github() -> None:
    assert slug("Results on CIFAR-10") == "results-on-cifar-10"
    assert slug("The targets, in detail") == "the-targets-in-detail"
    assert slug("Greyscale: CIE L*") == "greyscale-cie-l"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no '{target}' target"
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def commands(pattern: str) -> list[tuple[str, str, str]]:
    """(page, command, its arguments) for each match of `pattern` in PAGES.

    Shell line continuations are joined; a command ends at a backtick, newline, pipe, `;`, `&` or `#` comment.
    """
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")
        found += [(page.name, m.group(1), m.group(2)) for m in re.finditer(pattern + r"((?:[^`\n|;&#])*)", text)]
    return found


def test_documented_cli_flags_exist() -> None:
    from autocolor.cli import cli

    used = commands(r"(?:^|[`\s(])autocolor (train|evaluate|colorize|demo|diagram|export|serve)\b")
    assert len(used) > 20  # the pattern still finds the docs' commands
    unknown = []
    for page, name, args in used:
        options = {o for p in cli.commands[name].params for o in (*p.opts, *p.secondary_opts)}
        unknown += [(page, f"autocolor {name}", f) for f in FLAG.findall(args) if f not in options]
    assert not unknown, f"flags the CLI does not have: {unknown}"


def test_documented_script_flags_exist() -> None:
    used = commands(r"python (?:-m )?((?:benchmarks|scripts)/[\w/]+\.py|autocolor\.\w+)")
    assert len(used) > 20
    unknown = []
    for page, script, args in used:
        path = ROOT / (script if script.endswith(".py") else script.replace(".", "/") + ".py")
        assert path.exists(), f"{page} runs {script}, which does not exist"
        options = set(re.findall(r"[\"'](--[a-z][a-z0-9-]*)[\"']", path.read_text(encoding="utf-8")))
        unknown += [(page, script, f) for f in FLAG.findall(args) if f not in options]
    assert not unknown, f"flags the scripts do not define: {unknown}"
