"""Where Lookalike keeps its files (platformdirs; ``LOOKALIKE_HOME`` overrides).

platformdirs is the maintained successor of appdirs (unmaintained since 2020).
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "lookalike"


def data_home() -> Path:
    env = os.environ.get("LOOKALIKE_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP_NAME))


def default_catalog_dir() -> Path:
    return data_home() / "collections" / "default"


def cache_dir() -> Path:
    env = os.environ.get("LOOKALIKE_HOME")
    return Path(env).expanduser() / "cache" if env else Path(platformdirs.user_cache_dir(APP_NAME))


def config_dir() -> Path:
    env = os.environ.get("LOOKALIKE_HOME")
    return Path(env).expanduser() / "config" if env else Path(platformdirs.user_config_dir(APP_NAME))
