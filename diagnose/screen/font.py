"""The classic VGA 8x16 bitmap font: where it comes from and how it becomes glyph templates.

A font table is 256 glyphs of 16 bytes each (one byte a pixel row, the most significant bit is
the leftmost pixel), indexed by code page 437 character code. Two variants of the classic VGA
font are drawn by the consoles we read, and they differ in 42 glyphs (0, M, f, v, x, | ...):

- `vga8x16`: SeaBIOS's VGA BIOS font, which QEMU's VGA text mode draws (the BIOS loads it into
  the card; Linux's vgacon keeps it). Source: the VGA option ROM
  (`/usr/share/seabios/vgabios-stdvga.bin`).
- `linux8x16`: the Linux kernel's built-in `font_vga_8x16`, which the framebuffer console
  (fbcon) draws. Source: a kernel image (`/boot/vmlinuz-*`), decompressed.

Both are found by `find_font_table` from the table's structure alone (blank glyphs 0x00 and 0x20,
the block glyphs 0xDB, 0xDD, 0xDE, distinct letters and digits), so no glyph data needs to be known
in advance. `scripts/extract_vga_font.py` writes them to `fonts/` in this package (see the README
there for provenance and licences); when a bundled file is missing, the font is extracted from the
machine's own ROM or kernel at run time, and when that fails too the font is simply not used.

QEMU's VGA text mode draws cells 9 pixels wide: the 9th column is the background, except for the
line-drawing range 0xC0-0xDF where it repeats the 8th column. fbcon draws glyphs 8 pixels wide.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

GLYPHS = 256
HEIGHT = 16
TABLE_BYTES = GLYPHS * HEIGHT
_CHECKOUT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Where extracted font tables are kept (the fonts are read from this machine, never shipped:
    see fonts/README.md)."""
    from ..resources import cache_root

    root = cache_root()
    if root is None:  # caching turned off: a private folder for this process
        import tempfile

        root = Path(tempfile.gettempdir()) / f"diagnose-{os.getpid()}"
    return root / "fonts"


ROM_PATHS = (
    Path("/usr/share/seabios/vgabios-stdvga.bin"),
    Path("/usr/share/seabios/vgabios.bin"),
    Path("/usr/share/qemu/vgabios-stdvga.bin"),
)
LINE_GRAPHICS = range(0xC0, 0xE0)  # the 9th column repeats the 8th for these codes

# CP437 glyphs for the control range, as the screen shows them (Python's cp437 codec maps these
# codes to control characters instead).
_CP437_LOW = ("\u0000☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼")


def glyph_char(code: int) -> str:
    """The Unicode character a glyph index stands for (code page 437)."""
    if code == 0 or code == 0x20 or code == 0xFF:
        return " "
    if code < 0x20:
        return _CP437_LOW[code]
    if code == 0x7F:
        return "⌂"
    return bytes([code]).decode("cp437")


def _is_font_table(blob: bytes, off: int) -> bool:
    def glyph(c: int) -> bytes:
        return blob[off + c * HEIGHT: off + (c + 1) * HEIGHT]

    if off < 0 or off + TABLE_BYTES > len(blob):
        return False
    if glyph(0x00) != bytes(HEIGHT) or glyph(0x20) != bytes(HEIGHT):
        return False
    if glyph(0xDB) != b"\xff" * HEIGHT or glyph(0xDD) != b"\xf0" * HEIGHT:
        return False
    if glyph(0xDE) != b"\x0f" * HEIGHT:
        return False
    # every letter and digit has ink, and they are all different
    alnum = [glyph(c) for c in list(range(0x30, 0x3A)) + list(range(0x41, 0x5B))
             + list(range(0x61, 0x7B))]
    return all(any(g) for g in alnum) and len(set(alnum)) == len(alnum)


def find_font_table(blob: bytes) -> bytes | None:
    """The 8x16 font table inside a VGA BIOS image, located by its structure; None if absent."""
    needle = b"\xff" * HEIGHT
    pos = blob.find(needle)
    while pos != -1:
        off = pos - 0xDB * HEIGHT
        if _is_font_table(blob, off):
            return blob[off:off + TABLE_BYTES]
        pos = blob.find(needle, pos + 1)
    return None


def load_rom_font(paths: tuple[Path, ...] = ROM_PATHS) -> tuple[bytes, Path] | None:
    for p in paths:
        try:
            table = find_font_table(p.read_bytes())
        except OSError:
            continue
        if table is not None:
            return table, p
    return None


KERNEL_GLOBS = ("/boot/vmlinuz-*", "/boot/vmlinux-*",
                str(_CHECKOUT / "lab" / "work" / "kernels" / "*" / "root" / "boot" / "vmlinuz-*"))
_COMPRESSED = (  # magic bytes of the payloads a bzImage may carry, with stdlib decoders
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
)


def _decompress_all(kind: str, blob: bytes) -> bytes:
    import bz2
    import lzma
    import zlib

    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
    if kind == "lzma":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(blob)
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
    return bz2.BZ2Decompressor().decompress(blob)


