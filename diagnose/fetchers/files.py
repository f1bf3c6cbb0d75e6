"""A saved case directory: the evidence of one instance, on disk.

Layout (every file optional)::

    <case>/console.log        raw console bytes, exactly as fetched
    <case>/screenshot.png     or screenshot.jpg: the format is sniffed, the name only follows it
    <case>/instance.json      subject (kind, name, facts), os_hint, skip_reason, artifact reasons
    <case>/events.json        a list of platform events

``save_case`` writes a directory with mode 0o700 and files with mode 0o600 (console text and
screenshots can hold secrets). ``load_case`` reads one back; it refuses symlinks and oversized
files, since a case directory may come from someone else.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..model import Artifact, Event, Evidence, Subject
from .base import IMAGE_SUFFIX, child_path, is_instance_id, sniff_image, validate_case_name

CONSOLE = "console.log"
SCREENSHOTS = ("screenshot.png", "screenshot.jpg", "screenshot.jpeg")
INSTANCE = "instance.json"
EVENTS = "events.json"
FORMAT = 1

MAX_CONSOLE = 64 * 1024 * 1024
MAX_SCREENSHOT = 32 * 1024 * 1024
MAX_JSON = 4 * 1024 * 1024

_KINDS = ("file", "ecs", "qemu", "case")
_OS = ("linux", "windows")


class FilesFetcher:
    """``get_fetcher("files").fetch(path)``: a saved case directory."""

    name = "files"

    def fetch(self, target: str, **options: Any) -> Evidence:
        return load_case(target)


# --------------------------------------------------------------------------------------------
# Paths


def case_dir(root: str | Path, name: str) -> Path:
    """``root/<name>`` for a plain case name or instance id; refuses '..', '/', absolute names."""
    return child_path(root, validate_case_name(name))


def case_dir_for(root: str | Path, evidence: Evidence) -> Path:
    """Where ``save_case`` should put this evidence under ``root``: ``root/<instance id>``."""
    name = evidence.subject.name
    if evidence.subject.kind == "ecs" and not is_instance_id(name):
        raise UsageError(f"{name[:40]!r} is not an ECS instance id; refusing it as a file name")
    return case_dir(root, name)


# --------------------------------------------------------------------------------------------
# Reading


def _read(path: Path, limit: int) -> bytes | None:
    """The file's bytes, None when absent. Symlinks and special files are refused."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_symlink():
            raise UsageError(f"{path} is a symbolic link; refusing to follow it") from None
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not _is_regular(info.st_mode):
            raise UsageError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise UsageError(f"{path} is {info.st_size} bytes, more than the {limit} allowed")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path} is larger than the {limit} bytes allowed")
    return data


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _read_json(path: Path) -> Any:
    raw = _read(path, MAX_JSON)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc.__class__.__name__}") from None


