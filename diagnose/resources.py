"""Where the data folders (rules/, reports/) are: in the wheel, or in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`diagnose/data/<name>` inside an installed wheel, else `<checkout>/<name>`."""
    installed = _PKG / "data" / name
    if installed.is_dir():
        return installed
    return _PKG.parent / name
