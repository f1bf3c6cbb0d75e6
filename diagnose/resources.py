"""Where the data folders (rules/, reports/) are: in the wheel, or in a source checkout."""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`diagnose/data/<name>` inside an installed wheel, else `<checkout>/<name>`."""
    installed = _PKG / "data" / name
    if installed.is_dir():
        return installed
    return _PKG.parent / name


def cache_root() -> Path | None:
    """The user's cache folder for diagnose (compiled rule databases, console fonts):
    $DIAGNOSE_CACHE, else $XDG_CACHE_HOME/diagnose, else ~/.cache/diagnose. DIAGNOSE_CACHE set to
    "off" or "0" turns caching off (None)."""
    env = os.environ.get("DIAGNOSE_CACHE")
    if env in ("off", "0"):
        return None
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "diagnose"
