"""The layering docs/architecture.md describes: no package imports one above it."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rtstyle"
#: Lowest first. A module may import from its own layer and those below it, never from above.
LAYERS = [("errors", "config", "runtime_info"), ("io", "model"), ("temporal",), ("backends",), ("stylizers",),
          ("pipeline",), ("live", "jobs", "train"), ("serve",), ("api",), ("cli",)]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level rtstyle package or module) of each relative import in `path`."""
    depth = len(path.relative_to(PACKAGE).parts) - 1
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.match(r"\s*from (\.+)(\w*)", line)
        if not match:
            continue
        dots, name = match.groups()
        if len(dots) == depth + 1 and name:  # from the package root: ..model, .config
            found.append((number, name))
        elif len(dots) == 1 and depth >= 1:  # a sibling in the same package
            found.append((number, path.relative_to(PACKAGE).parts[0]))
    return found


def test_every_top_level_package_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert names == set(LEVEL)


def test_no_package_imports_one_above_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for number, target in _imports(path):
            if LEVEL.get(target, -1) > LEVEL[own]:
                upward.append(f"{path.relative_to(PACKAGE)}:{number} ({own} -> {target})")
    assert not upward, upward
