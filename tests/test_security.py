"""Security audit of the source tree (issue 10), by reading the code (AST + text).

Fails when the code (``engine/``, ``gui/``, ``bench/``, ``main.py``) uses: pickle (or
``allow_pickle=True``), ``eval``/``exec`` builtins, ``shell=True``, ``os.system``/``os.popen``,
subprocesses at all in the app (not in ``bench/``; paths from the catalog must never reach a program), network
downloads, ``torch.load`` without ``weights_only=True``, SQL built by string formatting, or
opening files in the system viewer other than with ``QUrl.fromLocalFile``.
Each check is also run on a snippet that breaks the rule, so none can pass vacuously.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APP_DIRS = ("engine", "gui", "bench")
SQL_CALLS = {"execute", "executemany", "executescript", "query"}
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|PRAGMA|REPLACE INTO|WHERE)\b")


def app_sources() -> list[Path]:
    files = [REPO / "main.py"] + [p for d in APP_DIRS if (REPO / d).is_dir() for p in sorted((REPO / d).rglob("*.py"))]
    return [f for f in files if f.is_file()]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _formatted_sql(node: ast.AST) -> bool:
    """True for an SQL string built from values: f-string with fields, %, .format, + of non-literals."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _formatted_sql(node.left) or _formatted_sql(node.right) or not (
            _literal_or_name(node.left) and _literal_or_name(node.right))
    return False


def _literal_or_name(node: ast.AST) -> bool:
    """String literals, names (SQL held in a local made of literals) and literal if/else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.IfExp):
        return _literal_or_name(node.body) and _literal_or_name(node.orelse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal_or_name(node.left) and _literal_or_name(node.right)
    return False


def audit(source: str, name: str = "<snippet>", app: bool = True) -> list[str]:
    """Every rule broken by ``source``, as ``name:line: what``.

    ``app=False`` (developer tools in ``bench/``) allows ``subprocess`` (the benchmark runs
    itself as ``[sys.executable, "-m", ...]``, never a shell, never a catalog path).
    """
    problems: list[str] = []
    tree = ast.parse(source)

    def bad(node: ast.AST, what: str) -> None:
        problems.append(f"{name}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in mods:
                root = m.split(".")[0]
                if root in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal"):
                    bad(node, f"imports {m} (no pickle-like formats: loading one runs code)")
                if root in ("urllib", "requests", "http", "ftplib", "socket") or (app and root == "subprocess"):
                    bad(node, f"imports {m} (no subprocesses or network in the app)")
        if isinstance(node, ast.Attribute) and _dotted(node) in ("torch.hub.load", "torch.hub.download_url_to_file",
                                                                 "torch.hub.load_state_dict_from_url"):
            bad(node, f"{_dotted(node)} (never download anything)")
        if not isinstance(node, ast.Call):
            continue
        fn = _dotted(node.func)
        if fn in ("eval", "exec", "compile"):
            bad(node, f"{fn}() builtin")
        if fn in ("os.system", "os.popen", "os.startfile", "os.execv", "os.execvp", "os.spawnl", "pty.spawn"):
            bad(node, f"{fn}() runs a program")
        if _is_true(_kw(node, "shell")):
            bad(node, "shell=True")
        if _is_true(_kw(node, "allow_pickle")):
            bad(node, "allow_pickle=True")
        if fn.endswith("load_state_dict_from_url"):
            bad(node, "downloads weights")
        if fn == "torch.load" and not _is_true(_kw(node, "weights_only")):
            bad(node, "torch.load without weights_only=True")
        if isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS and node.args:
            sql = node.args[0]
            text = ast.get_source_segment(source, sql) or ""
            if _formatted_sql(sql) and (SQL_WORDS.search(text) or not isinstance(sql, ast.JoinedStr)):
                bad(node, f"SQL built by string formatting: {text[:60]}")
        if isinstance(node.func, ast.Attribute) and node.func.attr == "openUrl" and node.args:
            arg = node.args[0]
            if not (isinstance(arg, ast.Call) and _dotted(arg.func).endswith("QUrl.fromLocalFile")):
                bad(node, "openUrl without QUrl.fromLocalFile (a path could be taken for a URL)")
    for node in ast.walk(tree):  # SQL text with interpolated values, wherever it is built
        if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|PRAGMA)\b", literal):
                bad(node, f"SQL f-string: {literal[:60]}")
    return problems


BROKEN = {
    "pickle": "import pickle\npickle.loads(b'')",
    "eval": "x = eval('1+1')",
    "exec": "exec('x = 1')",
    "shell": "import os\nrun(['ls'], shell=True)",
    "os.system": "import os\nos.system('ls ' + path)",
    "subprocess": "import subprocess",
    "torch.load": "import torch\nstate = torch.load(path)",
    "torch.load false": "state = torch.load(path, weights_only=False)",
    "allow_pickle": "np.load(p, allow_pickle=True)",
    "sql f-string": "db.execute(f\"SELECT * FROM images WHERE path='{path}'\")",
    "sql percent": "cur.execute(\"DELETE FROM images WHERE id=%s\" % image_id)",
    "sql format": "cur.execute(\"DELETE FROM images WHERE id={}\".format(image_id))",
    "sql concat": "cur.execute(\"SELECT * FROM images WHERE path='\" + str(path) + \"'\")",
    "sql built earlier": "sql = f\"SELECT id FROM images WHERE path = '{p}'\"",
    "openUrl": "QDesktopServices.openUrl(QUrl(path))",
    "download": "torch.hub.load_state_dict_from_url(url)",
}

FINE = {
    "torch eval mode": "model.eval()\napp.exec()",
    "parameterised sql": "cur.execute('SELECT id FROM images WHERE path=?', (blob,))",
    "literal concat": "self.query(sql + (' WHERE folder_id=?' if f else '') + ' ORDER BY id', params)",
    "weights only": "torch.load(path, map_location='cpu', weights_only=True)",
    "file url": "QDesktopServices.openUrl(QUrl.fromLocalFile(path))",
    "message f-string": "raise Error(f'cannot read {path}')",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_audit_catches_each_forbidden_pattern(case):
    assert audit(BROKEN[case]), f"{case} was not caught"


@pytest.mark.parametrize("case", sorted(FINE))
def test_the_audit_accepts_safe_code(case):
    assert audit(FINE[case]) == []


def test_app_sources_break_no_security_rule():
    files = app_sources()
    assert len(files) > 20 and any(f.name == "catalog.py" for f in files)
    problems = [p for f in files
                for p in audit(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)), app=not _set_up_tool(f))]
    assert problems == []


# Tools that run before or beside the app, never inside it, and may start a program:
# gui/qt_check.py (`make run`'s first step) runs `ldd` on Qt's own platform plugin, a path
# inside the installed PySide6, never a path from a catalog, to name a missing library.
SET_UP_TOOLS = ("gui/qt_check.py",)


def _set_up_tool(f: Path) -> bool:
    rel = f.relative_to(REPO)
    return rel.parts[0] == "bench" or rel.as_posix() in SET_UP_TOOLS


def test_weights_are_loaded_somewhere_and_always_with_weights_only():
    loads = [f for f in app_sources() if "torch.load(" in f.read_text(encoding="utf-8")]
    assert loads, "no torch.load at all: the audit above would not be exercised"
    for f in loads:
        assert audit(f.read_text(encoding="utf-8"), f.name) == []
