"""The layering contracts of docs/ARCHITECTURE.md, checked by walking every import.

Every ``import`` and ``from ... import`` statement is read with ``ast`` (function-local imports
included, since a lazy import crosses a layer as much as a top-level one), so a contract breaks
the test the moment a module reaches around it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUI_MAY_IMPORT_FROM_ENGINE = ("engine.api", "engine.services", "engine.errors")
MAX_FUNCTION_LINES = 80


def _python_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (a file under ``root``);
    relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from engine import x`` imports the module engine.x when x is one.
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                      if (root / Path(*module.split("."), alias.name)).exists()
                      or (root / Path(*module.split("."), alias.name + ".py")).exists()]
    return found


def _violations(package: str, allowed) -> list[str]:
    return [f"{p.relative_to(ROOT)}:{line} imports {mod}"
            for p in _python_files(package) for line, mod in imported_modules(p) if not allowed(mod)]


def test_engine_never_imports_qt_or_the_gui():
    def allowed(mod: str) -> bool:
        top = mod.split(".")[0]
        return top not in {"PySide6", "PyQt5", "PyQt6", "shiboken6", "gui", "superqt"}

    assert _violations("engine", allowed) == []


def test_gui_reaches_the_engine_only_through_api_services_and_errors():
    def allowed(mod: str) -> bool:
        if mod.split(".")[0] == "torch":
            return False
        if mod == "engine" or not mod.startswith("engine."):
            return mod != "engine"
        return any(mod == ok or mod.startswith(ok + ".") for ok in GUI_MAY_IMPORT_FROM_ENGINE)

    assert _violations("gui", allowed) == []


def test_the_import_walker_sees_function_local_and_relative_imports(tmp_path):
    # The contract tests are only as good as the walker: it must catch a lazy import inside a
    # function and resolve ``from ..x import y``.
    pkg = tmp_path / "gui" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "gui" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (tmp_path / "gui" / "helpers.py").write_text("")
    module = pkg / "view.py"
    module.write_text("def f():\n    from engine.store import catalog\n    from ..helpers import x\n")
    mods = [m for _, m in imported_modules(module, root=tmp_path)]
    assert "engine.store" in mods and "gui.helpers" in mods


def _long_functions(package: str) -> list[str]:
    long = []
    for p in _python_files(package):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return long


@pytest.mark.parametrize("package", ["engine", "gui"])
def test_no_function_is_longer_than_80_lines(package):
    assert _long_functions(package) == []


def test_main_window_is_assembly_only():
    lines = len((ROOT / "gui" / "main_window.py").read_text().splitlines())
    assert lines <= 300, f"gui/main_window.py has {lines} lines; MainWindow should only assemble views"
