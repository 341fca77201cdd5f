"""The package's imports flow one way (data -> colour -> models -> train/evaluate -> colorize -> cli/app), and a wheel
carries its bundled files."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autocolor"


def internal_imports(source: str) -> set[str]:
    """The autocolor modules a module imports, at top level or inside functions; ``if TYPE_CHECKING:`` blocks
    (annotations only, never run) are left out."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module == "autocolor":
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("autocolor."):
                found.add(node.module.split(".")[1])

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("autocolor."))

    Visitor().visit(ast.parse(source))
    return found


def import_graph() -> dict[str, set[str]]:
    return {p.stem: internal_imports(p.read_text()) - {p.stem} for p in PACKAGE.glob("*.py")}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), set()) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_package_has_no_import_cycles_and_lower_layers_never_reach_higher_ones():
    graph = import_graph()
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    top = {"train", "evaluate", "colorize", "cli", "app"}
    higher = {"errors": {"files", "data", "colour", "imageio", "models", "weights"} | top,
              "files": {"data", "colour", "imageio", "models", "weights"} | top,
              "imageio": {"data", "folders", "models", "weights"} | top,
              "batchpaths": {"data", "folders", "imageio", "models", "weights"} | top,
              "weights": top,
              "sources": top | {"checkpoint", "validation"},
              "checkpoint": top | {"sources", "validation"},
              "validation": top | {"checkpoint"},
              "unet": {"weights", "ensemble"} | top,
              "data": {"models", "train", "evaluate", "colorize", "cli", "app"},
              "colour": {"data", "models", "train", "evaluate", "colorize", "cli", "app"},
              "metrics": {"models", "train", "evaluate", "colorize", "cli", "app"},
              "models": {"train", "evaluate", "colorize", "cli", "app"},
              "train": {"evaluate", "colorize", "cli", "app"},
              "colorize": {"train", "evaluate", "cli", "app"}}
    for low, above in higher.items():
        assert not reachable(graph, low) & above, (low, reachable(graph, low) & above)


def test_the_cycle_check_sees_imports_inside_functions():
    graph = {"a": internal_imports("from autocolor import b\n"),
             "b": internal_imports("def f():\n    from autocolor.a import x\n"),
             "c": internal_imports("if TYPE_CHECKING:\n    from autocolor import a\nelse:\n    import autocolor.d\n")}
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"d"}}
    assert reachable(graph, "c") == {"d"} and reachable(graph, "a") == {"a", "b"}
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


def test_package_data_ships_every_bundled_file() -> None:
    """Every file in autocolor/bundled and autocolor/samples matches a package-data pattern, so a wheel carries
    the weights, cards, classifier and sample photos that `autocolor demo` and `--model NAME` need offline."""
    import fnmatch
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["autocolor"]
    files = [p.relative_to(PACKAGE).as_posix() for folder in ("bundled", "samples")
             for p in (PACKAGE / folder).rglob("*") if p.is_file()]
    assert any(f.endswith(".safetensors") for f in files) and any(f.startswith("samples/") for f in files)
    missed = [f for f in files if not any(fnmatch.fnmatchcase(f, pat) for pat in patterns)]
    assert not missed, f"not in the wheel: {missed}"
