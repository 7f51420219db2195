"""The package tree keeps its shape: plain PyTorch where it should be, and no import cycle between packages.

Read from the sources (``ast``), so a test fails on the import line that breaks a rule, not at run time.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "conformer_prune"
PLAIN_TORCH = ("models", "dropout", "pruning")
"""Packages that must not import Lightning or Hydra (``../shared/DESIGN.md`` §2)."""


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def imports(file: Path, *, top_level_only: bool = False) -> list[str]:
    """Modules ``file`` imports (``top_level_only``: those imported at module level, not inside functions)."""
    tree = ast.parse(file.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif top_level_only and isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports do not run
            continue
    return names


def package_of(module: str) -> str:
    """``conformer_prune.models.ctc`` -> ``models``; a top-level module is its own package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@pytest.mark.parametrize("package", PLAIN_TORCH)
def test_plain_pytorch_packages_import_no_lightning_or_hydra(package: str) -> None:
    for name, file in modules().items():
        if package_of(name) != package:
            continue
        bad = [m for m in imports(file) if m.split(".")[0] in ("lightning", "hydra", "omegaconf")]
        assert not bad, f"{name} imports {bad}"


def test_no_import_cycle_between_packages() -> None:
    """The graph of module-level imports between the package's subpackages and top-level modules is acyclic."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, file in modules().items():
        src = package_of(name)
        for target in imports(file, top_level_only=True):
            if target.startswith("conformer_prune.") and package_of(target) != src:
                graph[src].add(package_of(target))

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*path, nxt]
                if nxt not in path:
                    stack.append((nxt, [*path, nxt]))
        return None

    for package in ("models", "pruning", "dropout", "data", "tasks", "callbacks"):
        assert cycle_from(package) is None, " -> ".join(cycle_from(package))


def test_only_the_entry_points_import_hydra_at_module_level() -> None:
    """Hydra and OmegaConf are the entry points' (``cli/``); a library module may import them inside a function."""
    for name, file in modules().items():
        if name.startswith("conformer_prune.cli"):
            continue
        bad = [m for m in imports(file, top_level_only=True) if m.split(".")[0] in ("hydra", "omegaconf")]
        assert not bad, f"{name} imports {bad} at module level"


def test_importing_the_library_registers_nothing() -> None:
    """No import side effects: the ``cp.*`` resolvers exist only once an entry point registers them."""
    import subprocess
    import sys

    library = [n for n in modules() if not n.startswith("conformer_prune.cli") and not n.endswith("__main__")]
    code = "\n".join(
        [
            "import importlib",
            f"for name in {library!r}:",
            "    importlib.import_module(name)",
            "from omegaconf import OmegaConf",
            "print(sorted(n for n in ('cp.widths_from', 'cp.uniform_widths') if OmegaConf.has_resolver(n)))",
            "from conformer_prune.cli.resolvers import register_resolvers",
            "register_resolvers()",
            "print(OmegaConf.has_resolver('cp.widths_from'))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