def find_kernel_font(image: bytes) -> bytes | None:
    """The fbcon 8x16 font inside a kernel image: plain vmlinux, or a bzImage whose payload is
    xz, gzip, bzip2 or lzma (zstd and lz4 payloads are not supported: no stdlib decoder)."""
    table = find_font_table(image)
    if table is not None:
        return table
    for magic, kind in _COMPRESSED:
        pos = image.find(magic)
        tries = 0
        while pos != -1 and tries < 8:
            tries += 1
            try:
                table = find_font_table(_decompress_all(kind, image[pos:]))
            except Exception:  # noqa: BLE001 - not a compressed stream after all
                table = None
            if table is not None:
                return table
            pos = image.find(magic, pos + 1)
    return None


def load_kernel_font(paths: list[Path] | None = None) -> tuple[bytes, Path] | None:
    import glob

    if paths is None:
        paths = [Path(p) for g in KERNEL_GLOBS for p in sorted(glob.glob(g), reverse=True)]
    for p in paths:
        try:
            table = find_kernel_font(p.read_bytes())
        except OSError:
            continue
        if table is not None:
            return table, p
    return None


def _cached(name: str) -> bytes | None:
    try:
        data = (cache_dir() / f"{name}.bin").read_bytes()
    except OSError:
        return None
    return data if len(data) == TABLE_BYTES else None


def _remember(name: str, table: bytes) -> None:
    try:
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{name}.tmp"
        tmp.write_bytes(table)
        tmp.replace(d / f"{name}.bin")
    except OSError:
        pass


@lru_cache(maxsize=1)
def font_tables() -> tuple[tuple[str, bytes], ...]:
    """The font tables available here: from the cache, else extracted from this machine's SeaBIOS
    ROM and kernel image (and then cached)."""
    out = []
    vga = _cached("vga8x16")
    if vga is None:
        found = load_rom_font()
        vga = found[0] if found else None
        if vga is not None:
            _remember("vga8x16", vga)
    if vga is not None:
        out.append(("vga8x16", vga))
    linux = _cached("linux8x16")
    if linux is None:
        found = load_kernel_font()
        linux = found[0] if found else None
        if linux is not None:
            _remember("linux8x16", linux)
    if linux is not None and linux != vga:
        out.append(("linux8x16", linux))
    return tuple(out)


def prepare(kernel: Path | None = None) -> list[str]:
    """Extract the fonts into the cache now (the set-up script calls this); returns notes."""
    notes = []
    rom = load_rom_font()
    if rom:
        _remember("vga8x16", rom[0])
        notes.append(f"vga8x16 from {rom[1]}")
    else:
        notes.append("no SeaBIOS VGA ROM found (apt-get install seabios): text-mode screens "
                     "will be read with tesseract")
    k = load_kernel_font([kernel] if kernel else None)
    if k:
        _remember("linux8x16", k[0])
        notes.append(f"linux8x16 from {k[1]}")
    else:
        notes.append("no kernel image with a console font found: framebuffer screens will be "
                     "read with tesseract")
    font_tables.cache_clear()
    return notes


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m diagnose.screen.font",
                                 description="extract the console fonts from this machine")
    ap.add_argument("--kernel", type=Path, help="a kernel image (vmlinuz) to read the fbcon "
                    "font from (default: /boot/vmlinuz-*)")
    args = ap.parse_args(argv)
    for note in prepare(args.kernel):
        print(f"fonts: {note}")
    return 0


def font_names() -> tuple[str, ...]:
    return tuple(name for name, _ in font_tables())


@lru_cache(maxsize=4)
def glyph_masks(width: int):
    """Boolean masks (256 * fonts, 16, width) for cells `width` (8 or 9) pixels wide; glyph i
    stands for code i % 256."""
    import numpy as np

    tables = font_tables()
    if not tables:
        return np.zeros((0, HEIGHT, width), dtype=bool)
    raw = np.frombuffer(b"".join(t for _, t in tables), dtype=np.uint8)
    raw = raw.reshape(len(tables) * GLYPHS, HEIGHT)
    bits = np.unpackbits(raw[:, :, None], axis=2).astype(bool)  # (n, 16, 8)
    if width == 8:
        return bits
    out = np.zeros((bits.shape[0], HEIGHT, width), dtype=bool)
    out[:, :, :8] = bits
    for base in range(0, bits.shape[0], GLYPHS):
        for c in LINE_GRAPHICS:
            out[base + c, :, 8:] = bits[base + c, :, 7:8]
    return out


@lru_cache(maxsize=4)
def canonical_codes(width: int) -> tuple[int, ...]:
    """For each glyph of `glyph_masks`, the code to report. Several codes drawing the same bitmap
    (0x00, 0x20, 0xFF are all blank) report the printable one."""
    masks = glyph_masks(width)
    n = masks.shape[0]
    first: dict[bytes, int] = {}
    order = [i for i in range(n) if 0x20 <= i % GLYPHS < 0x7F]
    order += [i for i in range(n) if not 0x20 <= i % GLYPHS < 0x7F]
    for i in order:
        first.setdefault(masks[i].tobytes(), i % GLYPHS)
    return tuple(first[masks[i].tobytes()] for i in range(n))


if __name__ == "__main__":
    raise SystemExit(_main())
