"""Open hostile reports in headless Chromium: no script runs, no CSP violation, no request.

Every payload, if it ever ran, would set `document.body.dataset.pwned`, log to the console, or
fetch from a loopback HTTP server started here. Two control pages prove that each of those
detectors does fire when a page is unsafe, so the clean result for the report means something.
Chromium is the Debian package `chromium`; outside CI the tests skip if it is absent.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_report_html import RTL, hostile_diagnosis, panic_diagnosis

from diagnose.model import Subject
from diagnose.render.html import render_html

pytestmark = pytest.mark.browser

PWN = "document.body.dataset.pwned=1"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium"
                                        if os.path.exists("/usr/bin/chromium") else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("headless Chromium not installed (Debian package `chromium`)")
    return path


class _Server(http.server.ThreadingHTTPServer):
    requests: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def payloads(port: int, page: str) -> tuple[str, ...]:
    """Hostile console lines; any request they cause goes to /<page>/..."""
    base = f"http://127.0.0.1:{port}/{page}"
    return (
        f"<script>{PWN}</script>",
        f"<img src=x onerror={PWN}>",
        f'"><svg onload={PWN}>',
        f"</span></pre><script>{PWN}</script>",
        f"<img src={base}/img>",
        f"<link rel=stylesheet href={base}/css>",
        f'<style>@import "{base}/import";</style>',
        f"<iframe src={base}/frame></iframe>",
        f'<meta http-equiv="refresh" content="0;url={base}/refresh">',
        f"<base href={base}/base/>",
        f"<object data={base}/object></object>",
        f"<svg><image href={base}/svgimage /></svg>",
        RTL,
    )


def hostile_report(port: int) -> str:
    lines = payloads(port, "report")
    d = hostile_diagnosis(lines)
    _, png = panic_diagnosis()
    screen = type(d.screen)(text="\n".join(lines))
    d = replace(
        d,
        subject=Subject("ecs", f"web\"'><img src=x onerror={PWN}>",
                        (("tag:Name", f"<svg onload={PWN}>"),
                         ("url", f"http://127.0.0.1:{port}/report/fact"))),
        verdict=replace(d.verdict, summary=f"</title><script>{PWN}</script>",
                        references=(f"javascript:{PWN}",
                                    f"http://127.0.0.1:{port}/report/ref")),
        findings=(*d.findings, replace(d.findings[-1], rule_id=f"</title><script>{PWN}</script>",
                                       fields=(("css", f"url({lines[4][9:-1]})"),))),
        screen=screen)
    return render_html(d, screenshot=png)


def run_pages(binary: str, pages: list[Path]) -> list[tuple[str, str]]:
    """Open each page in its own headless Chromium (in parallel); return (DOM, log) pairs."""
    procs = []
    for page in pages:
        profile = tempfile.mkdtemp(prefix="chromium-", dir=page.parent)
        argv = [binary, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                "--enable-logging=stderr", "--v=0", "--virtual-time-budget=1500",
                "--dump-dom", page.as_uri()]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, text=True, errors="replace"))
    out = []
    for proc in procs:
        try:
            dom, log = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("headless Chromium did not finish in 90 s")
        assert proc.returncode == 0, log[-2000:]
        out.append((dom, log))
    return out


def page_messages(log: str) -> list[str]:
    """Console messages and CSP reports from the page (Chromium's own noise is ignored)."""
    return [ln for ln in log.splitlines()
            if ":CONSOLE" in ln or "Content Security Policy" in ln or "Refused to" in ln]


def test_hostile_report_is_inert(chromium: str, server: _Server, tmp_path: Path) -> None:
    port = server.server_address[1]
    html = hostile_report(port)
    report = tmp_path / "report.html"
    report.write_text(html, encoding="utf-8")

    # control 1: the same payloads pasted raw into a page without a CSP do run and do fetch
    # (all but the refresh, which would navigate away before the DOM is dumped)
    raw = tmp_path / "raw.html"
    raw.write_text("<!DOCTYPE html><html><head><meta charset=utf-8></head><body>\n"
                   + "\n".join(p for p in payloads(port, "raw") if "refresh" not in p)
                   + "\n</body></html>\n", encoding="utf-8")
    # control 2: our report with one unescaped image injected: the CSP blocks and reports it
    injected = tmp_path / "injected.html"
    injected.write_text(html.replace("<main>", f"<main><img src=http://127.0.0.1:{port}/leak>",
                                     1), encoding="utf-8")

    (dom, log), (raw_dom, _), (_, inj_log) = run_pages(chromium, [report, raw, injected])
    hits = list(server.requests)

    # the detectors work: script ran and requests were made from the raw page ...
    assert "data-pwned" in raw_dom, "control page: the payload should have run"
    assert any(p.startswith("/raw/") for p in hits), hits
    # ... and the CSP blocked the injected image and said so on the console
    assert "/leak" not in hits, "the CSP should have blocked the injected image"
    assert any("/leak" in m and "Content Security Policy" in m
               for m in page_messages(inj_log)), page_messages(inj_log)[:5]

    # the report itself: offline, silent, inert, and really rendered
    assert [p for p in hits if not p.startswith("/raw/")] == []
    assert page_messages(log) == []
    assert "data-pwned" not in dom
    assert "<script" not in dom.lower() and "<iframe" not in dom.lower()
    assert "<main>" in dom and "Kernel panic - not syncing" in dom
    assert f"&lt;script&gt;{PWN}&lt;/script&gt;" in dom
