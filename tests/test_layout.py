"""The package's shape: stages import only the stages before them, no cycles, one label schema, and the installed
``blemore`` module wins over a prepared ``./blemore`` data folder wherever the user stands."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import blemore
from blemore_toolkit.metrics.blemore import challenge

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLKIT = REPO_ROOT / "blemore_toolkit"

#: Each stage and the stages it may import (besides itself, ``blemore``, ``modeling`` and ``metrics``).
ALLOWED = {
    "data": set(),
    "evaluation": {"data"},
    "features": {"data", "evaluation"},
    "training": {"data", "evaluation", "features"},
    "conversion": {"data"},
    "demo": {"data", "evaluation", "features", "training"},
    "cli": {"data", "evaluation", "features", "training", "conversion", "demo"},
}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "blemore_toolkit" and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every ``blemore_toolkit`` module a file imports, at any depth (lazy imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("blemore_toolkit.")}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_stages_import_only_the_stages_before_them():
    offenders = []
    for path in sorted(TOOLKIT.rglob("*.py")):
        stage = _stage(_module_name(path))
        if stage is None:
            continue
        for imported in _imports(path):
            other = _stage(imported)
            if other not in (None, stage) and other in ALLOWED and other not in ALLOWED[stage]:
                offenders.append(f"{_module_name(path)} imports {imported}")
    assert not offenders, offenders


def test_no_import_cycles_between_modules():
    modules = {_module_name(p): p for p in TOOLKIT.rglob("*.py")}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    visiting, done, cycles = set(), set(), []

    def visit(name, trail):
        if name in done:
            return
        if name in visiting:
            cycles.append(trail[trail.index(name):] + [name])
            return
        visiting.add(name)
        for other in sorted(graph[name]):
            visit(other, trail + [name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, cycles


def test_lower_layers_never_import_the_toolkit():
    """``blemore.py`` (loading script), ``modeling/`` (Hub remote code), ``metrics/`` (a Hub metric) stand alone."""
    standalone = [REPO_ROOT / "blemore.py", *(REPO_ROOT / "modeling").glob("*.py"),
                  *(REPO_ROOT / "metrics").rglob("*.py")]
    for path in standalone:
        imported = _imports(path)
        if path.name == "blemore.py" and path.parent == REPO_ROOT:
            imported -= {"blemore_toolkit.cli", "blemore_toolkit.cli.main"}  # `python -m blemore` → the command line
        assert not imported, f"{path} imports {imported}"


def test_the_metric_states_the_dataset_schema():
    assert challenge.EMOTIONS == blemore.EMOTIONS
    assert challenge.BLEND_PAIRS == blemore.BLEND_PAIRS
    assert challenge.SALIENCE_LEVELS == blemore.SALIENCE_LEVELS
    assert challenge.PRESENCE_NAMES == blemore.PRESENCE_NAMES


@pytest.mark.parametrize("command", [
    ["-c", "import blemore, sys; print(blemore.__file__); sys.exit(not hasattr(blemore, 'EMOTIONS'))"],
    ["-m", "blemore", "--help"],
])
def test_the_module_wins_over_a_prepared_blemore_folder_in_the_working_directory(prepared_dataset, command):
    assert prepared_dataset.name == "blemore"
    result = subprocess.run([sys.executable, *command], cwd=prepared_dataset.parent, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    if command[0] == "-c":
        assert Path(result.stdout.strip()).name == "blemore.py"
    else:
        assert "commands:" in result.stdout
