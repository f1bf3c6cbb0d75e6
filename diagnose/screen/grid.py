"""The console-font reader: a text console is a grid of cells, each drawn from one bitmap font.

VGA text mode (QEMU draws it 720x400: 80x25 cells of 9x16 pixels) and the Linux framebuffer
console (fbcon, e.g. 1024x768: 128x48 cells of 8x16) both draw every character from the classic
VGA 8x16 font (the VGA BIOS's variant and the kernel's differ in 42 glyphs: font.py loads both)
on a fixed grid starting at the top-left corner. So a screenshot of either can be read back cell
by cell:

1. Exact path (lossless PNG): a cell holds at most two colours. The pixels that differ from the
   cell's background form a bitmap that is looked up in a table of the 256 glyph bitmaps. A
   reverse-video cell is tried inverted; a cell under the underline cursor (two full rows near
   the bottom) is tried without those rows.
2. Tolerant path (JPEG, colour noise): each cell is thresholded half-way between its darkest and
   brightest luminance and compared with every glyph (Jaccard similarity of the ink pixels). The
   similarity is the cell's confidence; a poor cell is reported as unknown (U+FFFD in the
   text), never guessed.

A candidate grid (cell width 9 or 8, scale 1 or 2, from the top-left corner) is accepted only
when nearly all the cells that hold ink read back confidently; otherwise the caller falls back
to tesseract (Windows screens, GUIs, photos, rescaled images, other fonts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import font

MIN_CONF = 0.72  # a cell below this Jaccard similarity is unknown
ACCEPT_SHARE = 0.92  # share of inked cells read confidently for the grid to be accepted
ACCEPT_MEAN = 0.85
MIN_INKED = 3
FLAT = 40  # luminance spread below which a (lossy) cell is blank
UNKNOWN = -1
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]|^<\d>")


@dataclass(frozen=True)
class Geometry:
    cell_w: int  # font cell width before scaling (8 or 9)
    cell_h: int
    scale: int
    x0: int
    y0: int
    cols: int
    rows: int

    @property
    def pitch_x(self) -> int:
        return self.cell_w * self.scale

    @property
    def pitch_y(self) -> int:
        return self.cell_h * self.scale

    def label(self) -> str:
        return f"{self.cols}x{self.rows} cells of {self.cell_w}x{self.cell_h}" + (
            f" x{self.scale}" if self.scale > 1 else "")


@dataclass
class GridRead:
    geometry: Geometry
    codes: object  # np.ndarray (rows, cols) int16: glyph code, UNKNOWN for a poor cell
    conf: object  # np.ndarray (rows, cols) float32 in [0, 1]
    inked: object  # np.ndarray (rows, cols) bool: the cell is not blank
    exact: bool  # every inked cell matched a glyph bitmap exactly
    cursor: tuple[int, int] | None
    share: float  # share of inked cells read confidently
    mean_conf: float

    @property
    def accepted(self) -> bool:
        n = int(self.inked.sum())
        return n >= MIN_INKED and self.share >= ACCEPT_SHARE and self.mean_conf >= ACCEPT_MEAN

    def row_text(self, r: int) -> str:
        chars = [("\ufffd" if c == UNKNOWN else font.glyph_char(int(c))) for c in self.codes[r]]
        return "".join(chars).rstrip()

    def row_full(self, r: int) -> bool:
        """The row's last cell holds a character: the line may continue on the next row."""
        return bool(self.inked[r, -1])


# -------------------------------------------------------------------------------------------


CURSOR_BANDS = ((13, 15), (14, 16))  # underline cursor rows: VGA text mode, fbcon


@dataclass(frozen=True)
class _Tables:
    width: int
    exact: dict  # packed full bitmap -> code
    banded: tuple  # per cursor band: packed bitmap without the band rows -> code (or UNKNOWN)
    flat: object  # (n, 16*width) float32, distinct glyph bitmaps
    ink: object  # (n,) float32
    codes: object  # (n,) int16


_TABLES: dict[int, _Tables] = {}


