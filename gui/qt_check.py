"""Before the window opens: can Qt's xcb platform plugin load here? If not, say which system
library is missing and which Debian/Ubuntu package has it.

Qt's own message when the plugin fails names ``xcb-cursor0`` whatever is missing (on a fresh
Debian 12 it was ``libxcb-icccm4``); ``ldd`` on the plugin names the real culprits. Run as
``python -m gui.qt_check`` (``make run`` does): exit 0 when nothing is missing or the check
does not apply (not Linux, no X display, another platform plugin chosen), else 1 with the
``apt-get`` line to run. It imports neither Qt nor anything that does, so it works when Qt
cannot load.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Debian names a library's package after its soname ("libxcb-icccm.so.4" -> "libxcb-icccm4",
# "libxkbcommon-x11.so.0" -> "libxkbcommon-x11-0"); these are the exceptions among the
# libraries Qt's xcb plugin links (checked with dpkg -S on Debian 12).
PACKAGE_EXCEPTIONS = {
    "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
    "libGLdispatch.so.0": "libglvnd0", "libbrotlicommon.so.1": "libbrotli1", "libbrotlidec.so.1": "libbrotli1",
    "libz.so.1": "zlib1g", "libgcc_s.so.1": "libgcc-s1", "libc.so.6": "libc6", "libm.so.6": "libc6",
    "libdl.so.2": "libc6", "libpthread.so.0": "libc6",
}


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships library ``soname`` (by the naming policy)."""
    if soname in PACKAGE_EXCEPTIONS:
        return PACKAGE_EXCEPTIONS[soname]
    m = re.match(r"^(lib.+?)\.so\.(\d+)", soname)
    if not m:
        return soname
    name, version = m.group(1).lower(), m.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def xcb_plugin() -> Path | None:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def missing_libraries(plugin: Path) -> list[str]:
    """Sonames ``ldd`` cannot find for the plugin (and the Qt libraries it pulls in)."""
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, check=False).stdout
    return sorted({line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line})


def applies() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("ldd") is None:
        return False
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return False  # offscreen, wayland, ...: the xcb plugin is not used
    return bool(os.environ.get("DISPLAY")) or platform.startswith("xcb")


def main() -> int:
    if not applies():
        return 0
    plugin = xcb_plugin()
    if plugin is None:
        return 0  # PySide6 not installed: pip's error says so
    missing = missing_libraries(plugin)
    if not missing:
        return 0
    packages = sorted({debian_package(s) for s in missing})
    print("Lookalike cannot open its window: Qt's X11 (xcb) platform plugin needs system libraries "
          "that are not installed:", file=sys.stderr)
    for s in missing:
        print(f"  {s}  (Debian/Ubuntu package {debian_package(s)})", file=sys.stderr)
    print(f"Install them with:\n  sudo apt-get install {' '.join(packages)}\n"
          "(other distributions: the package providing each library above; see README, "
          "'System libraries for the window').", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
