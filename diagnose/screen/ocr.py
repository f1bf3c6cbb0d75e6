"""Tesseract, for screens that are not a console-font grid (Windows, GUIs, photos, rescaled).

Tesseract runs as a subprocess (`tesseract stdin stdout ... tsv`), one thread
(OMP_THREAD_LIMIT=1: its OpenMP threads only add overhead on small images), fed an uncompressed
PGM so nothing is spent on PNG encoding. The TSV output keeps every word's box, so evidence can be
drawn on the screenshot.

Preprocessing for screens (measured on the real screenshots, see bench/screens_eval.py and
bench/ocr_accuracy.py): keep the colour channels (tesseract binarises each channel and uses the
best one; a grayscale conversion loses white text on a blue screen next to dark margins, and a
global Otsu threshold loses it too); invert light-on-dark screens so the text is dark on light,
as tesseract expects; keep the screen's own size (upscaling the lab's console screenshots made
tesseract slower and worse; only a tiny crop is enlarged). Page segmentation mode 6 ("one
uniform block of text") reads console and dialog screens best. When its result is poor (few or
unsure words: a GUI screen), more passes are tried in turn until one is good, and the best kept:
mode 6 at twice the size (small icon captions); mode 3 (automatic layout); mode 3 on the
near-white pixels only (lock and sign-in screens draw white text over a photo); mode 11 (sparse
text) at half size (a lock screen's clock is too big at full size).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

TIMEOUT = 60.0
MIN_WORD_CONF = 20.0  # tesseract's per-word confidence (0-100) below which a word is dropped


class OcrUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Word:
    text: str
    x: int
    y: int
    w: int
    h: int
    conf: float


@dataclass(frozen=True)
class OcrLine:
    text: str
    words: tuple[Word, ...]

    @property
    def box(self) -> tuple[int, int, int, int]:
        x0 = min(w.x for w in self.words)
        y0 = min(w.y for w in self.words)
        x1 = max(w.x + w.w for w in self.words)
        y1 = max(w.y + w.h for w in self.words)
        return x0, y0, x1 - x0, y1 - y0

    @property
    def conf(self) -> float:
        return sum(w.conf for w in self.words) / len(self.words) / 100.0


@dataclass(frozen=True)
class OcrResult:
    lines: tuple[OcrLine, ...]
    psm: int
    scale: int
    inverted: bool
    seconds: float


def tesseract_path() -> str | None:
    return shutil.which("tesseract")


def available() -> bool:
    return tesseract_path() is not None


# -------------------------------------------------------------------------------------------
# preprocessing


def luminance(rgb):
    import numpy as np

    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.uint8)


def otsu(gray) -> int:
    import numpy as np

    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 128
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * levels)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 / total - m0) ** 2 / (w0 * w1)
    between = np.nan_to_num(between)
    return int(between.argmax())


def upscale_factor(width: int, height: int) -> int:
    """Screens are read at their own size: on the lab's console screenshots upscaling by 2 or 3
    cost 2-13 points of accuracy and doubled the time (bench/ocr_accuracy.py). Only a tiny crop
    is enlarged."""
    return 2 if max(width, height) < 500 else 1


def preprocess(rgb, *, scale: int | None = None, threshold: bool = False):
    """(image, scale, inverted) ready for tesseract: RGB (or gray with `threshold`, for the
    debug view), inverted when the screen is dark, upscaled."""
    import numpy as np

    gray = luminance(rgb)
    inverted = bool(np.median(gray[::4, ::4]) < 128)
    if scale is None:
        scale = upscale_factor(gray.shape[1], gray.shape[0])
    if threshold:
        img = 255 - gray if inverted else gray
        t = otsu(img)
        img = np.where(img > t, 255, 0).astype(np.uint8)
    else:
        img = 255 - rgb if inverted else rgb
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    return np.ascontiguousarray(img), scale, inverted


def _pnm(img) -> bytes:
    return _ppm(img) if img.ndim == 3 else _pgm(img)


def _pgm(gray) -> bytes:
    h, w = gray.shape
    return f"P5\n{w} {h}\n255\n".encode() + gray.tobytes()


def _ppm(rgb) -> bytes:
    h, w = rgb.shape[:2]
    return f"P6\n{w} {h}\n255\n".encode() + rgb.tobytes()


# -------------------------------------------------------------------------------------------
# running tesseract


def run_tsv(image: bytes, psm: int = 6, extra: tuple[str, ...] = ()) -> str:
    exe = tesseract_path()
    if exe is None:
        raise OcrUnavailable("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    cmd = [exe, "stdin", "stdout", "--psm", str(psm), "-l", "eng", *extra, "tsv"]
    try:
        proc = subprocess.run(cmd, input=image, capture_output=True, timeout=TIMEOUT, env=env,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise OcrUnavailable(f"tesseract took longer than {TIMEOUT:.0f} s") from exc
    except OSError as exc:
        raise OcrUnavailable(f"tesseract could not run: {exc.strerror}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrUnavailable(f"tesseract failed: {err[-1][:200] if err else proc.returncode}")
    return proc.stdout.decode("utf-8", "replace")


def parse_tsv(tsv: str, scale: int = 1, min_conf: float = MIN_WORD_CONF) -> list[OcrLine]:
    """Words grouped into lines (block, paragraph, line), boxes in original image pixels,
    lines ordered top to bottom."""
    groups: dict[tuple[int, int, int], list[Word]] = {}
    for row in tsv.splitlines()[1:]:
        parts = row.split("\t")
        if len(parts) < 12 or parts[0] != "5":
            continue
        text = parts[11].strip()
        try:
            conf = float(parts[10])
            left, top, width, height = (int(v) for v in parts[6:10])
            key = (int(parts[2]), int(parts[3]), int(parts[4]))
        except ValueError:
            continue
        if not text or conf < min_conf:
            continue
        groups.setdefault(key, []).append(Word(text, left // scale, top // scale,
                                               max(1, width // scale), max(1, height // scale),
                                               conf))
    lines = [OcrLine(" ".join(w.text for w in ws), tuple(ws)) for ws in groups.values() if ws]
    lines.sort(key=lambda ln: (ln.box[1], ln.box[0]))
    return lines


def read(rgb, *, psm: int | None = None, tuned: bool = True) -> OcrResult:
    """OCR an RGB screen. `tuned` False: tesseract's defaults on the raw image (for benches)."""
    import time

    t0 = time.perf_counter()
    if not tuned:
        tsv = run_tsv(_ppm(rgb), psm or 3)
        return OcrResult(tuple(parse_tsv(tsv, 1, 0.0)), psm or 3, 1, False,
                         time.perf_counter() - t0)
    img, scale, inverted = preprocess(rgb)
    first = psm or 6
    # every word of the first pass is kept: dropping unsure words loses more console text than
    # it removes noise (bench/ocr_accuracy.py); the fallback passes keep sure words only
    lines = parse_tsv(run_tsv(_pnm(img), first), scale, 0.0)
    used = first
    if psm is None and _weak(lines):
        # a sparse GUI screen. In turn, until one reads well: the same at twice the size (small
        # icon captions), automatic layout, the near-white pixels alone (text over a photo), and
        # sparse text at half size (a lock screen's clock is too big at full size)
        raw = 255 - rgb if inverted else rgb
        passes = ((6, 2, 1, lambda: _enlarge(raw, 2)), (3, 1, 1, lambda: raw),
                  (3, 1, 1, lambda: white_text(rgb)), (11, 1, 2, lambda: _shrink(raw, 2)))
        for mode, up, down, src in passes:
            if up == scale and mode == first and down == 1:
                continue  # the first pass already was this one
            alt = parse_tsv(run_tsv(_pnm(src()), mode), up)
            if down > 1:
                alt = [OcrLine(ln.text, tuple(Word(w.text, w.x * down, w.y * down, w.w * down,
                                                   w.h * down, w.conf) for w in ln.words))
                       for ln in alt]
            if _score(alt) > _score(lines):
                lines, used, scale = alt, mode, up
            if not _weak(lines):
                break
    return OcrResult(tuple(lines), used, scale, inverted, time.perf_counter() - t0)


