"""The package layout holds (docs/architecture.md): no import circle, and the layer rules that matter.

The import graph is read from the source with ``ast`` (every import, at module level or inside a
function, is an edge), so a rule cannot be dodged by importing late. Imports under
``if TYPE_CHECKING:`` never run and are left out; importing a submodule is an edge to it, not to its
parent package.
"""

from __future__ import annotations

import ast
import re
import graphlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "her2slide"

#: Modules allowed above ~400 lines, each with its reason (the issue's "no module over ~400 lines
#: without a stated reason").
LONG_MODULES: dict[str, str] = {}
MAX_LINES = 400


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # her2slide modules
    external: set[str] = field(default_factory=set)  # top-level names of other packages


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return skipped


@cache
def modules() -> dict[str, Module]:
    found = {_module_name(p): Module(_module_name(p), p) for p in PACKAGE.rglob("*.py")}

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in found:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for module in found.values():
        tree = ast.parse(module.path.read_text())
        skipped = _type_checking_only(tree)
        package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # `from pkg import sub` imports the submodule `pkg.sub`; `from pkg import name` imports pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in found else base for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "her2slide":
                    resolved = resolve(target)
                    if resolved and resolved != module.name:
                        module.imports.add(resolved)
                else:
                    module.external.add(target.split(".")[0])
    return found


def package_of(module: str) -> str:
    """The stage a module belongs to: its subpackage below her2slide, or the module itself at the top."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _assert_acyclic(graph: dict[str, set[str]], what: str) -> None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle among {what}: {' -> '.join(exc.args[1])}")


def test_the_walk_sees_the_package() -> None:
    found = modules()
    assert len(found) > 100 and "her2slide.run.pipeline" in found
    assert "her2slide.cells.instances" in found["her2slide.cells.tile_cells"].imports
    assert "torch" in found["her2slide.model.network"].external


def test_no_import_circle_among_modules() -> None:
    _assert_acyclic({name: m.imports for name, m in modules().items()}, "her2slide's modules")


def test_no_import_circle_among_packages() -> None:
    graph: dict[str, set[str]] = {}
    for name, module in modules().items():
        graph.setdefault(package_of(name), set()).update(
            package_of(t) for t in module.imports if package_of(t) != package_of(name))
    _assert_acyclic(graph, "her2slide's packages")


def _imports_of(prefix: str) -> dict[str, Module]:
    return {n: m for n, m in modules().items() if n == prefix or n.startswith(prefix + ".")}


def _offenders(prefix: str, *, her2slide: tuple[str, ...] = (), external: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for name, module in _imports_of(prefix).items():
        bad += [f"{name} imports {t}" for t in sorted(module.imports)
                if any(t == f or t.startswith(f + ".") for f in her2slide)]
        bad += [f"{name} imports {t}" for t in sorted(module.external) if t in external]
    return bad


@pytest.mark.parametrize("prefix, forbidden, external, why", [
    ("her2slide.scoring", ("her2slide.slide", "her2slide.run", "her2slide.model", "her2slide.config"),
     ("torch", "openslide"), "the rules are pure functions of cell classes, testable from the guideline alone"),
    ("her2slide.stain", ("her2slide.slide", "her2slide.run"), ("torch", "openslide"),
     "stain optics work on pixel arrays; the run hands them a slide's pixels"),
    ("her2slide.outputs", ("her2slide.run", "her2slide.model"), ("torch",),
     "writers write what they are given; they never run the engine"),
    ("her2slide.maps", ("her2slide.run", "her2slide.slide", "her2slide.model"), ("torch", "openslide"),
     "the heterogeneity call works on the region grid alone"),
    ("her2slide.cells", ("her2slide.run", "her2slide.model"), ("torch",),
     "cells are found and measured the same whatever segmenter made the maps"),
    ("her2slide.context", ("her2slide.run", "her2slide.slide", "her2slide.model"), ("torch", "openslide"),
     "diagnostic context works on cell tables and settings"),
])
def test_layer_rules(prefix: str, forbidden: tuple[str, ...], external: tuple[str, ...], why: str) -> None:
    assert not _offenders(prefix, her2slide=forbidden, external=external), why


def test_network_code_does_not_open_slides() -> None:
    network = {n: m for n, m in _imports_of("her2slide.model").items() if not n.startswith("her2slide.model.training")}
    assert network
    bad = [f"{n} imports {t}" for n, m in network.items() for t in m.imports | m.external
           if t.startswith("her2slide.slide") or t.startswith("her2slide.datasets") or t in ("openslide", "tifffile")]
    assert not bad, "the network package never reads slides; training data readers live in model/training"


def test_torch_stays_in_the_model_and_the_engine() -> None:
    users = sorted(n for n, m in modules().items() if "torch" in m.external)
    assert all(n.startswith("her2slide.model") or n == "her2slide.run.engine" for n in users), users


def test_only_the_command_line_imports_the_command_line() -> None:
    bad = [f"{n} imports {t}" for n, m in modules().items() if not n.startswith("her2slide.cli")
           and n != "her2slide.__main__" for t in m.imports if t.startswith("her2slide.cli")]
    assert not bad, "the CLI is a thin layer over the library: nothing below it may need it"


def test_modules_are_short_or_say_why() -> None:
    long = {n: len(m.path.read_text().splitlines()) for n, m in modules().items()}
    over = {n: lines for n, lines in long.items() if lines > MAX_LINES and n not in LONG_MODULES}
    assert not over, f"modules over {MAX_LINES} lines without a reason in LONG_MODULES: {over}"
    stale = [n for n in LONG_MODULES if long.get(n, 0) <= MAX_LINES]
    assert not stale, f"LONG_MODULES lists modules that are short now: {stale}"


def test_the_architecture_doc_lists_what_each_package_imports() -> None:
    """docs/architecture.md's import table is the graph the walk finds, lowest first, so it cannot go stale."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    table = doc[doc.index("| package | imports |"):].split("\n\n")[0].splitlines()[2:]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table]
    listed = {re.findall(r"`([\w.]+)`", package)[0]: set(re.findall(r"`([\w.]+)`", imports))
              for package, imports in rows}
    short = {"her2slide": "her2slide"}
    found: dict[str, set[str]] = {}
    for name, module in modules().items():
        package = short.get(package_of(name), package_of(name).removeprefix("her2slide."))
        found.setdefault(package, set()).update(
            short.get(package_of(t), package_of(t).removeprefix("her2slide.")) for t in module.imports
            if package_of(t) != package_of(name))
    # notes in the table name packages a second time; only the set matters
    assert listed == found
    order = [re.findall(r"`([\w.]+)`", package)[0] for package, _ in rows]
    assert all(order.index(d) < order.index(p) for p, deps in listed.items() for d in deps), "lowest first"
