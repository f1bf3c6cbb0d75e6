"""The HTML report: golden files, escaping of hostile text, and the Content-Security-Policy.

The sample diagnoses are built by hand from the model's dataclasses (the report must not depend on
the extract/match/decide stages), but every console line comes from a real lab boot in
tests/fixtures/lab/. Dates and versions are fixed, so the golden files are stable.
Regenerate them with `UPDATE_GOLDEN=1 pytest tests/test_report_html.py`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from diagnose.model import (
    Artifact,
    Boot,
    Box,
    ConsoleLog,
    Diagnosis,
    Event,
    Finding,
    Line,
    StageMark,
    Subject,
    Verdict,
)
from diagnose.render import html as report

HERE = Path(__file__).resolve().parent
LAB = HERE / "fixtures" / "lab"
GOLDEN = HERE / "golden"

PANIC_CASE = "vfs-panic__text"  # one boot, kernel panic, text-mode screenshot + screen text
TWO_BOOT_CASE = "crash-then-healthy__text"  # a crash, then a healthy second boot
HEALTHY_CASE = "healthy-login__text"

HOSTILE = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
)
RTL = "evil\u202etxt.exe\u2066x\u2069\u200f"


# --- building sample diagnoses from real lab logs ----------------------------------------------


def lab_file(case: str, name: str) -> Path:
    path = LAB / case / name
    if not path.exists():
        pytest.fail(f"lab fixture missing: {path} (see tests/fixtures/README.md)")
    return path


def read_lines(case: str) -> tuple[list[Line], int]:
    raw = lab_file(case, "serial.log").read_bytes()
    body = raw.decode("utf-8", "replace").replace("\r", "")
    texts = body.split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    return [Line(i, t) for i, t in enumerate(texts, start=1)], len(raw)


_TS = re.compile(r"^\[\s*(\d+\.\d+)\]")
_STAGE_MARKERS = (  # how this test marks stages in the sample logs (the extractor has its own)
    ("kernel", "Linux version "),
    ("initramfs", "Unpacking initramfs"),
    ("init", "as init process"),
    ("login", " login:"),
)


def _stamp(lines: list[Line], upto: int) -> float | None:
    for ln in reversed(lines[: upto + 1]):
        m = _TS.match(ln.text)
        if m:
            return float(m.group(1))
    return None


def make_boots(lines: list[Line]) -> tuple[Boot, ...]:
    starts = [i for i, ln in enumerate(lines) if "Linux version " in ln.text] or [0]
    starts[0] = 0
    bounds = list(zip(starts, [*starts[1:], len(lines)], strict=True))
    boots = []
    for index, (a, b) in enumerate(bounds):
        chunk = lines[a:b]
        marks = []
        for name, needle in _STAGE_MARKERS:
            pos = next((i for i, ln in enumerate(chunk) if needle in ln.text), None)
            if pos is not None:
                marks.append(StageMark(name, chunk[pos].number, _stamp(chunk, pos)))
        boots.append(Boot(index, tuple(chunk), tuple(marks)))
    return tuple(boots)


def find_line(boot: Boot, needle: str) -> Line:
    return next(ln for ln in boot.lines if needle in ln.text)


def console_finding(boot: Boot, needle: str, **kw: object) -> Finding:
    ln = find_line(boot, needle)
    base = dict(rule_id="linux.panic.vfs-unable-to-mount-root", category="kernel-panic-vfs",
                status="failed", severity="critical", priority=80,
                title="Kernel panic: the root filesystem could not be mounted",
                source="console", boot=boot.index, line=ln.number, text=ln.text)
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


def panic_diagnosis() -> tuple[Diagnosis, bytes]:
    """The real vfs-panic boot, with its real screenshot and the text on its screen."""
    lines, size = read_lines(PANIC_CASE)
    boots = make_boots(lines)
    boot = boots[-1]
    panic = console_finding(
        boot, "Kernel panic - not syncing: VFS:", fields=(("device", "unknown-block(0,0)"),))
    tried = console_finding(
        boot, "No filesystem could mount root", rule_id="linux.kernel.no-fs-could-mount",
        severity="info", priority=40, title="The kernel tried every filesystem type")
    png = lab_file(PANIC_CASE, "screen.png").read_bytes()
    screen_text = lab_file(PANIC_CASE, "screen.txt").read_text(encoding="utf-8")
    row = next(i for i, s in enumerate(screen_text.splitlines()) if "Kernel panic" in s)
    # text mode: 80x25 cells of 9x16 pixels; the panic line wraps onto a second row
    on_screen = Finding(
        rule_id="linux.panic.vfs-unable-to-mount-root", category="kernel-panic-vfs",
        status="failed", severity="critical", priority=80,
        title="Kernel panic: the root filesystem could not be mounted", source="screen",
        boot=-1, line=row + 1, text=screen_text.splitlines()[row],
        boxes=(Box(0, row * 16, 720, 32),))
    verdict = Verdict(
        status="failed", category="kernel-panic-vfs", rule_id=panic.rule_id, title=panic.title,
        summary="The kernel found no root filesystem on unknown-block(0,0).", confidence=0.95,
        decided_by=panic,
        remediation=(
            "Check that the root= device on the kernel command line exists in the instance.",
            "Rebuild the initramfs for the running kernel, then regenerate the boot loader "
            "configuration.",
        ),
        references=("https://www.kernel.org/doc/html/latest/admin-guide/kernel-parameters.html",))
    d = Diagnosis(
        subject=Subject("qemu", PANIC_CASE, (("kernel", "6.1.0 generic"), ("display", "text"))),
        verdict=verdict, findings=(panic, tried, on_screen),
        console=ConsoleLog(boots, total_lines=len(lines), raw_bytes=size),
        artifacts=(Artifact("console", True, size, origin="serial.log"),
                   Artifact("screenshot", True, len(png), origin="qmp:screendump",
                            detail={"format": "png"})),
        tool_version="0.0.0-test", rules_version="0.0.0-test", created="2000-01-01T00:00:00Z",
        screen=SimpleNamespace(text=screen_text))
    return d, png


def two_boot_diagnosis() -> Diagnosis:
    """A crash and then a healthy boot on an ECS-like subject whose screenshot was throttled."""
    lines, size = read_lines(TWO_BOOT_CASE)
    boots = make_boots(lines)
    last = boots[-1]
    login = find_line(last, " login:")
    ok = Finding(rule_id="linux.login.prompt", category="healthy", status="healthy",
                 severity="positive", priority=50, title="A login prompt was shown",
                 source="console", boot=last.index, line=login.number, text=login.text)
    earlier = [f for b in boots[:-1] for f in _panic_findings(b)]
    verdict = Verdict(
        status="healthy", category="healthy", rule_id=ok.rule_id, title=ok.title,
        summary="The last boot reached a login prompt; look at security groups and "
                "credentials.", confidence=0.9, decided_by=ok)
    return Diagnosis(
        subject=Subject("ecs", "i-bp1example0000000001",
                        (("region", "cn-hangzhou"), ("os", "linux"), ("status", "Running"))),
        verdict=verdict, findings=(ok, *earlier),
        console=ConsoleLog(boots, total_lines=len(lines), raw_bytes=size,
                           notes=("carriage returns removed",)),
        artifacts=(Artifact("console", True, size, origin="ecs:GetInstanceConsoleOutput",
                            detail={"last_update_time": "2000-01-01T00:00:00Z"}),
                   Artifact("screenshot", False,
                            reason="could not fetch the screenshot: throttled")),
        tool_version="0.0.0-test", rules_version="0.0.0-test", created="2000-01-01T00:00:00Z",
        events=(Event("1999-12-31T23:40:00Z", "SystemFailure.Reboot", "Executed",
                      "The instance was restarted after a host failure."),
                Event("2000-01-03T02:00:00Z", "SystemMaintenance.Reboot", "Scheduled",
                      "Planned host maintenance.", scheduled=True)))


def _panic_findings(boot: Boot) -> list[Finding]:
    if not any("Kernel panic - not syncing" in ln.text for ln in boot.lines):
        return []
    return [console_finding(boot, "Kernel panic - not syncing", rule_id="linux.panic.other",
                            category="kernel-panic-other", title="Kernel panic",
                            priority=60)]


def windows_skipped_diagnosis() -> Diagnosis:
    verdict = Verdict(status="skipped", category="unknown", rule_id=None,
                      title="Nothing could be fetched",
                      summary="The instance runs Windows, which has no serial console output on "
                              "ECS, and the screenshot could not be taken.", confidence=0.0)
    return Diagnosis(
        subject=Subject("ecs", "i-bp1example0000000002", (("os", "windows"),)),
        verdict=verdict, findings=(), console=None,
        artifacts=(Artifact("console", False, reason="no console output for Windows on ECS"),
                   Artifact("screenshot", False,
                            reason="could not fetch the screenshot: instance is Stopped")),
        tool_version="0.0.0-test", rules_version="0.0.0-test", created="2000-01-01T00:00:00Z")


def hostile_diagnosis(extra_lines: tuple[str, ...] = ()) -> Diagnosis:
    """The real panic boot with hostile lines appended, named and tagged by an attacker."""
    d, _ = panic_diagnosis()
    boot = d.console.boots[-1]
    n = boot.last_line
    bad = tuple(Line(n + i, s) for i, s in
                enumerate((*HOSTILE, RTL, "bell\x07 esc\x1b[31m nul\x00 c1\x9b", *extra_lines),
                          start=1))
    boot = replace(boot, lines=boot.lines + bad)
    evil = Finding(rule_id="linux.test.hostile", category="unknown", status="uncertain",
                   severity="warning", priority=10, title=HOSTILE[0], source="console",
                   boot=boot.index, line=bad[0].number, text=bad[0].text,
                   fields=(("name", HOSTILE[2]), (HOSTILE[1], RTL)))
    verdict = replace(d.verdict, summary=f"root {HOSTILE[0]} on {RTL}",
                      remediation=(HOSTILE[1], "run `fsck` on /dev/vda1"),
                      references=("javascript:alert(1)", "JaVaScRiPt:alert(2)",
                                  " javascript:alert(3)", "data:text/html,<b>x</b>",
                                  "https://example.com/a?b=1&c=<x>", "http://[bad"))
    return replace(
        d, verdict=verdict, findings=(*d.findings, evil),
        console=replace(d.console, boots=(boot,), total_lines=d.console.total_lines + len(bad)),
        subject=Subject("ecs", "web-01\"'><b>pwn</b>",
                        (("tag:Name", "<i>x</i>\"'"), ("region", RTL))),
        events=(Event("2000-01-01T00:00:00Z", "SystemFailure.Reboot", "Executed",
                      HOSTILE[2]),),
        artifacts=(*d.artifacts, Artifact("events", False, reason=HOSTILE[1])))


# --- golden files --------------------------------------------------------------------------------


def scrub(html: str) -> str:
    """Keep the stylesheet and its hash out of the golden files (the CSP test checks them)."""
    html = re.sub(r"<style>.*?</style>", "<style>[report.css]</style>", html, flags=re.S)
    return re.sub(r"sha256-[A-Za-z0-9+/=]+", "sha256-[hash]", html)


def check_golden(name: str, html: str) -> None:
    path = GOLDEN / name
    actual = scrub(html)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; run with UPDATE_GOLDEN=1 to create it")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        out = Path(tempfile.gettempdir()) / "diagnose-golden-actual" / name  # for a diff
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(actual, encoding="utf-8")
        pytest.fail(f"{name} differs from the golden file; actual output in {out}")


def test_golden_panic_with_screenshot() -> None:
    d, png = panic_diagnosis()
    check_golden("vfs-panic.html", report.render_html(d, screenshot=png))


def test_golden_two_boots_ecs() -> None:
    check_golden("crash-then-healthy-ecs.html", report.render_html(two_boot_diagnosis()))


def test_golden_windows_skipped() -> None:
    check_golden("windows-skipped.html", report.render_html(windows_skipped_diagnosis()))


# --- content -------------------------------------------------------------------------------------


def test_panic_report_content() -> None:
    d, png = panic_diagnosis()
    html = report.render_html(d, screenshot=png)
    panic = d.verdict.decided_by
    assert panic is not None
    # the deciding line is anchored, highlighted and linked from the banner and the table
    assert f'id="L{panic.line}"' in html
    assert html.count(f'href="#L{panic.line}"') >= 3  # banner, finding, the line's own number
    assert re.search(rf'class="ln hit sev-critical decides" id="L{panic.line}"', html)
    # every real log line is present with its original number
    assert html.count('<span class="ln') >= d.console.total_lines
    assert "&lt;/TASK&gt;" in html  # a real kernel line that looks like a tag
    # the timeline marks the kernel as where the log stops; later stages are greyed out
    assert '<g class="stage seen stop">' in html
    assert html.count('<g class="stage missing">') == 4
    # the screenshot is embedded with its evidence box, and the screen text is linked
    assert "data:image/png;base64," + base64.b64encode(png).decode()[:40] in html
    assert '<rect class="box sev-critical"' in html
    assert 'href="#S' in html and 'id="S1"' in html
    assert "Decided by the console" in html
    assert "95&nbsp;% confidence" in html


def test_missing_artifacts_are_explained() -> None:
    html = report.render_html(windows_skipped_diagnosis())
    assert "no console output for Windows on ECS" in html
    assert "could not fetch the screenshot: instance is Stopped" in html
    assert "No console log was available." in html
    assert 'class="pill st-skipped"' in html
    html = report.render_html(two_boot_diagnosis())
    assert "No screenshot:</strong> could not fetch the screenshot: throttled" in html


def test_earlier_boots_are_folded_with_a_summary() -> None:
    d = two_boot_diagnosis()
    assert len(d.console.boots) >= 2, "the two-boot lab fixture should hold two boots"
    html = report.render_html(d)
    first = d.console.boots[0]
    assert html.count('<details class="boot">') == len(d.console.boots) - 1
    assert f"<summary>Boot 1: lines 1\u2013{first.last_line} ({len(first.lines)} lines)" in html
    assert "1 finding (worst: critical)</summary>" in html
    # the earlier crash is a finding linked into the folded boot
    crash = [f for f in d.findings if f.boot == 0]
    assert crash and f'href="#L{crash[0].line}"' in html
    assert "SystemMaintenance.Reboot" in html and "upcoming" in html


def test_long_log_keeps_the_tail_and_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    d, _ = panic_diagnosis()
    monkeypatch.setattr(report, "MAX_LOG_LINES", 40)
    html = report.render_html(d)
    boot = d.console.boots[-1]
    left_out = len(boot.lines) - 40
    assert f"The first {left_out:,} lines of this boot" in html
    assert f'id="L{boot.lines[left_out].number}"' in html
    assert f'id="L{boot.lines[left_out - 1].number}"' not in html
    # the info finding lies in the shown tail; a finding far above would still be anchored
    early = boot.lines[5]
    d2 = replace(d, findings=(*d.findings, replace(d.findings[1], line=early.number,
                                                   text=early.text)))
    html = report.render_html(d2)
    assert f'id="L{early.number}"' in html and "Evidence lines from the left-out part" in html


def test_sniff_image() -> None:
    d, png = panic_diagnosis()
    assert report.sniff_image(png) == ("image/png", 720, 400)
    # a real JPEG header: SOI, APP0 (JFIF), then SOF0 with height 2, width 3
    jpeg = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            b"\xff\xc0\x00\x11\x08\x00\x02\x00\x03\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    assert report.sniff_image(jpeg) == ("image/jpeg", 3, 2)
    assert report.sniff_image(b"GIF89a....") is None
    assert report.sniff_image(b"\xff\xd8\xff\xd9") is None
    assert report.sniff_image(png[:20]) is None
    html = report.render_html(d, screenshot=jpeg)
    assert 'viewBox="0 0 3 2"' in html and "data:image/jpeg;base64," in html
    # the screen finding's box lies outside this tiny image: it is clipped away, not drawn
    assert "<rect" not in html
    html = report.render_html(d, screenshot=b"<svg onload=alert(1)>")
    assert "data:image" not in html and "not a readable PNG or JPEG" in html


# --- escaping ------------------------------------------------------------------------------------


def test_hostile_text_is_escaped() -> None:
    html = report.render_html(hostile_diagnosis())
    for payload in HOSTILE:
        assert payload not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;" in html
    assert "<b>pwn</b>" not in html and "<i>x</i>" not in html
    assert "web-01&#34;&#39;&gt;&lt;b&gt;pwn&lt;/b&gt;" in html
    assert "<script" not in html.lower()
    assert not re.search(r"<[^>]*\son\w+\s*=", html)


def test_only_http_references_become_links() -> None:
    html = report.render_html(hostile_diagnosis())
    assert 'href="javascript' not in html.lower()
    assert 'href=" javascript' not in html.lower()
    assert 'href="data:' not in html
    assert '<span class="nolink">javascript:alert(1)</span>' in html
    assert 'href="https://example.com/a?b=1&amp;c=&lt;x&gt;"' in html
    assert '<span class="nolink">http://[bad</span>' in html
    assert report.safe_href("https://example.com/x") == "https://example.com/x"
    for bad in ("javascript:alert(1)", "https:/x", "https://exa mple.com", "ftp://h/x",
                "https://a\u202eb.com", "//example.com/x", "vbscript:x", "http://[bad"):
        assert report.safe_href(bad) is None, bad


def test_controls_and_bidi_are_neutralised() -> None:
    html = report.render_html(hostile_diagnosis())
    for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\x07\x1b\x00\x9b":
        assert ch not in html, repr(ch)
    for label in ("U+202E", "U+2066", "U+2069", "U+200F", "U+0007", "U+001B", "U+0000",
                  "U+009B"):
        assert f'<span class="ctl" title="control character">{label}</span>' in html
    assert "evil<span" in html and "txt.exe" in html
    # instance facts and the page title are covered too
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert "<" not in title.replace("&lt;", "")
    assert "\u202e" not in title


# --- Content-Security-Policy -------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.style: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style.append(data)


@pytest.mark.parametrize("which", ["panic", "hostile", "skipped"])
def test_csp_matches_the_inline_style(which: str) -> None:
    if which == "panic":
        d, png = panic_diagnosis()
        html = report.render_html(d, screenshot=png)
    elif which == "hostile":
        html = report.render_html(hostile_diagnosis(("<img src=http://127.0.0.1:9/x>",)))
    else:
        html = report.render_html(windows_skipped_diagnosis())
    assert re.search(r'<head>\s*<meta http-equiv="Content-Security-Policy" ', html), \
        "the CSP meta must be the first thing in <head>"
    parser = _Tags()
    parser.feed(html)
    metas = [dict(a) for t, a in parser.tags if t == "meta"]
    csp = metas[0]["content"] or ""
    assert metas[0]["http-equiv"] == "Content-Security-Policy"
    assert sum(1 for m in metas if "http-equiv" in m) == 1
    policy = dict((d.split(None, 1) + [""])[:2] for d in
                  (p.strip() for p in csp.split(";")) if d)
    assert policy["default-src"] == "'none'"
    assert policy["img-src"] == "data:"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'none'"
    assert "unsafe" not in csp and "script-src" not in policy
    styles = [t for t, _ in parser.tags if t == "style"]
    assert len(styles) == 1
    css = "".join(parser.style)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"
    assert css == (Path(report.reports_dir()) / "report.css").read_text(encoding="utf-8")

    links = {r for r in ("https://www.kernel.org/doc/html/latest/admin-guide/"
                         "kernel-parameters.html", "https://example.com/a?b=1&c=<x>")}
    for tag, attrs in parser.tags:
        assert tag not in ("script", "iframe", "object", "embed", "link", "base", "form")
        for name, value in attrs:
            assert not name.lower().startswith("on"), (tag, name)
            assert "<" not in (value or "") or value in links, (tag, name, value)
            assert name.lower() != "style", tag
            if name.lower() in ("src", "href", "xlink:href", "action", "srcset"):
                v = (value or "").strip()
                if v.lower().startswith(("http:", "https:")):
                    assert tag == "a" and v in links, (tag, v)
                else:
                    assert v.startswith(("#", "data:image/png;base64,",
                                         "data:image/jpeg;base64,")), (tag, v)


def test_css_cannot_close_its_style_element(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "report.css").write_text("body{}</style><script>alert(1)</script>")
    monkeypatch.setattr(report, "reports_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="must not contain"):
        report.render_html(windows_skipped_diagnosis())


def test_templates_found_from_source_checkout() -> None:
    folder = report.reports_dir()
    assert (folder / report.TEMPLATE).is_file() and (folder / report.STYLESHEET).is_file()


def test_importing_the_renderers_does_not_import_jinja2() -> None:
    code = ("import sys, diagnose.render.html, diagnose.render.json, diagnose.render.text; "
            "print(sorted(m for m in ('jinja2', 'markupsafe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=HERE.parent, check=True).stdout
    assert out.strip() == "[]"