def _enlarge(img, factor: int):
    import numpy as np

    return np.ascontiguousarray(np.repeat(np.repeat(img, factor, axis=0), factor, axis=1))


def white_text(rgb):
    """Near-white, unsaturated pixels as black on white: the clock and captions of a lock or
    sign-in screen drawn over a photo."""
    import numpy as np

    lo, hi = rgb.min(axis=2), rgb.max(axis=2)
    mask = (lo > 200) & ((hi.astype(np.int16) - lo) < 40)
    return np.where(mask, 0, 255).astype(np.uint8)


def _shrink(rgb, factor: int):
    """Downscale by an integer factor (box average)."""
    import numpy as np

    h, w = (rgb.shape[0] // factor) * factor, (rgb.shape[1] // factor) * factor
    a = rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, -1).mean(axis=(1, 3))
    return np.ascontiguousarray(a.astype(np.uint8).squeeze())


def _score(lines: list[OcrLine]) -> float:
    """Characters read with some confidence: junk from a photo scores low."""
    return sum(len(w.text) * w.conf for ln in lines for w in ln.words if w.conf >= 60)


def _weak(lines: list[OcrLine]) -> bool:
    words = [w for ln in lines for w in ln.words if w.conf >= MIN_WORD_CONF]
    if len(words) < 3:
        return True
    return sum(w.conf for w in words) / len(words) < 70.0
