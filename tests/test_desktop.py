"""Desktop integration: `make install-desktop` puts a valid menu entry, AppStream metainfo and
the icon under the user's data folder; the entry's command opens a photo given to it."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import main

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "io.github.lookalike.Lookalike"


@pytest.fixture
def installed(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -o: do not (re)build the venv stamp here; the suite already runs inside the venv.
    subprocess.run(["make", "-s", "-o", ".venv/.installed-stamp", "install-desktop", f"DATA_HOME={tmp_path}"],
                   cwd=ROOT, check=True, capture_output=True)
    return tmp_path


def test_install_desktop_writes_entry_metainfo_and_icon(installed):
    entry = (installed / "applications" / f"{APP_ID}.desktop").read_text()
    assert (installed / "metainfo" / f"{APP_ID}.metainfo.xml").is_file()
    assert (installed / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").is_file()
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))
    assert exec_line == f'Exec="{ROOT / ".venv" / "bin" / "lookalike-gui"}" %F'
    assert f"TryExec={ROOT / '.venv' / 'bin' / 'lookalike-gui'}" in entry and "@" not in entry


def test_installed_files_pass_the_freedesktop_validators(installed):
    ran = 0
    if shutil.which("desktop-file-validate"):
        subprocess.run(["desktop-file-validate", str(installed / "applications" / f"{APP_ID}.desktop")], check=True)
        ran += 1
    if shutil.which("appstreamcli"):
        subprocess.run(["appstreamcli", "validate", "--no-net", str(installed / "metainfo" / f"{APP_ID}.metainfo.xml")],
                       check=True, capture_output=True)
        ran += 1
    if not ran:
        pytest.skip("neither desktop-file-validate nor appstreamcli is installed (desktop-file-utils, appstream)")


def test_the_menu_entry_command_makes_a_given_photo_the_first_query(monkeypatch):
    seen = {}
    monkeypatch.setattr(main, "run_gui", lambda args: seen.update(query=args.query, catalog=args.catalog) or 0)
    monkeypatch.setattr("sys.argv", ["lookalike-gui", "--catalog", "/tmp/c", "/photos/a.jpg"])
    assert main.gui_main() == 0
    assert seen == {"query": "/photos/a.jpg", "catalog": "/tmp/c"}
    monkeypatch.setattr("sys.argv", ["lookalike-gui"])
    assert main.gui_main() == 0 and seen["query"] is None
