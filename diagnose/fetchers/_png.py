"""Just enough PNG and PPM for hypervisor screenshots, with the standard library only.

QEMU's ``screendump`` writes binary PPM (P6) everywhere and PNG since 7.1; libvirt hands on
whichever QEMU made. QEMU 7.1.0 to 7.2.2 and 8.0.0 wrote PNG pixels with red and blue swapped
(fixed upstream in 8.1.0, backported to 7.2.3 and 8.0.1). This module turns a PPM into a PNG
and can swap the two channels of a PNG that came from one of those versions.

The decoder reads what QEMU and libvirt produce (8-bit grey, RGB or RGBA, not interlaced); it
refuses anything else with ``ValueError``. Sizes are checked before anything large is allocated,
because the bytes may come from a guest-controlled display of any size.
"""

from __future__ import annotations

import struct
import zlib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 8192 * 8192  # larger screens are refused: 256 MiB of RGBA is already absurd

# PNG colour type -> channels, for the 8-bit types we read and write
_CHANNELS = {0: 1, 2: 3, 6: 4}
_COLOUR_TYPE = {v: k for k, v in _CHANNELS.items()}

# QEMU versions whose PNG screendump swaps red and blue: (major, minor, first fixed micro)
_PNG_BGR_VERSIONS = {(7, 1): None, (7, 2): 3, (8, 0): 1}


def png_channels_swapped(major: int, minor: int, micro: int) -> bool:
    """True when QEMU ``major.minor.micro`` writes PNG screendumps with red and blue swapped."""
    if (major, minor) not in _PNG_BGR_VERSIONS:
        return False
    fixed_at = _PNG_BGR_VERSIONS[(major, minor)]
    return fixed_at is None or micro < fixed_at


# --------------------------------------------------------------------------------------------
# Writing


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def encode_png(width: int, height: int, pixels: bytes, channels: int = 3, level: int = 6) -> bytes:
    """An 8-bit PNG from tightly packed rows (``channels`` bytes per pixel, no padding)."""
    if channels not in _COLOUR_TYPE:
        raise ValueError(f"cannot write {channels}-channel PNG")
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise ValueError(f"unusable image size {width}x{height}")
    stride = width * channels
    if len(pixels) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of pixels, got {len(pixels)}")
    view = memoryview(pixels)
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter type 0 (None): screen content compresses well enough with it
        raw += view[y * stride:(y + 1) * stride]
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return (PNG_MAGIC + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level))
            + _chunk(b"IEND", b""))


# --------------------------------------------------------------------------------------------
# PPM


def _ppm_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, maxval, offset of the pixels) of a binary P6 PPM."""
    if not data.startswith(b"P6"):
        raise ValueError("not a binary PPM (P6)")
    values: list[int] = []
    pos = 2
    while len(values) < 3:
        # whitespace and '#' comments may separate the header fields
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            end = data.find(b"\n", pos)
            if end < 0:
                raise ValueError("truncated PPM header")
            pos = end + 1
            continue
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit():
            pos += 1
        if start == pos or pos - start > 9:
            raise ValueError("malformed PPM header")
        values.append(int(data[start:pos]))
    if pos >= len(data) or not data[pos:pos + 1].isspace():
        raise ValueError("malformed PPM header")
    width, height, maxval = values
    if not 0 < maxval < 65536:
        raise ValueError(f"PPM maxval {maxval} out of range")
    return width, height, maxval, pos + 1


def ppm_to_png(data: bytes) -> bytes:
    """Convert a binary PPM (as QEMU's screendump writes it) to an RGB PNG."""
    width, height, maxval, offset = _ppm_header(data)
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise ValueError(f"unusable PPM size {width}x{height}")
    sample = 1 if maxval < 256 else 2
    need = width * height * 3 * sample
    body = data[offset:offset + need]
    if len(body) < need:
        raise ValueError(f"truncated PPM: {len(body)} of {need} pixel bytes")
    if sample == 2:
        body = body[0::2]  # big-endian 16-bit samples: keep the high byte
        maxval >>= 8
    if maxval != 255:
        table = bytes(min(255, (v * 255 + maxval // 2) // max(maxval, 1)) for v in range(256))
        body = body.translate(table)
    return encode_png(width, height, bytes(body), 3)


# --------------------------------------------------------------------------------------------
# Reading


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytearray:
    out = bytearray(height * stride)
    prev = bytearray(stride)
    pos = 0
    for y in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:  # Up
            line = bytearray((x + p) & 0xFF for x, p in zip(line, prev, strict=True))
        elif ftype == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:  # Paeth
            for i in range(stride):
                if i >= bpp:
                    line[i] = (line[i] + _paeth(line[i - bpp], prev[i], prev[i - bpp])) & 0xFF
                else:
                    line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype != 0:
            raise ValueError(f"bad PNG filter type {ftype} in row {y}")
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return out


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, packed pixels) of an 8-bit grey/RGB/RGBA PNG, not interlaced."""
    if not data.startswith(PNG_MAGIC):
        raise ValueError("not a PNG")
    pos = len(PNG_MAGIC)
    header = None
    idat = bytearray()
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ValueError("truncated PNG chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, ctype, _comp, _filter, interlace = header
    if depth != 8 or ctype not in _CHANNELS or interlace != 0:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {ctype}, "
                         f"interlace {interlace})")
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise ValueError(f"unusable PNG size {width}x{height}")
    channels = _CHANNELS[ctype]
    stride = width * channels
    expected = (stride + 1) * height
    inflater = zlib.decompressobj()
    raw = inflater.decompress(bytes(idat), expected)
    if len(raw) < expected:
        raise ValueError("truncated PNG image data")
    return width, height, channels, bytes(_unfilter(raw, height, stride, channels))


def swap_red_blue(pixels: bytes, channels: int) -> bytes:
    """Exchange the first and third channel of packed RGB/RGBA pixels."""
    if channels < 3:
        return pixels
    out = bytearray(pixels)
    out[0::channels] = pixels[2::channels]
    out[2::channels] = pixels[0::channels]
    return bytes(out)


def png_swap_red_blue(data: bytes) -> bytes:
    """The same PNG with red and blue exchanged (re-encoded; grey images come back as they are)."""
    width, height, channels, pixels = decode_png(data)
    if channels < 3:
        return data
    return encode_png(width, height, swap_red_blue(pixels, channels), channels)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk, or None when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height
