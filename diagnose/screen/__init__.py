"""Reading a VM's screenshot: text, where the text is, and what the screen looks like.

    read_screen(data) -> ScreenResult            (raises UnreadableImage for a bad image)
    analyse_screenshot(analyzer, data, os_name, artifacts) -> (ScreenResult | None, findings,
                                                               artifacts)   (never raises)
    write_ocr_debug(data, out_dir) -> [paths]     (preprocessed image, boxes, text, JSON)

Two readers:

- "console-font" (grid.py): VGA text mode and the Linux framebuffer console draw every
  character from a known bitmap font on a fixed grid, so the screen is read back cell by cell,
  exactly and in milliseconds.
- "tesseract" (ocr.py): everything else (Windows, GUIs, photos, rescaled or re-encoded screens,
  other fonts).

A screen with no ink at all is not read ("none"). Visual features (features.py) become marker lines
(`@screen background=bsod-blue ...`) after the text, so rules under rules/screen/ can use them.

Only the standard library is imported here: numpy, Pillow and the readers load on first use.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..model import Artifact, Box, Finding, Line
from .image import UnreadableImage

__all__ = ["ScreenLine", "ScreenResult", "UnreadableImage", "analyse_screenshot", "read_screen",
           "write_ocr_debug"]

READERS = ("console-font", "tesseract", "none")
_LOGIN = re.compile(r"\blogin: ?$")
_SHELL = re.compile(r"(?:[$#]|\S+:/#) ?$")
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]")


@dataclass(frozen=True)
class ScreenLine:
    """One logical line of screen text (rows wrapped at the screen edge are joined)."""

    text: str
    boxes: tuple[Box, ...]  # one rectangle per screen row the line occupies, in image pixels
    confidence: float  # 0-1: worst cell (console-font) or mean word confidence (tesseract)


@dataclass(frozen=True)
class ScreenResult:
    text: str  # the lines, newline-separated (no marker lines)
    reader: str  # "console-font" | "tesseract" | "none"
    width: int
    height: int
    features: dict[str, Any] = field(default_factory=dict)
    lines: tuple[ScreenLine, ...] = ()
    markers: tuple[str, ...] = ()  # feature lines given to the rules after the text
    format: str = ""  # "png" | "jpeg"
    confidence: float = 0.0  # share of the text read confidently
    seconds: float = 0.0  # time to read (not part of the JSON: it varies run to run)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text, "reader": self.reader, "width": self.width,
            "height": self.height, "features": dict(self.features), "format": self.format,
            "confidence": round(self.confidence, 3),
            "lines": [{"text": ln.text, "boxes": [[b.x, b.y, b.w, b.h] for b in ln.boxes]}
                      for ln in self.lines],
            "notes": list(self.notes),
        }

    def rule_lines(self) -> list[str]:
        """What the rules see: the text lines, then the marker lines."""
        return [ln.text for ln in self.lines] + list(self.markers)


# -------------------------------------------------------------------------------------------
# reading


def read_screen(data: bytes, *, reader: str = "auto") -> ScreenResult:
    """Read a PNG or JPEG screenshot. `reader`: auto | console-font | tesseract.

    Raises UnreadableImage (with a plain `reason`) for anything that is not a readable image.
    """
    t0 = time.perf_counter()
    from . import features as fx
    from . import image

    head, rgb = image.decode(data)
    feats = fx.measure(rgb)
    notes: list[str] = []
    lines: list[ScreenLine] = []
    used = "none"
    confidence = 1.0
    if feats.get("blank"):
        notes.append("the screen has no text on it")
    else:
        got = None
        if reader in ("auto", "console-font"):
            got = _read_console_font(rgb, feats, notes)
        if got is None and reader in ("auto", "tesseract"):
            got = _read_tesseract(rgb, feats, notes)
        if got is not None:
            used, lines, confidence = got
    prompt = _prompt(lines)
    if prompt:
        feats["prompt"] = prompt
    markers = fx.marker_lines(feats)
    last = fx.last_line_marker([ln.text for ln in lines])
    if last:
        markers.append(last)
    return ScreenResult(
        text="\n".join(ln.text for ln in lines), reader=used, width=head.width,
        height=head.height, features=feats, lines=tuple(lines),
        markers=tuple(markers), format=head.format, confidence=confidence,
        seconds=time.perf_counter() - t0,
        notes=tuple(notes))


def _read_console_font(rgb, feats: dict, notes: list[str]):
    from . import grid

    gr = grid.read_grid(rgb)
    if gr is None or not gr.accepted:
        if gr is not None and gr.inked.any():
            notes.append(f"not a console-font grid (best: {gr.geometry.label()}, "
                         f"{gr.share:.0%} of inked cells matched)")
        return None
    g = gr.geometry
    feats["grid"] = g.label()
    if gr.cursor is not None:
        feats["cursor"] = [gr.cursor[1], gr.cursor[0]]  # column, row
    out = []
    for gl in grid.logical_lines(gr):
        boxes = tuple(Box(g.x0 + c0 * g.pitch_x, g.y0 + r * g.pitch_y,
                          (c1 - c0 + 1) * g.pitch_x, g.pitch_y)
                      for r, c0, c1 in gl.rows)
        out.append(ScreenLine(gl.text, boxes, round(gl.conf, 3)))
    unknown = sum(ln.text.count("\ufffd") for ln in out)
    if unknown:
        notes.append(f"{unknown} character cells did not match the console font")
    return "console-font", _trim(out), gr.share


def _read_tesseract(rgb, feats: dict, notes: list[str]):
    from . import ocr

    try:
        res = ocr.read(rgb)
    except ocr.OcrUnavailable as exc:
        notes.append(f"no OCR: {exc}")
        return None
    width = rgb.shape[1]
    out = [ScreenLine(ln.text, (Box(*ln.box),), round(ln.conf, 3)) for ln in res.lines]
    out = _join_wrapped(out, width)
    words = [w for ln in res.lines for w in ln.words]
    conf = (sum(w.conf for w in words) / len(words) / 100.0) if words else 0.0
    head = _headline(res, rgb.shape[0])
    if head is not None:
        feats["headline"] = head
    return "tesseract", out, conf


def _headline(res, height: int) -> str | None:
    """The line holding the largest confidently read word, when that word is big for the screen
    (at least 6% of its height: a lock screen's clock, a recovery screen's title). Console text
    is 2-4%."""
    best = None
    for ln in res.lines:
        for w in ln.words:
            if w.conf >= 80 and w.h >= 0.06 * height and (best is None or w.h > best[0]):
                best = (w.h, ln.text.strip())
    if best is None or len(best[1]) > 60:
        return None
    return best[1]


def _trim(lines: list[ScreenLine]) -> list[ScreenLine]:
    """Drop trailing empty lines; keep inner ones (line numbers stay screen rows)."""
    while lines and not lines[-1].text.strip():
        lines.pop()
    return lines


def _join_wrapped(lines: list[ScreenLine], width: int) -> list[ScreenLine]:
    """Tesseract lines: one that reaches the right edge continues on the next line when that
    one starts at the left margin and is not a new kernel message."""
    if not lines:
        return lines
    left = min(ln.boxes[0].x for ln in lines)
    out: list[ScreenLine] = []
    for ln in lines:
        if out:
            prev = out[-1]
            last = prev.boxes[-1]
            char_w = max(4, last.w // max(1, len(prev.text.split("\n")[-1])))
            if (last.x + last.w >= width - 2 * char_w and ln.boxes[0].x <= left + char_w
                    and not _TIMESTAMP.match(ln.text)):
                out[-1] = ScreenLine(prev.text + ln.text, prev.boxes + ln.boxes,
                                     min(prev.confidence, ln.confidence))
                continue
        out.append(ln)
    return out


def _prompt(lines: list[ScreenLine]) -> str | None:
    """What the last non-empty line is waiting for: a login or a shell prompt."""
    for ln in reversed(lines):
        text = ln.text.rstrip()
        if not text:
            continue
        if _LOGIN.search(text) and len(text) < 80:
            return "login"
        return None
    return None


# -------------------------------------------------------------------------------------------
# the pipeline's entry point


def analyse_screenshot(analyzer, data: bytes, os_name: str | None, artifacts: list[Artifact]
                       ) -> tuple[ScreenResult | None, list[Finding], list[Artifact]]:
    """Read the screenshot and run the screen rules over it; a bad image becomes an unavailable
    "screenshot" artifact with the reason, never an exception."""
    from ..match import collect

    try:
        result = read_screen(data)
    except UnreadableImage as exc:
        detail = {"analysed": False, "unreadable": True}
        if exc.format:
            detail["format"] = exc.format
        if exc.size:
            detail["width"], detail["height"] = exc.size
        return None, [], _update(artifacts, data, False, f"unreadable screenshot: {exc.reason}",
                                 detail)
    except Exception as exc:  # noqa: BLE001 - a reader bug must not lose the console verdict
        return None, [], _update(artifacts, data, False,
                                 f"the screenshot could not be read ({type(exc).__name__}: "
                                 f"{str(exc)[:120]})", {"analysed": False})
    texts = result.rule_lines()
    lines = [Line(i + 1, t) for i, t in enumerate(texts)]
    boxes = {i: ln.boxes for i, ln in enumerate(result.lines) if ln.boxes}
    face = result.features.get("sad_face")
    if face:
        for i, t in enumerate(texts):
            if t.startswith("@screen sad-face"):
                boxes[i] = (Box(*face),)
    cpack = analyzer.compiled("screen", os_name)
    hits = cpack.scan(texts)
    findings = collect(cpack, lines, range(len(lines)), hits, boot=-1, source="screen",
                       boxes=boxes)
    findings = _drop_repeats(findings, result)
    detail = {"analysed": True, "format": result.format, "width": result.width,
              "height": result.height, "reader": result.reader}
    if result.notes:
        detail["notes"] = list(result.notes)
    return result, findings, _update(artifacts, data, True, None, detail)


def _drop_repeats(findings: list[Finding], result: ScreenResult) -> list[Finding]:
    """A rule that matched the last text line also matches its `@screen last-line:` repeat:
    keep the finding on the text line (it has the boxes)."""
    texts = result.rule_lines()
    marker = next((i + 1 for i, t in enumerate(texts) if t.startswith("@screen last-line: ")),
                  None)
    if marker is None:
        return findings
    last = max((i + 1 for i, ln in enumerate(result.lines) if ln.text.strip()), default=None)
    on_last = {f.rule_id for f in findings if f.line == last}
    return [f for f in findings if not (f.line == marker and f.rule_id in on_last)]


def _update(artifacts: list[Artifact], data: bytes, ok: bool, reason: str | None,
            detail: dict) -> list[Artifact]:
    out, seen = [], False
    for a in artifacts:
        if a.name == "screenshot":
            seen = True
            a = replace(a, available=ok, reason=reason, bytes=a.bytes or len(data),
                        detail={**a.detail, **detail})
        out.append(a)
    if not seen:
        out.append(Artifact("screenshot", ok, len(data), reason, None, detail))
    return out


# -------------------------------------------------------------------------------------------
# --ocr-debug


def write_ocr_debug(data: bytes, out_dir: Path) -> list[Path]:
    """Write what the reader saw and read into out_dir: screen.png (decoded), preprocessed.png
    (tesseract's input), boxes.png (line boxes over the screen), ocr.txt (text and markers),
    ocr.json (the ScreenResult and timings). Returns the written paths."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        result = read_screen(data)
    except UnreadableImage as exc:
        p = out_dir / "error.txt"
        p.write_text(f"unreadable screenshot: {exc.reason}\n", encoding="utf-8")
        return [p]
    from PIL import Image, ImageDraw

    from . import image, ocr

    _, rgb = image.decode(data)
    base = Image.fromarray(rgb, "RGB")
    p = out_dir / "screen.png"
    base.save(p)
    written.append(p)
    pre, _scale, _inv = ocr.preprocess(rgb)
    p = out_dir / "preprocessed.png"
    Image.fromarray(pre).save(p)
    written.append(p)
    drawn = base.copy()
    draw = ImageDraw.Draw(drawn)
    for ln in result.lines:
        colour = (255, 0, 0) if ln.confidence < 0.8 else (0, 255, 0)
        for b in ln.boxes:
            draw.rectangle([b.x, b.y, b.x + b.w - 1, b.y + b.h - 1], outline=colour)
    face = result.features.get("sad_face")
    if face:
        x, y, w, h = face
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(255, 255, 0), width=2)
    p = out_dir / "boxes.png"
    drawn.save(p)
    written.append(p)
    p = out_dir / "ocr.txt"
    p.write_text("\n".join(result.rule_lines()) + "\n", encoding="utf-8")
    written.append(p)
    p = out_dir / "ocr.json"
    doc = result.to_json()
    doc["seconds"] = round(result.seconds, 4)
    doc["markers"] = list(result.markers)
    p.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written.append(p)
    return written
