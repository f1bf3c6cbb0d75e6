"""Bad screenshots are reported as unreadable with a reason, never a crash."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest

from diagnose.model import Artifact
from diagnose.pipeline import Analyzer, evidence_from_bytes
from diagnose.screen import UnreadableImage, analyse_screenshot, read_screen
from diagnose.screen import image as img

LAB = Path(__file__).resolve().parent.parent / "lab" / "out"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lab"


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer.load()


def _real_png() -> bytes:
    for base in (FIXTURES, LAB):
        for p in sorted(base.glob("*__text/screen.png")):
            return p.read_bytes()
    pytest.skip("no lab screenshot available")


def _png(width: int, height: int, rows: bytes | None = None) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    if rows is None:
        rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    return (img.PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _jpeg(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (0, 0, 170)).save(buf, "JPEG")
    return buf.getvalue()


BAD = {
    "zero bytes": (b"", "empty"),
    "wrong magic (GIF)": (b"GIF89a" + bytes(64), "not a PNG or JPEG"),
    "wrong magic (text)": (b"<html><body>403 Forbidden</body></html>", "not a PNG or JPEG"),
    "png signature only": (img.PNG_MAGIC, "truncated PNG"),
    "png header claims 100000x100000": (_png(100000, 100000, rows=b""), "refused"),
    "png 1x1": (_png(1, 1), "too small"),
    "png zero width": (_png(0, 10, rows=b""), "empty image"),
    "jpeg soi only": (b"\xff\xd8\xff", "truncated JPEG"),
    "jpeg header claims 60000x60000": (
        b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", 60000, 60000) + bytes(10),
        "refused"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_image_is_unreadable_with_reason(name):
    data, words = BAD[name]
    with pytest.raises(UnreadableImage) as exc:
        read_screen(data)
    assert words in exc.value.reason


def test_truncated_png_and_jpeg():
    png = _real_png()
    jpg = _jpeg(320, 200)
    for data, kind in ((png[: len(png) // 2], "PNG"), (jpg[: len(jpg) // 2], "JPEG")):
        with pytest.raises(UnreadableImage) as exc:
            read_screen(data)
        assert kind in exc.value.reason
        assert "truncated" in exc.value.reason or "corrupt" in exc.value.reason


def test_corrupt_png_body():
    png = bytearray(_real_png())
    png[60:400] = bytes(340)  # zero the start of the compressed data
    with pytest.raises(UnreadableImage):
        read_screen(bytes(png))


def test_bomb_is_refused_before_decoding(monkeypatch):
    """The header check must refuse a huge image without handing it to the decoder."""
    import PIL.Image

    def boom(*_a, **_k):
        raise AssertionError("decoder called for an oversized image")

    monkeypatch.setattr(PIL.Image, "open", boom)
    with pytest.raises(UnreadableImage, match="refused"):
        read_screen(_png(100000, 100000, rows=b""))


def test_header_dimensions():
    assert img.read_header(_jpeg(200, 120)) == img.Header("jpeg", 200, 120)
    assert img.read_header(_png(300, 100)) == img.Header("png", 300, 100)


@pytest.mark.parametrize("name", sorted(BAD))
def test_pipeline_reports_unreadable_artifact(name, analyzer):
    data, _ = BAD[name]
    ev = evidence_from_bytes(None, name="x", origin="-", screenshot=data, screenshot_origin="s")
    diag = analyzer.analyse(ev)
    art = next(a for a in diag.artifacts if a.name == "screenshot")
    assert art.available is False
    assert art.reason and art.reason.startswith("unreadable screenshot: ")
    assert art.detail.get("analysed") is False
    assert diag.verdict.status == "uncertain"
    assert diag.screen is None


def test_analyse_adds_screenshot_artifact_when_missing(analyzer):
    result, findings, arts = analyse_screenshot(analyzer, b"", None,
                                                [Artifact("console", True, 5)])
    assert result is None and findings == []
    assert [a.name for a in arts] == ["console", "screenshot"]
    assert arts[1].available is False


def test_uniform_jpeg_is_read_as_blank():
    res = read_screen(_jpeg(640, 400))
    assert res.reader == "none" and res.text == ""
    assert res.features["blank"] == "uniform"
    assert res.format == "jpeg"
    assert "@screen blank=uniform" in res.rule_lines()
