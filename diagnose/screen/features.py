"""Visual features of a screenshot, measured with numpy, handed to the rules as marker lines.

Nothing here decides a verdict. Each feature becomes part of a line such as
`@screen background=bsod-blue` or `@screen blank=black` appended to the screen text, and rules
under rules/screen/ say what it means (see rules/screen/features.toml).

- background: the dominant colour (quantised to 16 levels a channel) and its share of the pixels,
  named by hue: black, grey, white, bsod-blue (Windows 8+ blue screens and recovery screens, hue
  195-225 degrees), classic-blue (the #0000AA / #000080 blue of text-mode STOP screens), cyan,
  or colour.
- ink: the share of pixels that stand out from the background (luminance difference > 48).
- blank: black or uniform when almost no pixel stands out (a console cursor is allowed).
- sad_face: a glyph three or more text lines tall, a little wider than high, at the left of the
  upper half of a coloured screen: the ":(" of Windows 8+ blue screens.

The tesseract reader adds `headline`: the line with the largest confidently read word, when that
word is at least 6% of the screen's height (a lock screen's clock, a recovery screen's title).
Besides, `last_line_marker` repeats the last non-empty text line as `@screen last-line: <text>`,
so rules can match what the screen stopped at.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

BLANK_INK = 0.0004  # share of standing-out pixels below which a screen is blank
INK_DELTA = 48


@dataclass(frozen=True)
class Background:
    name: str
    rgb: tuple[int, int, int]
    share: float

    @property
    def hex(self) -> str:
        r, g, b = self.rgb
        return f"#{r:02x}{g:02x}{b:02x}"


def name_colour(rgb: tuple[int, int, int]) -> str:
    r, g, b = (v / 255.0 for v in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    hue = h * 360.0
    if v < 0.16:
        return "black"
    if s < 0.2:
        return "white" if v > 0.85 else "grey"
    if 225.0 <= hue <= 250.0 and s > 0.6 and v < 0.8:
        return "classic-blue"
    if 195.0 <= hue < 225.0 and s > 0.45:
        return "bsod-blue"
    if 170.0 <= hue < 195.0 and s > 0.45:
        return "cyan"
    return "colour"


def _sample(rgb, target: int = 250_000):
    h, w = rgb.shape[:2]
    step = 1
    while (h // step) * (w // step) > target:
        step += 1
    return rgb[::step, ::step], step


def background(rgb) -> Background:
    import numpy as np

    small, _ = _sample(rgb)
    px = small.reshape(-1, 3)
    q = ((px[:, 0] >> 4).astype(np.int32) << 8) | ((px[:, 1] >> 4).astype(np.int32) << 4) | (
        px[:, 2] >> 4)
    counts = np.bincount(q, minlength=4096)
    top = int(counts.argmax())
    sel = px[q == top]
    mean = tuple(int(round(float(v))) for v in sel.mean(axis=0))
    return Background(name_colour(mean), mean, float(counts[top]) / len(q))  # type: ignore[arg-type]


def ink_mask(rgb, bg: Background):
    import numpy as np

    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    r, g, b = bg.rgb
    return np.abs(luma - (r * 0.299 + g * 0.587 + b * 0.114)) > INK_DELTA


def _bands(profile, min_gap: int = 1) -> list[tuple[int, int]]:
    """Runs of non-zero entries of a 1-D profile, as (start, end) half-open."""
    out: list[tuple[int, int]] = []
    start = None
    gap = 0
    for i, v in enumerate(profile):
        if v:
            if start is None:
                start = i
            gap = 0
            end = i + 1
        elif start is not None:
            gap += 1
            if gap >= min_gap:
                out.append((start, end))
                start = None
    if start is not None:
        out.append((start, end))
    return out


def sad_face(mask) -> tuple[int, int, int, int] | None:
    """The box of a ':(' glyph, or None. `mask`: bool ink mask of the whole screen."""
    import numpy as np

    h, w = mask.shape
    rows = mask.sum(axis=1)
    bands = [(a, b) for a, b in _bands(rows > 0, min_gap=2) if b - a >= 3]
    if len(bands) < 3:
        return None
    heights = sorted(b - a for a, b in bands)
    typical = heights[len(heights) // 4]  # a text line (a QR code or logo may be taller)
    for a, b in bands:
        hgt = b - a
        if a > h * 0.6 or hgt < 2.5 * typical or hgt < 24 or hgt > h * 0.35:
            continue
        cols = np.flatnonzero(mask[a:b].any(axis=0))
        if cols.size == 0:
            continue
        runs = _bands(mask[a:b].any(axis=0), min_gap=max(3, hgt // 3))
        if not runs:
            continue
        x0, x1 = runs[0]
        if x0 > w * 0.45 or not 0.35 * hgt <= x1 - x0 <= 1.6 * hgt:
            continue
        # ':' is two separate blobs in its left part; '(' is one tall stroke on the right
        left = mask[a:b, x0:x0 + (x1 - x0) // 3].any(axis=1)
        right = mask[a:b, x0 + (x1 - x0) // 2:x1].any(axis=1)
        dots = _bands(left, min_gap=max(2, hgt // 8))
        if len(dots) != 2 or right.mean() < 0.7:
            continue
        # text lines follow below it
        if sum(1 for c, _ in bands if c > b) < 2:
            continue
        return int(x0), int(a), int(x1 - x0), int(hgt)
    return None


def measure(rgb) -> dict:
    """The visual features of one screen (JSON-ready)."""
    small, step = _sample(rgb)
    bg = background(small)
    mask = ink_mask(small, bg)
    ink = float(mask.mean())
    feats: dict = {"background": bg.name, "background_rgb": bg.hex,
                   "background_share": round(bg.share, 3), "ink": round(ink, 4)}
    if ink < BLANK_INK:
        feats["blank"] = "black" if bg.name == "black" else "uniform"
    if bg.name not in ("black", "grey", "white") and not feats.get("blank"):
        box = sad_face(mask)
        if box is not None:
            x, y, w, h = box
            feats["sad_face"] = [x * step, y * step, w * step, h * step]
    return feats


def marker_lines(feats: dict) -> list[str]:
    """The marker lines rules match (rules/screen/features.toml)."""
    out = [f"@screen background={feats['background']} {feats['background_rgb']} "
           f"share={feats['background_share']:.2f}"]
    if feats.get("blank"):
        out.append(f"@screen blank={feats['blank']}")
    if feats.get("sad_face"):
        out.append(f"@screen sad-face on background={feats['background']}")
    if feats.get("headline"):
        out.append(f"@screen headline: {feats['headline']}")
    return out


def last_line_marker(lines: list[str]) -> str | None:
    """`@screen last-line: <text>`: the last non-empty text line again, so a rule can tell what
    the screen stopped at (a boot loader message, a prompt) from the same text further up."""
    for text in reversed(lines):
        if text.strip():
            return "@screen last-line: " + text.strip()[:240]
    return None
