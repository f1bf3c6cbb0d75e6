"""OCR character accuracy and time per image: tesseract (defaults), tesseract (tuned) and the
console-font reader, on the lab's real QEMU screenshots.

    python bench/ocr_accuracy.py [--dirs DIR ...] [--no-tesseract] [--jpeg 90,75] [--json OUT]

Ground truth:
- VGA text mode (`*__text` runs with a non-empty screen.txt): the VGA text buffer (vga.bin,
  char/attribute pairs at 0xB8000) captured by the lab while the guest was paused for the
  screenshot, decoded with code page 437, one row a line (control codes shown as spaces, as in
  screen.txt).
- Framebuffer console (`*__fb`): no text buffer exists, so each line the font reader returns is
  checked against the serial log (the kernel writes the same messages to both consoles): the
  "verified" column is the share of non-empty read lines found verbatim in serial.log.

Accuracy is 1 - (edit distance / truth length) on the screen text with runs of spaces collapsed
and empty lines dropped (tesseract does not keep column positions). "cells" is the share of the
80x25 cells the font reader got exactly right (blank cells included). --jpeg re-encodes each
text-mode screenshot as JPEG at the given qualities (ECS returns JPEG screenshots) and reads it
again with the font reader.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diagnose.screen import font, grid, image, ocr  # noqa: E402

DEFAULT_DIRS = [ROOT / "tests" / "fixtures" / "lab", ROOT / "lab" / "out"]


def levenshtein(a: str, b: str) -> int:
    """Edit distance, one numpy row per character of `a`."""
    import numpy as np

    if not a:
        return len(b)
    if not b:
        return len(a)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    idx = np.arange(len(b) + 1)
    prev = idx.copy()
    for ch in a:
        cost = (bb != ord(ch)).astype(np.int64)
        tmp = np.empty_like(prev)
        tmp[0] = prev[0] + 1
        tmp[1:] = np.minimum(prev[1:] + 1, prev[:-1] + cost)
        prev = np.minimum.accumulate(tmp - idx) + idx
    return int(prev[-1])


def normalise(text: str) -> str:
    lines = [re.sub(r"\s+", " ", ln).strip() for ln in text.splitlines()]
    return "\n".join(ln for ln in lines if ln)


def accuracy(got: str, truth: str) -> float:
    g, t = normalise(got), normalise(truth)
    if not t:
        return 1.0 if not g else 0.0
    return max(0.0, 1.0 - levenshtein(g, t) / len(t))


def vga_truth(vga: bytes, cols: int = 80, rows: int = 25) -> list[str]:
    out = []
    for r in range(rows):
        cells = vga[r * cols * 2:(r + 1) * cols * 2:2]
        out.append("".join(" " if c < 0x20 else font.glyph_char(c) for c in cells).rstrip())
    return out


def font_rows(gr) -> list[str]:
    return [gr.row_text(r).replace("\ufffd", "?") for r in range(gr.geometry.rows)]


def timed(fn, *args, repeat: int = 1):
    best, out = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return out, best


def jpeg_of(rgb, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def runs(dirs: list[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.glob("*/screen.png")):
            seen.setdefault(p.parent.name, p.parent)
    return [seen[k] for k in sorted(seen)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dirs", nargs="*", type=Path, default=DEFAULT_DIRS)
    ap.add_argument("--no-tesseract", action="store_true")
    ap.add_argument("--jpeg", default="90,75", help="JPEG qualities to re-test ('' for none)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    qualities = [int(q) for q in args.jpeg.split(",") if q.strip()]
    use_tess = not args.no_tesseract and ocr.available()
    rows = []
    for d in runs(args.dirs):
        try:
            data = (d / "screen.png").read_bytes()
        except OSError:  # the lab is rewriting this run right now
            continue
        (head, rgb), t_decode = timed(image.decode, data)
        gr, t_font = timed(grid.read_grid, rgb, repeat=3)
        row = {"run": d.name, "size": f"{head.width}x{head.height}",
               "decode_ms": round(t_decode * 1000, 1), "font_ms": round(t_font * 1000, 1),
               "font_ok": bool(gr is not None and gr.accepted)}
        vga = d / "vga.bin"
        txt = d / "screen.txt"
        truth = None
        if vga.is_file() and txt.is_file() and txt.read_text().strip():
            truth_rows = vga_truth(vga.read_bytes())
            truth = "\n".join(truth_rows)
            if gr is not None and gr.geometry.cols == 80 and gr.geometry.rows == 25:
                got_rows = font_rows(gr)
                cells = sum(a == b for tr, gt in zip(truth_rows, got_rows, strict=True)
                            for a, b in zip(tr.ljust(80), gt.ljust(80), strict=True))
                row["font_cells"] = cells / 2000
                row["font_acc"] = accuracy("\n".join(got_rows), truth)
            else:
                row["font_cells"] = row["font_acc"] = 0.0
            for q in qualities:
                _, rgb_q = image.decode(jpeg_of(rgb, q))
                gq, _ = timed(grid.read_grid, rgb_q)
                ok = gq is not None and gq.accepted
                row[f"jpeg{q}_acc"] = accuracy("\n".join(font_rows(gq)), truth) if ok else 0.0
        elif gr is not None and gr.accepted and (d / "serial.log").is_file():
            serial = (d / "serial.log").read_bytes().decode("utf-8", "replace").replace("\r", "")
            lines = [ln.text.strip() for ln in grid.logical_lines(gr) if ln.text.strip()]
            found = sum(1 for ln in lines if ln in serial)
            row["verified"] = found / len(lines) if lines else 0.0
        if use_tess and truth is not None:
            res, t_def = timed(lambda x: ocr.read(x, tuned=False), rgb)  # tesseract's defaults
            row["tess_default_acc"] = accuracy("\n".join(ln.text for ln in res.lines), truth)
            row["tess_default_ms"] = round(t_def * 1000)
            res, t_tuned = timed(ocr.read, rgb)
            row["tess_tuned_acc"] = accuracy("\n".join(ln.text for ln in res.lines), truth)
            row["tess_tuned_ms"] = round(t_tuned * 1000)
        rows.append(row)
        print(_fmt(row, qualities), flush=True)
    _summary(rows, qualities)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def _pct(v) -> str:
    return "     -" if v is None else f"{v * 100:6.2f}"


def _fmt(r: dict, qualities: list[int]) -> str:
    s = (f"{r['run']:38} {r['size']:>9} font {r['font_ms']:6.1f} ms "
         f"acc {_pct(r.get('font_acc'))} cells {_pct(r.get('font_cells'))}")
    for q in qualities:
        s += f" jpeg{q} {_pct(r.get(f'jpeg{q}_acc'))}"
    if "verified" in r:
        s += f" verified {_pct(r['verified'])}"
    if "tess_default_acc" in r:
        s += (f" | tess default {_pct(r['tess_default_acc'])} {r['tess_default_ms']:5d} ms"
              f" tuned {_pct(r['tess_tuned_acc'])} {r['tess_tuned_ms']:5d} ms")
    return s


def _summary(rows: list[dict], qualities: list[int]) -> None:
    text = [r for r in rows if "font_acc" in r]
    print()
    print(f"screens: {len(rows)} ({len(text)} VGA text mode with a text buffer, "
          f"{sum('verified' in r for r in rows)} framebuffer checked against serial.log)")

    def mean(key, rs):
        vals = [r[key] for r in rs if key in r]
        return statistics.fmean(vals) if vals else None

    print(f"console-font reader, text mode: accuracy {_pct(mean('font_acc', text))} %, "
          f"cells {_pct(mean('font_cells', text))} %, median "
          f"{statistics.median(r['font_ms'] for r in text):.1f} ms" if text else "")
    for q in qualities:
        print(f"console-font reader, JPEG q{q}: accuracy {_pct(mean(f'jpeg{q}_acc', text))} %")
    fb = [r for r in rows if "verified" in r]
    if fb:
        print(f"console-font reader, framebuffer: lines verified in serial.log "
              f"{_pct(mean('verified', fb))} %, median "
              f"{statistics.median(r['font_ms'] for r in fb):.1f} ms")
    tess = [r for r in text if "tess_default_acc" in r]
    if tess:
        fm = statistics.median(r["font_ms"] for r in tess)
        dm = statistics.median(r["tess_default_ms"] for r in tess)
        tm = statistics.median(r["tess_tuned_ms"] for r in tess)
        print(f"tesseract default: accuracy {_pct(mean('tess_default_acc', tess))} %, median "
              f"{dm:.0f} ms ({dm / fm:.0f}x the font reader)")
        print(f"tesseract tuned:   accuracy {_pct(mean('tess_tuned_acc', tess))} %, median "
              f"{tm:.0f} ms ({tm / fm:.0f}x the font reader)")


if __name__ == "__main__":
    raise SystemExit(main())
