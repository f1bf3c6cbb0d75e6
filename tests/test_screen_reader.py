"""The console-font reader against the VGA text buffer, and its fallbacks."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from diagnose.model import Box
from diagnose.screen import ScreenLine, _join_wrapped, font, grid, image, read_screen

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lab"


def _runs(mode: str, need: str = "screen.png") -> list[Path]:
    return [p.parent for p in sorted(FIXTURES.glob(f"*__{mode}/{need}"))]


def _text_runs() -> list[Path]:
    """Text-mode runs whose VGA buffer holds the screen (a Debian root with a DRM driver draws
    on a framebuffer instead and leaves the text buffer empty)."""
    return [d for d in _runs("text", "vga.bin")
            if (d / "screen.txt").is_file() and (d / "screen.txt").read_text().strip()]


def _truth(d: Path) -> list[str]:
    vga = (d / "vga.bin").read_bytes()
    return ["".join(" " if c < 0x20 else font.glyph_char(c) for c in vga[r * 160:(r + 1) * 160:2])
            .rstrip() for r in range(25)]


def _char_accuracy(rows: list[str], truth: list[str]) -> float:
    right = sum(a == b for got, want in zip(rows, truth, strict=True)
                for a, b in zip(got.ljust(80), want.ljust(80), strict=True))
    return right / (80 * len(truth))


def _jpeg(rgb, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _rom_table() -> bytes:
    found = font.load_rom_font()
    if found is None:
        pytest.fail("no SeaBIOS VGA ROM: scripts/setup.sh installs the seabios package")
    return found[0]


def test_fonts_come_from_this_machine():
    vga = _rom_table()
    names = font.font_names()
    assert names[0] == "vga8x16"
    assert dict(font.font_tables())["vga8x16"] == vga
    if "linux8x16" in names:  # fbcon draws 42 glyphs differently from the VGA BIOS
        assert dict(font.font_tables())["linux8x16"] != vga


def test_font_table_found_by_structure():
    table = _rom_table()
    blob = bytes(range(256)) * 7 + table + b"\xff" * 300
    assert font.find_font_table(blob) == table
    assert font.find_font_table(blob[:-300 - 16]) is None  # cut: no complete table


def test_fonts_are_cached_after_extraction(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAGNOSE_CACHE", str(tmp_path))
    font.font_tables.cache_clear()
    try:
        notes = font.prepare()
        assert any(n.startswith("vga8x16 from") for n in notes)
        assert (tmp_path / "fonts" / "vga8x16.bin").read_bytes() == _rom_table()
    finally:
        font.font_tables.cache_clear()


def test_glyph_chars_are_cp437():
    assert font.glyph_char(0x41) == "A"
    assert font.glyph_char(0xC4) == "─"
    assert font.glyph_char(0x01) == "☺"
    assert font.glyph_char(0x00) == font.glyph_char(0xFF) == " "


@pytest.mark.parametrize("run", _text_runs(), ids=lambda p: p.name)
def test_font_reader_matches_vga_buffer(run):
    _, rgb = image.decode((run / "screen.png").read_bytes())
    gr = grid.read_grid(rgb)
    assert gr is not None and gr.accepted
    assert (gr.geometry.cols, gr.geometry.rows, gr.geometry.cell_w) == (80, 25, 9)
    rows = [gr.row_text(r) for r in range(25)]
    assert _char_accuracy(rows, _truth(run)) >= 0.995
    # screen.txt is what the lab wrote from the same buffer
    assert [r.rstrip() for r in rows] == (run / "screen.txt").read_text().split("\n")[:25]


@pytest.mark.parametrize("quality", [90, 75])
def test_font_reader_on_jpeg(quality):
    runs = _text_runs()
    if not runs:
        pytest.skip("no text-mode fixtures")
    for run in runs[:3]:
        _, rgb = image.decode((run / "screen.png").read_bytes())
        _, lossy = image.decode(_jpeg(rgb, quality))
        gr = grid.read_grid(lossy)
        assert gr is not None and gr.accepted, run.name
        rows = [gr.row_text(r) for r in range(25)]
        assert _char_accuracy(rows, _truth(run)) >= 0.995, run.name


@pytest.mark.parametrize("run", _runs("fb", "serial.log")[:8], ids=lambda p: p.name)
def test_font_reader_on_framebuffer(run):
    """fbcon draws the kernel's own font: every line read must be a line the kernel also sent
    to the serial console (except the getty banner and prompt lines, which differ per tty)."""
    meta = json.loads((run / "meta.json").read_text())
    if "dummy" in (meta.get("kernel_console") or ""):
        pytest.skip("no framebuffer console in this kernel: the screen is black")
    _, rgb = image.decode((run / "screen.png").read_bytes())
    gr = grid.read_grid(rgb)
    assert gr is not None and gr.accepted and gr.exact
    assert gr.geometry.cell_w == 8
    serial = (run / "serial.log").read_bytes().decode("utf-8", "replace").replace("\r", "")
    lines = [ln.text.strip() for ln in grid.logical_lines(gr) if ln.text.strip()]
    kernel = [ln for ln in lines if ln.startswith("[")]
    assert kernel, "no kernel message on the screen"
    assert all(ln in serial for ln in kernel)


def test_rescaled_screen_is_not_read_as_a_grid():
    """A rescaled console no longer sits on the font's grid: the reader must refuse it rather
    than invent characters."""
    runs = _text_runs()
    if not runs:
        pytest.skip("no text-mode fixtures")
    from PIL import Image

    _, rgb = image.decode((runs[0] / "screen.png").read_bytes())
    small = Image.fromarray(rgb).resize((640, 356), Image.BILINEAR)
    import numpy as np

    gr = grid.read_grid(np.asarray(small))
    assert gr is None or not gr.accepted


def test_wrapped_panic_line_is_joined():
    run = FIXTURES / "vfs-panic__text"
    if not (run / "screen.png").is_file():
        pytest.skip("fixture missing")
    rows = (run / "screen.txt").read_text().split("\n")
    wrapped = [i for i, r in enumerate(rows) if len(r) == 80 and "Kernel panic" in r]
    assert wrapped, "the fixture no longer has a wrapped panic line"
    res = read_screen((run / "screen.png").read_bytes(), reader="console-font")
    assert res.reader == "console-font"
    joined = [ln for ln in res.lines if "Kernel panic - not syncing: VFS:" in ln.text]
    assert joined
    first = joined[0]
    assert first.text == rows[wrapped[0]] + rows[wrapped[0] + 1]
    assert "unknown-block(0,0)" in first.text
    assert len(first.boxes) == 2
    assert first.boxes[0].y + first.boxes[0].h == first.boxes[1].y
    assert first.boxes[0].w == 80 * 9 and first.boxes[0].h == 16


def test_rows_starting_a_new_message_are_not_joined():
    run = FIXTURES / "vfs-panic__text"
    if not (run / "screen.png").is_file():
        pytest.skip("fixture missing")
    res = read_screen((run / "screen.png").read_bytes(), reader="console-font")
    stamp = re.compile(r"^\[\s*\d+\.\d+\]")
    rows = (run / "screen.txt").read_text().split("\n")
    assert sum(bool(stamp.match(ln.text)) for ln in res.lines) == sum(
        bool(stamp.match(r)) for r in rows)


def test_tesseract_lines_wrapped_at_the_edge_are_joined():
    lines = [
        ScreenLine("[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs on unkno",
                   (Box(0, 0, 712, 14),), 0.9),
        ScreenLine("wn-block(0,0)", (Box(1, 16, 110, 14),), 0.9),
        ScreenLine("[ 1.1] CPU: 0 PID: 1", (Box(0, 32, 200, 14),), 0.9),
        ScreenLine("short line", (Box(0, 48, 90, 14),), 0.9),
        ScreenLine("next", (Box(0, 64, 40, 14),), 0.9),
    ]
    out = _join_wrapped(lines, 720)
    assert [ln.text for ln in out] == [
        "[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
        "[ 1.1] CPU: 0 PID: 1", "short line", "next"]
    assert len(out[0].boxes) == 2


def test_cursor_cell_is_read_as_blank():
    run = FIXTURES / "healthy-login__text"
    if not (run / "screen.png").is_file():
        pytest.skip("fixture missing")
    res = read_screen((run / "screen.png").read_bytes())
    assert res.reader == "console-font"
    assert res.lines[-1].text == "lab login:"
    assert res.features["cursor"] == [11, 24]
    assert res.features["prompt"] == "login"
    assert res.markers[-1] == "@screen last-line: lab login:"
