"""Screenshots in every PNG/JPEG flavour a hypervisor or a ticket might hand over, and damaged
ones: each gives a verdict, and a screenshot that cannot be read says why. Never a crash.

tests/test_screen_images.py covers empty, wrong-magic, truncated and bomb-sized images; this file
adds colour modes (CMYK JPEG, 16-bit, palette, alpha, 1-bit), animated PNG, extreme aspect ratios,
and bytes mutated at random by hypothesis.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("diagnose.screen")
PIL = pytest.importorskip("PIL.Image")

from diagnose.pipeline import Analyzer, evidence_from_bytes  # noqa: E402
from diagnose.render.html import render_html  # noqa: E402
from diagnose.render.json import render_json  # noqa: E402

LAB = Path(__file__).parent / "fixtures" / "lab"
PANIC = LAB / "vfs-panic__text" / "screen.png"
ANALYZER = Analyzer.load()


def _panic_image():
    if not PANIC.is_file():
        pytest.skip("lab screenshot missing")
    return PIL.open(PANIC).convert("RGB")


def _save(im, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _variants() -> dict[str, bytes]:
    im = _panic_image()
    gray = im.convert("L")
    rgba = im.convert("RGBA")
    rgba.putalpha(PIL.new("L", im.size, 200))
    frames = [im, im.point(lambda v: 255 - v)]
    return {
        "cmyk jpeg": _save(im.convert("CMYK"), "JPEG", quality=95),
        "grayscale jpeg": _save(gray, "JPEG", quality=95),
        "progressive jpeg": _save(im, "JPEG", quality=95, progressive=True),
        "16-bit grayscale png": _save(gray.point(lambda v: v * 257, "I").convert("I;16"), "PNG"),
        "palette png": _save(im.convert("P", palette=PIL.Palette.ADAPTIVE, colors=16), "PNG"),
        "rgba png (alpha 200)": _save(rgba, "PNG"),
        "gray+alpha png": _save(gray.convert("LA"), "PNG"),
        "1-bit png": _save(gray.point(lambda v: 255 if v > 60 else 0).convert("1"), "PNG"),
        "animated png (apng)": _save(frames[0], "PNG", save_all=True,
                                     append_images=frames[1:], duration=100, loop=0),
        "1x10000 png": _save(PIL.new("L", (1, 10000), 128), "PNG"),
        "10000x1 png": _save(PIL.new("L", (10000, 1), 128), "PNG"),
        "1x10000 jpeg": _save(PIL.new("RGB", (1, 10000), (0, 0, 0)), "JPEG"),
    }


def _diagnose(data: bytes):
    ev = evidence_from_bytes(None, name="shot", origin="", screenshot=data,
                             screenshot_origin="shot")
    d = ANALYZER.analyse(ev)
    art = next(a for a in d.artifacts if a.name == "screenshot")
    if not art.available or art.detail.get("analysed") is False:
        assert art.reason, art  # unreadable: it says why
    render_json(d)
    render_html(d, screenshot=data).encode("utf-8")
    return d, art


VARIANTS = _variants() if PANIC.is_file() else {}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_image_variant_gives_a_verdict(name):
    d, art = _diagnose(VARIANTS[name])
    assert d.verdict.status in ("failed", "uncertain", "healthy", "degraded", "in-progress")


@pytest.mark.parametrize("name", ["cmyk jpeg", "grayscale jpeg", "progressive jpeg",
                                  "16-bit grayscale png", "palette png", "rgba png (alpha 200)",
                                  "gray+alpha png", "1-bit png", "animated png (apng)"])
def test_colour_modes_still_read_the_panic(name):
    """The same panic screen in another colour mode still reads as the panic."""
    original, _ = _diagnose(PANIC.read_bytes())
    d, _ = _diagnose(VARIANTS[name])
    assert (d.verdict.status, d.verdict.category) == (original.verdict.status,
                                                      original.verdict.category)


@pytest.mark.parametrize("name", ["1x10000 png", "10000x1 png", "1x10000 jpeg"])
def test_extreme_aspect_is_not_misread(name):
    d, _ = _diagnose(VARIANTS[name])
    assert d.verdict.status == "uncertain"


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["png", "jpeg"]), st.randoms(use_true_random=False))
def test_mutated_screenshots(kind, rng: random.Random):
    base = PANIC.read_bytes() if kind == "png" else VARIANTS["progressive jpeg"]
    buf = bytearray(base)
    op = rng.randrange(3)
    if op == 0:
        for _ in range(rng.randint(1, 20)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        del buf[rng.randrange(8, len(buf)):]
    else:
        a = rng.randrange(len(buf))
        buf[a:a] = rng.randbytes(rng.randint(1, 512))
    _diagnose(bytes(buf))
