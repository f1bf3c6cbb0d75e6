"""Small helpers shared by the fetchers: image sniffing, instance ids, safe file names."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UsageError

# ECS instance ids: "i-" then lowercase letters and digits. Old classic-network ids have 8-10
# characters after the dash (i-23yi8tnhj), current ones 20 (i-bp1c1xhsrac2coiw0ab).
INSTANCE_ID_RE = re.compile(r"^i-[a-z0-9]{8,30}$")

# A case directory name: what a user may type or what we derive from an instance id.
_CASE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

IMAGE_SUFFIX = {"png": ".png", "jpeg": ".jpg"}


def sniff_image(data: bytes | None) -> str | None:
    """``"png"`` or ``"jpeg"`` from the magic bytes, else None. Never trust a file name."""
    if not data:
        return None
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


def is_instance_id(value: str) -> bool:
    return isinstance(value, str) and INSTANCE_ID_RE.fullmatch(value) is not None


def validate_instance_id(value: str) -> str:
    """Return ``value`` if it looks like an ECS instance id, else raise UsageError."""
    if not is_instance_id(value):
        shown = value if isinstance(value, str) and len(value) <= 40 else "(too long)"
        shown = shown.encode("ascii", "backslashreplace").decode("ascii")
        raise UsageError(f"{shown!r} is not an ECS instance id (expected i- followed by "
                         "8-30 lowercase letters or digits)")
    return value


def validate_case_name(name: str) -> str:
    """A single, plain path component: no separators, no '..', not absolute, no NUL."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
            or "\\" in name or "\x00" in name or _CASE_NAME_RE.fullmatch(name) is None):
        shown = repr(name)[:60]
        raise UsageError(f"{shown} is not a usable case name (letters, digits, '.', '_', '-'; "
                         "no path separators)")
    return name


def child_path(root: str | Path, name: str) -> Path:
    """``root / name`` for a validated single-component ``name``; refuses anything that escapes."""
    validate_case_name(name)
    root_path = Path(root)
    path = root_path / name
    # Belt and braces: the joined path must stay directly under root.
    if path.parent != root_path:
        raise UsageError(f"{name!r} escapes {root_path}")
    return path