def _tables(width: int) -> _Tables:
    if width in _TABLES:
        return _TABLES[width]
    import numpy as np

    masks = font.glyph_masks(width)  # (n, 16, width)
    canon = font.canonical_codes(width)
    n = masks.shape[0]
    flat = masks.reshape(n, -1)
    packed = np.packbits(flat, axis=1)
    exact: dict[bytes, int] = {}
    keep: list[int] = []
    for i in range(n):
        key = packed[i].tobytes()
        if key not in exact:
            exact[key] = canon[i]
            keep.append(i)
    banded = []
    for a, b in CURSOR_BANDS:
        rows = [r for r in range(font.HEIGHT) if not a <= r < b]
        bp = np.packbits(masks[:, rows, :].reshape(n, -1), axis=1)
        table: dict[bytes, int] = {}
        for i in range(n):
            key = bp[i].tobytes()
            old = table.get(key)
            if old is None:
                table[key] = canon[i]
            elif old != canon[i] and 0x20 not in (old, canon[i]):
                table[key] = UNKNOWN  # ambiguous without the band rows
            elif canon[i] == 0x20:
                table[key] = 0x20  # '_' or blank under the cursor: the cursor is usually on a blank
        banded.append(table)
    kf = flat[keep]
    t = _Tables(width, exact, tuple(banded), kf.astype(np.float32),
                kf.sum(axis=1).astype(np.float32), np.asarray([canon[i] for i in keep],
                                                              dtype=np.int16))
    _TABLES[width] = t
    return t


def _candidates(w: int, h: int) -> list[Geometry]:
    out = []
    for scale in (1, 2):
        for cw in (9, 8):
            pw, ph = cw * scale, 16 * scale
            cols, rows = w // pw, h // ph
            if cols < 20 or rows < 5:
                continue
            out.append(Geometry(cw, 16, scale, 0, 0, cols, rows))
    # a grid that tiles the image exactly first (720 = 80 x 9, 1024 = 128 x 8), then 9 wide
    out.sort(key=lambda g: (w % g.pitch_x + h % g.pitch_y, g.scale, -g.cell_w))
    return out


def _cells(arr, g: Geometry):
    """(N, 16, cell_w) view of the grid area, scale removed by sampling one pixel per block."""
    s = g.scale
    area = arr[g.y0:g.y0 + g.rows * g.pitch_y:s, g.x0:g.x0 + g.cols * g.pitch_x:s]
    n = g.rows * g.cols
    return (area.reshape(g.rows, g.cell_h, g.cols, g.cell_w)
            .transpose(0, 2, 1, 3).reshape(n, g.cell_h, g.cell_w))


def read_grid(rgb, *, geometry: Geometry | None = None) -> GridRead | None:
    """Read the best console grid of an RGB image (H, W, 3 uint8); None when no candidate fits.

    Lossless images are settled by the exact path alone. For lossy ones each candidate grid is
    first judged on a sample of its cells, and only the best one is read in full. The result may
    still be refused (`accepted` False): the caller then uses tesseract.
    """
    import numpy as np

    h, w = rgb.shape[:2]
    cands = [geometry] if geometry else _candidates(w, h)
    if not cands or not font.font_tables():
        return None
    code = ((rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8)
            | rgb[..., 2].astype(np.int32))
    vals, counts = np.unique(code[::3, ::3].ravel(), return_counts=True)
    screen_bg = int(vals[counts.argmax()])
    exact: list[GridRead] = []
    for g in cands:
        if g.scale > 1 and not _replicated(code, g):
            continue
        res = _read_exact(code, g, screen_bg)
        if res.accepted and res.share >= 0.995:
            return res
        exact.append(res)
    if not exact:
        return None
    luma = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)
    if len(exact) > 1:
        scored = [(_rank(_read_tolerant(luma, r.geometry, r, sample=400)), i)
                  for i, r in enumerate(exact)]
        pick = exact[max(scored)[1]]
    else:
        pick = exact[0]
    return _read_tolerant(luma, pick.geometry, pick)


def _rank(r: GridRead) -> tuple:
    return (r.accepted, round(r.share, 3), r.mean_conf)


def _replicated(code, g: Geometry) -> bool:
    s = g.scale
    area = code[g.y0:g.y0 + g.rows * g.pitch_y, g.x0:g.x0 + g.cols * g.pitch_x]
    return bool((area[::s, ::s] == area[s - 1::s, s - 1::s]).mean() > 0.995)


def _lookup(table: dict, packed, miss: int):
    """Look every row of `packed` (n, bytes) up in `table`, one dict access per distinct row."""
    import numpy as np

    if packed.shape[0] == 0:
        return np.zeros(0, dtype=np.int16)
    rows = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    uniq, inv = np.unique(rows, return_inverse=True)
    lut = np.fromiter((table.get(u.tobytes(), miss) for u in uniq), dtype=np.int16,
                      count=len(uniq))
    return lut[inv.ravel()]


