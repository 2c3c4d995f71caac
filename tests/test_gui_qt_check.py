"""``make run``'s check of Qt's xcb plugin: the missing library and its Debian package are named."""
from __future__ import annotations

import subprocess

import pytest

from gui import qt_check

# soname -> package, as dpkg -S reported them on Debian 12 for the libraries libqxcb.so links.
DPKG_SAYS = {
    "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libX11-xcb.so.1": "libx11-xcb1", "libxcb.so.1": "libxcb1",
    "libEGL.so.1": "libegl1", "libfontconfig.so.1": "libfontconfig1", "libglib-2.0.so.0": "libglib2.0-0",
    "libGLdispatch.so.0": "libglvnd0", "libdbus-1.so.3": "libdbus-1-3", "libpcre2-8.so.0": "libpcre2-8-0",
    "libpng16.so.16": "libpng16-16", "liblz4.so.1": "liblz4-1", "libz.so.1": "zlib1g",
}


@pytest.mark.parametrize("soname, package", sorted(DPKG_SAYS.items()))
def test_debian_package_of_a_library(soname, package):
    assert qt_check.debian_package(soname) == package


def test_missing_libraries_are_named_with_the_apt_get_line(monkeypatch, tmp_path, capsys):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    ldd = ("\tlibxcb-icccm.so.4 => not found\n\tlibxcb.so.1 => /lib/libxcb.so.1 (0x1)\n"
           "\tlibxcb-keysyms.so.1 => not found\n\tlibxcb-icccm.so.4 => not found\n")
    monkeypatch.setattr(qt_check, "xcb_plugin", lambda: plugin)
    monkeypatch.setattr(qt_check, "applies", lambda: True)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=ldd, stderr=""))
    assert qt_check.missing_libraries(plugin) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert qt_check.main() == 1
    err = capsys.readouterr().err
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in err


def test_nothing_to_check_without_an_x_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert not qt_check.applies() and qt_check.main() == 0