def _text(value: Any, limit: int = 500) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _saved_artifacts(meta: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    raw = meta.get("artifacts")
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                out[item["name"]] = item
    return out


def _scalar_detail(saved: Mapping[str, Any] | None) -> dict[str, Any]:
    if not saved:
        return {}
    skip = {"name", "available", "bytes", "reason", "origin"}
    return {k: v for k, v in saved.items() if k not in skip and isinstance(k, str)
            and isinstance(v, (str, int, float, bool)) and not isinstance(v, bytes)}


def _missing(name: str, saved: Mapping[str, Any] | None, default: str) -> Artifact:
    reason = _text(saved.get("reason")) if saved and saved.get("available") is False else ""
    origin = _text(saved.get("origin")) if saved else ""
    return Artifact(name, False, 0, reason or default, origin or None, _scalar_detail(saved))


def _events(raw: Any, where: Path) -> tuple[Event, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UsageError(f"{where} must hold a JSON list of events")
    out = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("kind"), str):
            continue
        out.append(Event(time=_text(item.get("time"), 40), kind=_text(item["kind"], 80),
                         status=_text(item.get("status"), 40),
                         description=_text(item.get("description"), 500),
                         scheduled=item.get("scheduled") is True))
    return tuple(out)


def load_case(path: str | Path) -> Evidence:
    """Read a case directory back into Evidence. Missing files become reasons, not errors."""
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"{root} is not a case directory")
    meta = _read_json(root / INSTANCE)
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise UsageError(f"{root / INSTANCE} must hold a JSON object")
    subject_raw = meta.get("subject") if isinstance(meta.get("subject"), Mapping) else {}
    kind = subject_raw.get("kind") if subject_raw.get("kind") in _KINDS else "case"
    name = _text(subject_raw.get("name"), 200) or root.name
    facts_raw = subject_raw.get("facts")
    facts: list[tuple[str, str]] = []
    if isinstance(facts_raw, list):
        for pair in facts_raw:
            if (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], str)):
                facts.append((pair[0][:60], pair[1][:500]))
    saved = _saved_artifacts(meta)

    console = _read(root / CONSOLE, MAX_CONSOLE)
    if console is not None:
        console_art = Artifact("console", True, len(console), None, str(root / CONSOLE),
                               _scalar_detail(saved.get("console")))
    else:
        console_art = _missing("console", saved.get("console"), f"no {CONSOLE} in the case")

    screenshot = None
    shot_art = _missing("screenshot", saved.get("screenshot"), "no screenshot in the case")
    for file_name in SCREENSHOTS:
        data = _read(root / file_name, MAX_SCREENSHOT)
        if data is None:
            continue
        kind_found = sniff_image(data)
        if kind_found is None:
            shot_art = Artifact("screenshot", False, len(data),
                                f"{file_name} is neither PNG nor JPEG", str(root / file_name))
            break
        detail = _scalar_detail(saved.get("screenshot"))
        detail["format"] = kind_found
        screenshot = data
        shot_art = Artifact("screenshot", True, len(data), None, str(root / file_name), detail)
        break

    events_raw = _read_json(root / EVENTS)
    events = _events(events_raw, root / EVENTS)
    artifacts = [console_art, shot_art]
    if events_raw is not None:
        artifacts.append(Artifact("events", True, 0, None, str(root / EVENTS),
                                  {"count": len(events)}))
    elif "events" in saved:
        artifacts.append(_missing("events", saved["events"], f"no {EVENTS} in the case"))

    os_hint = meta.get("os_hint") if meta.get("os_hint") in _OS else None
    if os_hint is None:
        os_fact = dict(facts).get("os_type", "").lower()
        os_hint = os_fact if os_fact in _OS else None
    skip_reason = None
    if console is None and screenshot is None:
        skip_reason = _text(meta.get("skip_reason")) or "; ".join(
            dict.fromkeys(a.reason for a in (console_art, shot_art) if a.reason))
    return Evidence(subject=Subject(kind, name, tuple(facts)), console=console,
                    screenshot=screenshot, artifacts=tuple(artifacts), events=events,
                    os_hint=os_hint, skip_reason=skip_reason)


# --------------------------------------------------------------------------------------------
# Writing


def _write(directory: Path, name: str, data: bytes) -> None:
    """Write ``directory/name`` with mode 0o600, atomically (temp file, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, directory / name)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _remove(path: Path) -> None:
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
    except FileNotFoundError:
        pass


def save_case(evidence: Evidence, path: str | Path) -> None:
    """Write ``evidence`` as a case directory at ``path`` (created 0o700, files 0o600)."""
    root = Path(path)
    if root.is_symlink():
        raise UsageError(f"{root} is a symbolic link; refusing to write through it")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a directory")
    if evidence.subject.kind == "ecs" and not is_instance_id(evidence.subject.name):
        raise UsageError("the evidence's instance id is not valid; refusing to save it")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)

    if evidence.console is not None:
        _write(root, CONSOLE, evidence.console)
    else:
        _remove(root / CONSOLE)

    artifacts = [dict(a.to_json(), name=a.name) for a in evidence.artifacts]
    kind = sniff_image(evidence.screenshot)
    for file_name in SCREENSHOTS:
        _remove(root / file_name)
    if evidence.screenshot is not None:
        if kind is not None:
            _write(root, "screenshot" + IMAGE_SUFFIX[kind], evidence.screenshot)
        else:
            for item in artifacts:
                if item["name"] == "screenshot":
                    item.update(available=False,
                                reason="screenshot was neither PNG nor JPEG; not saved")

    meta = {
        "format": FORMAT,
        "saved": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "subject": {"kind": evidence.subject.kind, "name": evidence.subject.name,
                    "facts": [list(pair) for pair in evidence.subject.facts]},
        "os_hint": evidence.os_hint,
        "skip_reason": evidence.skip_reason,
        "artifacts": artifacts,
    }
    _write(root, INSTANCE, json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8"))
    events_art = next((a for a in evidence.artifacts if a.name == "events"), None)
    if evidence.events or (events_art is not None and events_art.available):
        _write(root, EVENTS, json.dumps([asdict(e) for e in evidence.events], indent=2,
                                        ensure_ascii=False).encode("utf-8"))
    else:
        _remove(root / EVENTS)
