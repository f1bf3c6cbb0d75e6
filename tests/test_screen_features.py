"""Visual features become marker lines, and rules (not Python) turn them into verdicts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.pipeline import Analyzer, evidence_from_bytes
from diagnose.screen import features, read_screen, write_ocr_debug

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lab"


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _sad_face_screen(bg=(0, 120, 215)):
    """A Windows-8-style stop screen drawn with shapes: ':(' three lines tall, text bars below."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1024, 768), bg)
    d = ImageDraw.Draw(img)
    d.ellipse([160, 200, 176, 216], fill="white")  # the colon
    d.ellipse([160, 262, 176, 278], fill="white")
    d.arc([190, 180, 260, 300], start=100, end=260, fill="white", width=8)  # the bracket
    for i, width in enumerate((620, 560, 300, 480)):
        d.rectangle([160, 340 + i * 34, 160 + width, 352 + i * 34], fill="white")
    return img


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer.load()


def test_colour_names():
    assert features.name_colour((0, 120, 215)) == "bsod-blue"  # Windows 10 #0078D7
    assert features.name_colour((17, 115, 213)) == "bsod-blue"
    assert features.name_colour((0, 0, 170)) == "classic-blue"  # VGA blue #0000AA
    assert features.name_colour((0, 0, 128)) == "classic-blue"
    assert features.name_colour((0, 0, 0)) == "black"
    assert features.name_colour((46, 52, 54)) == "grey"
    assert features.name_colour((255, 255, 255)) == "white"


def test_black_screen_is_uncertain_by_rule(analyzer):
    from PIL import Image

    data = _png(Image.new("RGB", (1024, 768), (0, 0, 0)))
    res = read_screen(data)
    assert res.reader == "none" and res.features["blank"] == "black"
    assert "@screen blank=black" in res.rule_lines()
    ev = evidence_from_bytes(None, name="x", origin="-", screenshot=data, screenshot_origin="s")
    v = analyzer.analyse(ev).verdict
    assert (v.status, v.category, v.rule_id) == ("uncertain", "unknown", "screen.blank.black")
    assert "take another screenshot" in " ".join(v.remediation).lower()


def test_cursor_alone_is_still_blank():
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (720, 400), (0, 0, 0))
    ImageDraw.Draw(img).rectangle([0, 13, 8, 14], fill=(168, 168, 168))  # a text-mode cursor
    assert read_screen(_png(img)).features.get("blank") == "black"


def test_sad_face_is_found_and_decides_bsod(analyzer, monkeypatch):
    """Even without OCR (tesseract missing here, on purpose) the face decides."""
    from diagnose.screen import ocr

    def no_ocr(*_a, **_k):
        raise ocr.OcrUnavailable("tesseract is not installed")

    monkeypatch.setattr(ocr, "read", no_ocr)
    img = _sad_face_screen()
    feats = features.measure(__import__("numpy").asarray(img))
    assert feats["background"] == "bsod-blue"
    x, y, w, h = feats["sad_face"]
    assert 150 <= x <= 170 and 170 <= y <= 205 and 90 <= h <= 130
    assert "@screen sad-face on background=bsod-blue" in features.marker_lines(feats)
    ev = evidence_from_bytes(None, name="x", origin="-", screenshot=_png(img),
                             screenshot_origin="s")
    diag = analyzer.analyse(ev)
    assert diag.verdict.category == "windows-bsod"
    assert any("no OCR" in n for n in diag.screen.notes)
    face = [f for f in diag.findings if f.rule_id == "screen.bsod.sad-face"]
    assert face and face[0].boxes and face[0].boxes[0].x == x


def test_no_sad_face_on_plain_text_screen():
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1024, 768), (0, 120, 215))
    d = ImageDraw.Draw(img)
    for i in range(8):
        d.rectangle([100, 100 + i * 30, 700, 112 + i * 30], fill="white")
    assert "sad_face" not in features.measure(__import__("numpy").asarray(img))


def test_ocr_debug_files(tmp_path):
    run = FIXTURES / "vfs-panic__text"
    if not (run / "screen.png").is_file():
        pytest.skip("fixture missing")
    paths = write_ocr_debug((run / "screen.png").read_bytes(), tmp_path / "dbg")
    names = {p.name for p in paths}
    assert {"screen.png", "preprocessed.png", "boxes.png", "ocr.txt", "ocr.json"} <= names
    doc = json.loads((tmp_path / "dbg" / "ocr.json").read_text())
    assert doc["reader"] == "console-font"
    assert any("Kernel panic" in ln["text"] and ln["boxes"] for ln in doc["lines"])
    assert "@screen background=black" in (tmp_path / "dbg" / "ocr.txt").read_text()


def test_ocr_debug_on_bad_image(tmp_path):
    paths = write_ocr_debug(b"\x89PNG\r\n\x1a\n", tmp_path)
    assert [p.name for p in paths] == ["error.txt"]
    assert "truncated PNG" in paths[0].read_text()


def test_import_is_cheap():
    code = ("import sys, diagnose.screen; "
            "print(sorted(m for m in ('numpy', 'PIL', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"
