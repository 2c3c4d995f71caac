"""CLI: one clear line and a non-zero exit for user mistakes; JSON outputs; real-data check."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from tests.conftest import shared_dataset

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_folder_is_one_clear_line(capsys, tmp_path):
    code, _out, err = run_cli(capsys, "index", str(tmp_path / "nope"), "--catalog", str(tmp_path / "c"))
    assert code == 2 and err.strip() == f"lookalike: error: Folder not found: {tmp_path / 'nope'}"


def test_unknown_method_lists_the_available_ones(capsys, tmp_path):
    code, _out, err = run_cli(capsys, "index", str(tmp_path), "--catalog", str(tmp_path / "c"), "--method", "bogus")
    assert code == 2 and "Unknown method 'bogus'" in err and "rmac" in err and "Traceback" not in err


def test_search_without_catalog_is_a_clear_error(capsys, tmp_path):
    code, _out, err = run_cli(capsys, "search", str(tmp_path / "q.jpg"), "--catalog", str(tmp_path / "none"))
    assert code == 2 and "No catalog" in err


def test_unreadable_catalog_is_a_clear_error(capsys, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "catalog.sqlite").write_text("garbage" * 500)
    code, _out, err = run_cli(capsys, "status", "--catalog", str(tmp_path / "c"))
    assert code == 2 and "cannot be read" in err


def test_missing_weights_file_is_a_clear_error(capsys, tmp_path, photo_folder):
    code, _out, err = run_cli(capsys, "index", str(photo_folder), "--catalog", str(tmp_path / "c"),
                              "--method", "mac", "--weights", str(tmp_path / "missing.pth"))
    assert code == 2 and "Weights file" in err and "not found" in err


def test_index_search_status_methods_json(capsys, tmp_path, photo_folder):
    cat = str(tmp_path / "c")
    code, out, _ = run_cli(capsys, "index", str(photo_folder), "--catalog", cat, "--method", "mac", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["indexed"] == 12 and summary["failed"] == []
    assert set(summary) >= {"indexed", "unchanged", "removed", "failed", "seconds"}
    code, out, _ = run_cli(capsys, "search", str(photo_folder / "scene2.jpg"), "--catalog", cat, "--top", "3", "--json")
    res = json.loads(out)
    assert code == 0 and len(res) == 3 and res[0]["path"].endswith("scene2.jpg")
    # Several queries in one process; a bad one is reported and the others still answered.
    code, out, err = run_cli(capsys, "search", str(photo_folder / "scene2.jpg"), str(tmp_path / "gone.jpg"),
                             str(photo_folder / "scene5.jpg"), "--catalog", cat, "--top", "2", "--json")
    many = json.loads(out)
    assert code == 2 and "gone.jpg" in err and [m["query"] for m in many] == [
        str(photo_folder / "scene2.jpg"), str(photo_folder / "scene5.jpg")]
    assert many[1]["results"][0]["path"].endswith("scene5.jpg") and len(many[1]["results"]) == 2
    code, out, _ = run_cli(capsys, "status", "--catalog", cat, "--json", "--check")
    st = json.loads(out)
    assert code == 0 and st["images"] == 12 and st["check"]["ok"] and st["methods"] == [{"name": "mac", "descriptors": 12}]
    code, out, _ = run_cli(capsys, "methods", "--json")
    names = {m["name"] for m in json.loads(out)}
    assert code == 0 and {"mac", "spoc", "gem", "rmac"} <= names


def test_main_py_runs_as_a_script():
    out = subprocess.run([sys.executable, "main.py", "methods"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "rmac" in out.stdout


def test_ukbench_rmac_finds_group_mates(tmp_path, capsys):
    root = shared_dataset("ukbench56")
    cat = str(tmp_path / "c")
    assert main(["index", str(root / "images"), "--catalog", cat, "--method", "rmac", "--json"]) == 0
    capsys.readouterr()
    from engine.api import Collection

    col = Collection.open(cat)
    files = sorted((root / "images").glob("*.jpg"))
    total = 0
    for f in files:
        group = int(f.stem[-5:]) // 4
        res = col.search(f, top=4)
        total += sum(int(Path(r.path).stem[-5:]) // 4 == group for r in res)
    ns = total / len(files)
    assert ns >= 3.5, f"N-S {ns:.2f}"
