"""Structural checks of the real-VM lab fixtures in tests/fixtures/lab/ (no QEMU needed)."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lab"

# Hard-coded copy of the ids in shared/taxonomy.md (the test must not depend on shared/).
STATUSES = {"failed", "in-progress", "degraded", "healthy", "uncertain", "skipped"}
CATEGORIES = {
    "kernel-panic-vfs",
    "kernel-panic-init",
    "kernel-panic-other",
    "kernel-oops-bug",
    "soft-lockup-rcu-stall",
    "oom-killer",
    "fsck-required",
    "fsck-in-progress-hang",
    "emergency-mode",
    "dracut-initramfs-timeout",
    "grub-failure",
    "firmware-no-bootable-device",
    "filesystem-error",
    "disk-full",
    "io-error-disk",
    "network-failure",
    "cloud-init-failure",
    "sshd-failure",
    "selinux-relabel",
    "windows-bsod",
    "windows-boot-error",
    "windows-recovery",
    "windows-update-in-progress",
    "healthy",
    "unknown",
}
MODES = {
    "text": {"width": 720, "height": 400, "cols": 80, "rows": 25},
    "fb": {"width": 1024, "height": 768, "cols": 128, "rows": 48},
}
SERIAL_LIMIT = 200 * 1024 + 1024  # the lab trims logs above 200 KiB (plus a marker line)

FIXTURE_DIRS = sorted(p for p in FIXTURES.iterdir() if p.is_dir()) if FIXTURES.is_dir() else []


def _ids(dirs: list[Path]) -> list[str]:
    return [d.name for d in dirs]


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "bad PNG signature"
    chunks = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in PNG chunk {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _meta(d: Path) -> dict:
    return json.loads((d / "meta.json").read_text())


def test_fixtures_exist() -> None:
    assert len(FIXTURE_DIRS) >= 10, "expected the lab's fixture set under tests/fixtures/lab"


def test_fixture_dir_names_are_scenario_and_mode() -> None:
    for d in FIXTURE_DIRS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*__(text|fb)", d.name), d.name


@pytest.mark.parametrize("d", FIXTURE_DIRS, ids=_ids(FIXTURE_DIRS))
def test_meta(d: Path) -> None:
    meta = _meta(d)
    scenario, mode = d.name.split("__")
    assert meta["scenario"] == scenario
    assert meta["mode"] == mode
    assert isinstance(meta["description"], str) and meta["description"]
    kernel = meta["kernel"]
    assert kernel["flavour"] in {"generic", "cloud"}
    assert kernel["version"] and kernel["package"].startswith("linux-image-")
    assert kernel["package"].endswith(".deb")
    assert re.fullmatch(r"\d+\.\d+.*", meta["qemu_version"])
    argv = meta["command_line"]
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    assert argv[0].startswith("qemu-system-x86_64") and "tcg" in argv
    display = meta["display"]
    assert display["mode"] == mode
    for key in ("width", "height", "cols", "rows"):
        assert isinstance(display[key], int) and display[key] > 0
    assert (display["cols"], display["rows"]) == (MODES[mode]["cols"], MODES[mode]["rows"])
    stf = meta["seconds_to_failure"]
    assert stf is None or (isinstance(stf, (int, float)) and 0 < stf < 3600)
    assert isinstance(meta["timed_out"], bool)
    assert meta["expect"]["status"] in STATUSES
    assert meta["expect"]["category"] in CATEGORIES
    assert isinstance(meta["trimmed"], bool)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\+00:00|Z)", meta["created"])
    assert "tests/fixtures/README.md" in meta["source"]


@pytest.mark.parametrize("d", FIXTURE_DIRS, ids=_ids(FIXTURE_DIRS))
def test_screen_png(d: Path) -> None:
    meta = _meta(d)
    chunks = _png_chunks((d / "screen.png").read_bytes())
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == (meta["display"]["width"], meta["display"]["height"])
    if meta["mode"] == "text":
        assert (width, height) == (720, 400)


@pytest.mark.parametrize("d", FIXTURE_DIRS, ids=_ids(FIXTURE_DIRS))
def test_serial_log(d: Path) -> None:
    meta = _meta(d)
    data = (d / "serial.log").read_bytes()
    assert len(data) <= SERIAL_LIMIT
    assert (b"bytes of serial output trimmed" in data) == meta["trimmed"]
    if "-kernel" not in meta["command_line"]:
        # a firmware boot (GRUB from a disk image): no kernel may ever start, and GRUB writes to
        # the screen only unless its config names a serial terminal; the screen must show it
        screen = (d / "screen.txt").read_text(encoding="utf-8").lower()
        assert "grub" in screen or "error:" in screen, "the screen shows no boot-loader text"
        return
    assert data.strip(), "empty serial log"
    assert b"Linux version" in data, "serial log does not show a kernel boot"
    assert data.count(b"Linux version ") >= meta.get("boots", 1)


@pytest.mark.parametrize("d", [d for d in FIXTURE_DIRS if d.name.endswith("__text")])
def test_text_mode_buffers(d: Path) -> None:
    vga = (d / "vga.bin").read_bytes()
    assert len(vga) == 32 * 1024
    lines = (d / "screen.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "screen.txt ends with a newline"
    lines = lines[:-1]
    assert len(lines) == 25
    assert all(len(line) <= 80 for line in lines)
    assert any(line.strip() for line in lines), "blank text screen"
    # screen.txt is the decoded first page of vga.bin (character bytes, CP437)
    first = bytes(max(b, 0x20) for b in vga[0 : 80 * 2 : 2]).decode("cp437").rstrip()
    assert lines[0] == first


def test_fixture_set_is_small() -> None:
    total = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
    assert total < 8 * 1024 * 1024, f"fixtures take {total} bytes"


def test_every_fixture_is_documented() -> None:
    readme = (FIXTURES.parent / "README.md").read_text()
    for d in FIXTURE_DIRS:
        assert d.name in readme, f"{d.name} missing from tests/fixtures/README.md"
