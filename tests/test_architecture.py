"""The architecture stays visible: layers import only downward, public names are exported, files stay small."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import aperture

SRC = Path(aperture.__file__).parent
# Lowest first; a module may import only from its own layer or the layers before it.
LAYERS = [
    "aperture.model",
    "aperture.discovery",
    "aperture.execution",
    "aperture.engines",
    "aperture.compose",
    "aperture.ops",
    "aperture.config",
    "aperture.gateway",
    "aperture.surface",
    "aperture.cli",
]


def layer_of(module: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return rank
    return None


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("aperture.")}


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_layers_import_only_downward(path: Path) -> None:
    module = "aperture." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    own = layer_of(module)
    if own is None:
        return  # the package root re-exports the decorator only
    upward = {name for name in imports_of(path) if (rank := layer_of(name)) is not None and rank > own}
    assert not upward, f"{module} imports from higher layers: {sorted(upward)}"


def test_the_package_root_exports_only_the_decorator() -> None:
    assert imports_of(SRC / "__init__.py") == {"aperture.execution.backends.python"}


def test_the_a2a_surface_imports_nothing_of_the_mcp_surface() -> None:
    """Both surfaces stand on the gateway: what they share lives below them, not in one of them."""
    found = {name for path in (SRC / "surface" / "a2a").rglob("*.py") for name in imports_of(path)}
    assert found and not {name for name in found if name.startswith("aperture.surface.mcp")}


@pytest.mark.parametrize(
    "package", ["aperture.model", "aperture.discovery", "aperture.execution", "aperture.engines", "aperture.config"]
)
def test_layer_exports_are_sorted_and_complete(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(module.__all__)
    isort_style = sorted(exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert exported == isort_style
    public_classes = set()
    for info in pkgutil.iter_modules(module.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        sub = importlib.import_module(f"{package}.{info.name}")
        for name, value in vars(sub).items():
            if isinstance(value, type) and not name.startswith("_") and value.__module__ == sub.__name__:
                public_classes.add(name)
    missing = public_classes - set(exported)
    assert not missing, f"{package} does not export {sorted(missing)}"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_grows_past_1000_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 1000
