"""Screenshot bytes -> a checked RGB pixel array, or a plain reason why not.

The format is taken from the magic bytes, never from a file name. The image's dimensions are read
from its header and checked before anything is decoded, so a decompression bomb (a few KB that
claim 100000 x 100000 pixels) costs nothing. Every way an image can be bad ends in
`UnreadableImage(reason)`, never in another exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_SIDE = 8192
MAX_PIXELS = 40_000_000
MIN_WIDTH, MIN_HEIGHT = 32, 16  # smaller than a few characters: nothing to read
MAX_BYTES = 64 * 1024 * 1024

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# start-of-frame markers carry the dimensions (not DHT 0xC4, JPG 0xC8, DAC 0xCC)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_OTHER = (  # recognised only to say what the bytes are
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"RIFF", "RIFF/WebP"),
    (b"P6", "PPM"), (b"P3", "PPM"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"), (b"<", "text/HTML"), (b"{", "JSON"),
)


class UnreadableImage(Exception):
    """The screenshot cannot be read; `reason` says why in plain words."""

    def __init__(self, reason: str, fmt: str | None = None,
                 size: tuple[int, int] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.format = fmt
        self.size = size


@dataclass(frozen=True)
class Header:
    format: str  # "png" | "jpeg"
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


def _describe(data: bytes) -> str:
    for magic, name in _OTHER:
        if data.startswith(magic):
            return name
    return "unknown"


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 33:
        raise UnreadableImage("truncated PNG: the file ends inside its header", "png")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise UnreadableImage("corrupt PNG: the first chunk is not a valid IHDR", "png")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise UnreadableImage("corrupt JPEG: a segment does not start with a marker", "jpeg")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # no length field
        if marker == 0xD9 or marker == 0xDA:
            raise UnreadableImage("corrupt JPEG: image data starts before any frame header",
                                  "jpeg")
        if pos + 2 > n:
            break
        (seglen,) = struct.unpack(">H", data[pos:pos + 2])
        if seglen < 2:
            raise UnreadableImage("corrupt JPEG: a segment has an impossible length", "jpeg")
        if marker in _SOF:
            if pos + 7 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            return width, height
        pos += seglen
    raise UnreadableImage("truncated JPEG: the file ends before the frame header", "jpeg")


def read_header(data: bytes) -> Header:
    """Format and dimensions from the header alone; raises UnreadableImage."""
    if not data:
        raise UnreadableImage("the screenshot is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise UnreadableImage(f"the screenshot is too large ({len(data)} bytes; the limit is "
                              f"{MAX_BYTES})")
    fmt = sniff(data)
    if fmt is None:
        what = _describe(data)
        tail = f" (it looks like {what})" if what != "unknown" else ""
        raise UnreadableImage(f"not a PNG or JPEG image{tail}")
    width, height = _png_size(data) if fmt == "png" else _jpeg_size(data)
    size = (width, height)
    if width == 0 or height == 0:
        raise UnreadableImage(f"the {fmt.upper()} header gives an empty image "
                              f"({width}x{height})", fmt, size)
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise UnreadableImage(f"the {fmt.upper()} header claims {width}x{height} pixels, more "
                              f"than a screen (limit {MAX_SIDE}x{MAX_SIDE}, "
                              f"{MAX_PIXELS // 1_000_000} MP): refused without decoding",
                              fmt, size)
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise UnreadableImage(f"the image is only {width}x{height} pixels: too small to show "
                              "any text", fmt, size)
    return Header(fmt, width, height)


def decode(data: bytes):
    """(Header, RGB array (H, W, 3) uint8); raises UnreadableImage."""
    head = read_header(data)
    try:
        import io
        import warnings

        import numpy as np
        from PIL import Image

        # the header check above already refused anything over MAX_PIXELS; PIL's own bomb
        # limit (a process-wide setting) is left alone, its warning made an error here
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
            if img.size != (head.width, head.height):
                raise UnreadableImage(f"the {head.format.upper()} header and the image "
                                      "disagree on the size", head.format)
            img.load()
        if img.mode != "RGB":
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                top = float(arr.max()) or 1.0
                img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8), "L")
            img = img.convert("RGB")
        rgb = np.asarray(img, dtype=np.uint8)
    except UnreadableImage:
        raise
    except ImportError as exc:
        raise UnreadableImage(f"screenshot reading needs numpy and Pillow ({exc.name} is "
                              "missing)", head.format, (head.width, head.height)) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an unreadable image
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        kind = "truncated" if "truncated" in msg.lower() else "corrupt"
        raise UnreadableImage(f"{kind} {head.format.upper()}: the decoder stopped ({msg})",
                              head.format, (head.width, head.height)) from None
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UnreadableImage("the decoded image has no colour channels", head.format,
                              (head.width, head.height))
    return head, rgb
