"""The tiny PNG/PPM codec used for hypervisor screenshots (diagnose.fetchers._png)."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest

from diagnose.fetchers import _png


def _pixels(width: int, height: int, channels: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    # a mix of flat runs and noise, like a console screen with a few coloured cells
    out = bytearray()
    for y in range(height):
        for x in range(width):
            if (x // 5 + y // 3) % 3 == 0:
                out += bytes(rnd.randrange(256) for _ in range(channels))
            else:
                out += bytes((x * 7 + c * 40 + y) & 0xFF for c in range(channels))
    return bytes(out)


def _filtered_png(width: int, height: int, channels: int, pixels: bytes,
                  filters: list[int]) -> bytes:
    """A PNG whose rows use the given filter types (an independent encoder for the decoder)."""
    stride = width * channels
    raw = bytearray()
    prev = bytes(stride)
    for y in range(height):
        line = pixels[y * stride:(y + 1) * stride]
        ftype = filters[y % len(filters)]
        enc = bytearray()
        for i, value in enumerate(line):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            enc.append((value - pred) & 0xFF)
        raw.append(ftype)
        raw += enc
        prev = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ctype = {1: 0, 3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, ctype, 0, 0, 0)
    # split the image data over two IDAT chunks, as encoders may
    data = zlib.compress(bytes(raw))
    half = len(data) // 2
    return (_png.PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data[:half])
            + chunk(b"IDAT", data[half:]) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_decoder_handles_every_filter_type(channels):
    width, height = 23, 15
    pixels = _pixels(width, height, channels)
    png = _filtered_png(width, height, channels, pixels, [0, 1, 2, 3, 4])
    assert _png.decode_png(png) == (width, height, channels, pixels)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_encode_decode_round_trip(channels):
    width, height = 31, 9
    pixels = _pixels(width, height, channels, seed=channels)
    png = _png.encode_png(width, height, pixels, channels)
    assert png.startswith(_png.PNG_MAGIC)
    assert _png.png_size(png) == (width, height)
    assert _png.decode_png(png) == (width, height, channels, pixels)


def test_encoded_png_opens_in_pillow():
    image_mod = pytest.importorskip("PIL.Image")
    pixels = _pixels(17, 11, 3)
    img = image_mod.open(io.BytesIO(_png.encode_png(17, 11, pixels, 3)))
    assert img.size == (17, 11) and img.mode == "RGB"
    assert img.tobytes() == pixels


def test_decoder_matches_pillow_on_adaptive_filters():
    image_mod = pytest.importorskip("PIL.Image")
    pixels = _pixels(64, 40, 3, seed=3)
    img = image_mod.frombytes("RGB", (64, 40), pixels)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    assert _png.decode_png(buf.getvalue())[3] == pixels


def _ppm(width: int, height: int, pixels: bytes, maxval: int = 255, header: bytes = b"") -> bytes:
    return b"P6\n" + header + f"{width} {height}\n{maxval}\n".encode() + pixels


def test_ppm_to_png_keeps_pixels():
    pixels = _pixels(12, 7, 3)
    png = _png.ppm_to_png(_ppm(12, 7, pixels))
    assert _png.decode_png(png) == (12, 7, 3, pixels)


def test_ppm_header_comments_and_scaling():
    # maxval 15: values scale to 0..255; comments may sit between the header fields
    body = bytes([0, 15, 5] * 4)
    data = b"P6 # made by hand\n2 # width\n 2\n15\n" + body
    _, _, _, out = _png.decode_png(_png.ppm_to_png(data))
    assert out == bytes([0, 255, 85] * 4)


def test_ppm_sixteen_bit_keeps_high_byte():
    body = b"".join(struct.pack(">HHH", 0xFFFF, 0x8000, 0x0101) for _ in range(2))
    _, _, _, out = _png.decode_png(_png.ppm_to_png(_ppm(2, 1, body, maxval=65535)))
    assert out == bytes([255, 128, 1] * 2)


@pytest.mark.parametrize("data, message", [
    (b"P5\n2 2\n255\n" + bytes(4), "P6"),
    (b"P6\n2 2\n255\n" + bytes(5), "truncated"),
    (b"P6\n2 x\n255\n", "malformed"),
    (b"P6\n0 2\n255\n", "size"),
    (b"P6\n100000 100000\n255\n" + bytes(10), "size"),
    (b"P6\n2 2\n0\n" + bytes(12), "maxval"),
])
def test_bad_ppm_is_refused(data, message):
    with pytest.raises(ValueError, match=message):
        _png.ppm_to_png(data)


def test_bad_png_is_refused():
    good = _png.encode_png(4, 4, bytes(48), 3)
    with pytest.raises(ValueError, match="not a PNG"):
        _png.decode_png(b"GIF89a" + good)
    with pytest.raises(ValueError):
        _png.decode_png(good[:40])
    # 16-bit depth: not something QEMU or libvirt write
    sixteen = bytearray(good)
    sixteen[24] = 16
    with pytest.raises(ValueError, match="unsupported"):
        _png.decode_png(bytes(sixteen))
    # a huge declared size is refused before any allocation
    huge = good[:16] + struct.pack(">II", 100000, 100000) + good[24:]
    with pytest.raises(ValueError, match="size"):
        _png.decode_png(huge)


def test_swap_red_blue():
    rgb = bytes([200, 10, 30, 1, 2, 3])
    assert _png.swap_red_blue(rgb, 3) == bytes([30, 10, 200, 3, 2, 1])
    rgba = bytes([200, 10, 30, 255])
    assert _png.swap_red_blue(rgba, 4) == bytes([30, 10, 200, 255])
    png = _png.encode_png(2, 1, rgb, 3)
    assert _png.decode_png(_png.png_swap_red_blue(png))[3] == bytes([30, 10, 200, 3, 2, 1])


@pytest.mark.parametrize("version, swapped", [
    ((7, 0, 0), False), ((7, 1, 0), True), ((7, 2, 0), True), ((7, 2, 2), True),
    ((7, 2, 3), False), ((7, 2, 22), False), ((8, 0, 0), True), ((8, 0, 1), False),
    ((8, 1, 0), False), ((9, 2, 0), False), ((6, 2, 0), False),
])
def test_png_channel_bug_versions(version, swapped):
    assert _png.png_channels_swapped(*version) is swapped
