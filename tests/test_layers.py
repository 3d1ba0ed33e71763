"""The direction of dependencies (docs/architecture.md): the core (`robolearn/`) imports neither `sim` nor
`hardware`, and those two never import each other. Every import statement counts, also one inside a
function; an env factory or a benchmark named by a dotted string in a config is not an import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the top-level packages it must not import
FORBIDDEN = {"robolearn": {"sim", "hardware"}, "sim": {"hardware"}, "hardware": {"sim"}}


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a module, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(root: Path) -> list[str]:
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, name in imported_packages(path.read_text()):
                if name in forbidden:
                    bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


def test_the_core_imports_neither_sim_nor_hardware_and_they_not_each_other():
    assert violations(ROOT) == []


@pytest.mark.parametrize("planted", [
    "from sim.expert import KettleSinkExpert\n",
    "def main():\n    import hardware.drivers as d\n    return d\n",
    "import numpy, sim\n",
])
def test_the_check_finds_an_import_against_the_direction(tmp_path, planted):
    for package in FORBIDDEN:
        (tmp_path / package).mkdir()
    (tmp_path / "robolearn" / "planted.py").write_text(planted)
    assert [v.split(" imports ")[0].split(":")[0] for v in violations(tmp_path)] == ["robolearn/planted.py"]


def test_relative_and_string_references_are_not_imports():
    source = "from . import spec\nFACTORY = 'sim.make_kettle_sink_env'\nfrom robolearn.envs import make_env\n"
    assert [name for _, name in imported_packages(source)] == ["robolearn"]


def imported_modules(source: str) -> list[tuple[int, str, list[str]]]:
    """(line, dotted module, names taken from it) of every absolute import, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def test_replay_opens_no_socket_and_imports_nothing_from_transport():
    """The network code is in one place: transport/ imports replay/, never the reverse (docs/architecture.md)."""
    bad = [f"{path.relative_to(ROOT)}:{line} imports {module}"
           for path in sorted((ROOT / "robolearn" / "replay").rglob("*.py"))
           for line, module, _ in imported_modules(path.read_text())
           if module.split(".")[:2] == ["robolearn", "transport"] or module.split(".")[0] == "zmq"]
    assert bad == []


def test_no_module_imports_another_modules_private_names():
    bad = [f"{path.relative_to(ROOT)}:{line} takes {names} from {module}"
           for package in ("robolearn", "sim", "hardware")
           for path in sorted((ROOT / package).rglob("*.py"))
           for line, module, taken in imported_modules(path.read_text())
           if module.split(".")[0] in ("robolearn", "sim", "hardware")
           for names in [[n for n in taken if n.startswith("_")]] if names]
    assert bad == []