def _read_exact(code, g: Geometry, screen_bg: int) -> GridRead:
    import numpy as np

    t = _tables(g.cell_w)
    cells = _cells(code, g)
    n = cells.shape[0]
    flat = cells.reshape(n, -1)
    cmin, cmax = flat.min(axis=1), flat.max(axis=1)
    inked = cmin != cmax
    two = ((flat == cmin[:, None]) | (flat == cmax[:, None])).all(axis=1)
    n_min = (flat == cmin[:, None]).sum(axis=1)
    has_screen_bg = (flat == screen_bg).any(axis=1)
    majority = np.where(n_min * 2 >= flat.shape[1], cmin, cmax)
    bgc = np.where(has_screen_bg, screen_bg, majority)
    codes = np.full(n, 0x20, dtype=np.int16)
    conf = np.ones(n, dtype=np.float32)
    idx = np.flatnonzero(inked & two)
    miss = np.int16(-2)
    fg = flat[idx] != bgc[idx, None]
    got = _lookup(t.exact, np.packbits(fg, axis=1), miss)
    redo = got == miss
    if redo.any():
        got[redo] = _lookup(t.exact, np.packbits(~fg[redo], axis=1), miss)
    cursor = None
    fg3 = fg.reshape(-1, g.cell_h, g.cell_w)
    left = np.flatnonzero(got == miss)
    banded = np.zeros(left.size, dtype=bool)
    for a, b in CURSOR_BANDS:
        banded |= fg3[left, a:b].all(axis=(1, 2))
    left = left[banded]
    for j in left[:4] if left.size <= 4 else ():  # one cursor; many misses: a wrong grid
        c = _under_cursor(t, fg3[j])
        if c is not None:
            got[j] = c
            cursor = (int(idx[j]) // g.cols, int(idx[j]) % g.cols)
    got[got == miss] = UNKNOWN
    codes[idx] = got
    bad = inked & ~two
    codes[bad] = UNKNOWN
    conf[codes == UNKNOWN] = 0.0
    k = int(inked.sum())
    ok = int((inked & (codes != UNKNOWN)).sum())
    share = ok / k if k else 0.0
    exact_all = ok == k
    return GridRead(g, codes.reshape(g.rows, g.cols), conf.reshape(g.rows, g.cols),
                    (inked & (codes != 0x20)).reshape(g.rows, g.cols), exact_all, cursor, share,
                    float(conf[inked].mean()) if k else 0.0)


def _under_cursor(t: _Tables, cell) -> int | None:
    """The glyph under an underline cursor: the band rows are all ink, the rest matches."""
    import numpy as np

    for (a, b), table in zip(CURSOR_BANDS, t.banded, strict=True):
        if cell[a:b].all():
            rest = np.concatenate([cell[:a], cell[b:]])
            c = table.get(np.packbits(rest.ravel()).tobytes())
            if c is not None and c != UNKNOWN:
                return c
    return None


def _nearest(cells, glyphs, glyph_ink):
    """Best glyph index and its Jaccard similarity for each row of `cells` (float 0/1)."""
    import numpy as np

    inter = cells @ glyphs.T
    union = cells.sum(axis=1)[:, None] + glyph_ink[None, :] - inter
    jac = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
    best = jac.argmax(axis=1)
    return best, jac[np.arange(cells.shape[0]), best]


def _read_tolerant(luma, g: Geometry, prev: GridRead, sample: int = 0) -> GridRead:
    """Cells the exact path could not read, compared with every glyph by Jaccard similarity
    (`sample`: judge only that many of them, spread over the screen, to rank a candidate)."""
    import numpy as np

    t = _tables(g.cell_w)
    cells = _cells(luma, g)
    n = cells.shape[0]
    flat = cells.reshape(n, -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    spread = hi - lo
    codes = prev.codes.ravel().copy()
    conf = prev.conf.ravel().copy()
    todo = np.flatnonzero(codes == UNKNOWN)
    # A blank cell next to bright text picks up JPEG ringing: call a cell blank when its spread
    # is well below the screen's text contrast (the median spread of cells with ink).
    strong = spread[spread >= FLAT]
    flat_limit = max(FLAT, 0.45 * float(np.median(strong))) if strong.size else FLAT
    blank = todo[spread[todo] < flat_limit]
    codes[blank], conf[blank] = 0x20, 1.0
    todo = todo[spread[todo] >= flat_limit]
    if sample and todo.size > sample:
        todo = todo[np.linspace(0, todo.size - 1, sample).astype(np.int64)]
    cursor = prev.cursor
    if todo.size:
        sub = flat[todo]
        mid = ((lo[todo] + hi[todo]) / 2)[:, None]
        bright = sub > mid
        # ink is the minority side (glyphs cover less than half of a cell)
        ink = np.where((bright.sum(axis=1) * 2 <= sub.shape[1])[:, None], bright, ~bright)
        best, bval = _nearest(ink.astype(np.float32), t.flat, t.ink)
        codes[todo] = np.where(bval >= MIN_CONF, t.codes[best], UNKNOWN)
        conf[todo] = bval
        # an underline cursor: its band rows are (nearly) all ink; compare the other rows
        poor = np.flatnonzero(bval < MIN_CONF)
        ink3 = ink.reshape(-1, g.cell_h, g.cell_w)
        for a, b in CURSOR_BANDS:
            if not poor.size:
                break
            band = ink3[poor, a:b].mean(axis=(1, 2)) >= 0.9
            cand = poor[band]
            if not cand.size or cand.size > 4:
                continue
            keep = [r for r in range(g.cell_h) if not a <= r < b]
            masks = font.glyph_masks(g.cell_w)
            ref = masks[:, keep, :].reshape(masks.shape[0], -1).astype(np.float32)
            sub_ink = ink3[cand][:, keep, :].reshape(cand.size, -1).astype(np.float32)
            cb, cv = _nearest(sub_ink, ref, ref.sum(axis=1))
            canon = np.asarray(font.canonical_codes(g.cell_w), dtype=np.int16)
            # nothing drawn besides the cursor: a blank cell
            empty = sub_ink.sum(axis=1) == 0
            for j, i in enumerate(todo[cand]):
                if empty[j] or cv[j] >= MIN_CONF:
                    codes[i] = 0x20 if empty[j] else canon[cb[j]]
                    conf[i] = 1.0 if empty[j] else cv[j]
                    cursor = (int(i) // g.cols, int(i) % g.cols)
            poor = poor[~np.isin(poor, cand)]
    inked = (codes != 0x20) & (spread >= flat_limit)
    inked |= prev.inked.ravel() & (codes != 0x20)
    if sample:  # judge the candidate on the sampled cells and the exact ones only
        judged = np.zeros(n, dtype=bool)
        judged[todo] = True
        judged |= prev.codes.ravel() != UNKNOWN
        inked &= judged
    k = int(inked.sum())
    ok = int((inked & (codes != UNKNOWN)).sum())
    share = ok / k if k else 0.0
    return GridRead(g, codes.reshape(g.rows, g.cols), conf.reshape(g.rows, g.cols),
                    inked.reshape(g.rows, g.cols), False, cursor, share,
                    float(conf[inked].mean()) if k else 0.0)


# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridLine:
    text: str
    rows: tuple[tuple[int, int, int], ...]  # (row, first col, last col) of each piece
    conf: float


def logical_lines(gr: GridRead) -> list[GridLine]:
    """Screen rows as text lines, a row that fills the last column joined with the next one
    (the console wraps long lines at the screen edge), unless the next row starts a new kernel
    message."""
    import numpy as np

    g = gr.geometry
    out: list[GridLine] = []
    r = 0
    while r < g.rows:
        pieces = []
        texts = []
        while True:
            text = gr.row_text(r)
            texts.append(text)
            if text.strip():
                stripped = len(text) - len(text.lstrip())
                pieces.append((r, stripped, len(text) - 1))
            nxt = r + 1
            if (gr.row_full(r) and nxt < g.rows and gr.row_text(nxt)
                    and not _TIMESTAMP.match(gr.row_text(nxt))):
                r = nxt
                continue
            break
        inked_conf = [float(np.min(gr.conf[p[0]][gr.inked[p[0]]])) if gr.inked[p[0]].any()
                      else 1.0 for p in pieces]
        out.append(GridLine("".join(texts), tuple(pieces), min(inked_conf, default=1.0)))
        r += 1
    return out
