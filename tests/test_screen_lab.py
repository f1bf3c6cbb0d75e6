"""Real lab screenshots, diagnosed from the screenshot alone (no console log, no OS hint).

The expected category is the lab's (meta.json "expect"), except where the screen cannot show
the failure; those runs are listed with the reason and must then not be given a failure verdict
(no invented evidence).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnose.model import Evidence, Subject
from diagnose.pipeline import Analyzer, evidence_from_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lab"

# run (or scenario, for both display modes) -> (what the screenshot shows, why it differs from
# meta.json)
SCREEN_SHOWS = {
    "hung-task__text": ("unknown", "the hung-task report scrolled off the 25-row screen; only "
                                   "the tail of the register dump is left"),
    "initramfs-missing-root": ("unknown", "the screen stops at device probing: initramfs-tools "
                                          "prints its ALERT and shell on /dev/console, the "
                                          "serial port"),
    "sshd-bad-config": ("healthy", "sshd fails in the journal; tty1 shows the login prompt"),
}


def _runs() -> list[Path]:
    return [p.parent for p in sorted(FIXTURES.glob("*/screen.png"))
            if (p.parent / "meta.json").is_file()]


def _expected(run: Path) -> tuple[str, str | None]:
    meta = json.loads((run / "meta.json").read_text())
    if "dummy" in (meta.get("kernel_console") or ""):
        return "unknown", "blank"  # this kernel has no framebuffer console: the screen is black
    for key in (run.name, meta.get("scenario")):
        if key in SCREEN_SHOWS:
            return SCREEN_SHOWS[key][0], "listed"
    return meta["expect"]["category"], None


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer.load()


@pytest.mark.parametrize("run", _runs(), ids=lambda p: p.name)
def test_screenshot_alone_gives_the_category(run, analyzer):
    want, why = _expected(run)
    ev = evidence_from_bytes(None, name=run.name, origin="-",
                             screenshot=(run / "screen.png").read_bytes(),
                             screenshot_origin=str(run / "screen.png"))
    diag = analyzer.analyse(ev)
    assert diag.verdict.category == want, (diag.verdict.rule_id, diag.verdict.summary)
    art = next(a for a in diag.artifacts if a.name == "screenshot")
    assert art.available and art.detail["analysed"] is True
    if why == "blank":
        assert diag.screen.features.get("blank") == "black"
        assert diag.verdict.rule_id == "screen.blank.black"
        return
    assert diag.screen.reader == "console-font"
    if want not in ("unknown", "healthy"):
        f = diag.verdict.decided_by
        assert f is not None and f.source == "screen"
        assert f.boxes, "a screen finding must say where its evidence is"
        w, h = diag.screen.width, diag.screen.height
        assert all(0 <= b.x and b.x + b.w <= w and 0 <= b.y and b.y + b.h <= h for b in f.boxes)


def test_screen_json_contract(analyzer):
    run = FIXTURES / "vfs-panic__text"
    if not (run / "screen.png").is_file():
        pytest.skip("fixture missing")
    ev = evidence_from_bytes(None, name="x", origin="-",
                             screenshot=(run / "screen.png").read_bytes(), screenshot_origin="s")
    doc = analyzer.analyse(ev).screen.to_json()
    assert {"text", "reader", "width", "height", "features"} <= set(doc)
    assert doc["reader"] == "console-font"
    assert (doc["width"], doc["height"]) == (720, 400)
    assert doc["features"]["background"] == "black"
    assert "Kernel panic - not syncing" in doc["text"]
    json.dumps(doc)  # JSON-ready


def test_screen_and_console_together(analyzer):
    """A black screen does not override what the console log says."""
    run = FIXTURES / "healthy-login-cloud__fb"
    if not (run / "screen.png").is_file():
        pytest.skip("fixture missing")
    console = (run / "serial.log").read_bytes()
    ev = evidence_from_bytes(console, name="x", origin="serial.log",
                             screenshot=(run / "screen.png").read_bytes(), screenshot_origin="s")
    diag = analyzer.analyse(ev)
    assert diag.screen.features.get("blank") == "black"
    assert diag.verdict.category == "healthy"
    assert any(f.rule_id == "screen.blank.black" for f in diag.findings)


def test_screen_failure_beats_stale_console(analyzer):
    """The screen is newer than a console log that ends at a login prompt."""
    healthy = FIXTURES / "healthy-login__text"
    panic = FIXTURES / "vfs-panic__text"
    if not (healthy / "serial.log").is_file() or not (panic / "screen.png").is_file():
        pytest.skip("fixtures missing")
    ev = Evidence(Subject("file", "x"), (healthy / "serial.log").read_bytes(),
                  (panic / "screen.png").read_bytes(), ())
    diag = analyzer.analyse(ev)
    assert diag.verdict.category == "kernel-panic-vfs"
    assert diag.verdict.decided_by.source == "screen"
