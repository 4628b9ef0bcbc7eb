"""Architecture: a module imports only from its own layer or lower ones (design.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "teamsift"
LAYER = {"nets": 0, "envs": 0, "data": 0, "evaluate": 0, "engine": 1, "collect": 2, "value": 3, "algos": 4, "bench": 5,
         "cli": 5}
# Package-level helpers usable from every layer.
SHARED = {"progress", "fileio", "machine", "checks", "plotting", "devices"}


def imported_teamsift_modules(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "teamsift" and len(parts) > 1:
                yield parts[1]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_respect_layers(path):
    relative = path.relative_to(PACKAGE).parts
    if len(relative) == 1:  # package-level modules (__init__, progress)
        return
    own = relative[0]
    for target in imported_teamsift_modules(path):
        if target in SHARED or target not in LAYER:
            continue
        assert LAYER[target] <= LAYER[own], f"{'/'.join(relative)} imports teamsift.{target} from a higher layer"
