"""More payload kinds than tests/test_report_browser.py, through the real pipeline, and the demo
index page, opened in headless Chromium: no script runs, no request leaves, the CSP is there.

test_report_browser.py covers script tags, event handlers, SVG, CSS url(), a javascript:
reference, broken-out attributes and RTL overrides in hand-built diagnoses. Here the payloads
also take the forms below, and reach the report the way an attacker would get them there: as
console output that a rule matches (so they land in the evidence line and in a named field), as
OCR text, as the instance name, its tags and facts, and as rows of the demo index.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from test_report_browser import (  # noqa: F401 - chromium and server are fixtures
    PWN,
    chromium,
    page_messages,
    run_pages,
    server,
)
from test_report_html import panic_diagnosis

from diagnose.demo import _index
from diagnose.model import Subject
from diagnose.pipeline import Analyzer, evidence_from_bytes
from diagnose.render.html import render_html, safe_href

pytestmark = pytest.mark.browser


def payloads(port: int, page: str) -> tuple[str, ...]:
    base = f"http://127.0.0.1:{port}/{page}"
    return (
        # CSS: legacy expression(), url() in a style attribute, @import in a style block
        f'<div style="width:expression({PWN});background:url({base}/styleattr)">x</div>',
        f"<style>body{{background:url({base}/styleblock)}}</style>",
        f"<p style=\"behavior:url({base}/htc)\">y</p>",
        # URLs: javascript: in mixed case, with entities and whitespace; data: and vbscript:
        f'<a href="JaVaScRiPt:{PWN}">a</a>',
        f'<a href="&#106;avascript:{PWN}">b</a>',
        f'<a href=" java\tscript:{PWN}">c</a>',
        f'<iframe src="data:text/html,<script>{PWN}</script>"></iframe>',
        '<a href="vbscript:msgbox(1)">d</a>',
        # comment/CDATA break-outs and parser differentials (mXSS, the last entry)
        f'<noscript><p title="</noscript><img src=x onerror={PWN}>">',
        f"<!--><img src=x onerror={PWN}>-->",
        f"<![CDATA[><img src=x onerror={PWN}>]]>",
        f"<template><img src=x onerror={PWN}></template>",
        # attribute break-outs with both quote kinds and backticks
        f"' onmouseover='{PWN}' x='",
        f'" autofocus onfocus="{PWN}" x="',
        f"` onload=`{PWN}",
        # Unicode tricks: full-width brackets, NUL and zero-width inside the tag name,
        # pre-escaped text that must stay escaped, URL-encoded, homoglyphs, RTL and isolates
        "\uff1cscript\uff1e" + PWN + "\uff1c/script\uff1e",
        f"<scr\x00ipt>{PWN}</scr\x00ipt>",
        f"<scr\u200bipt>{PWN}</script>",
        f"&lt;script&gt;{PWN}&lt;/script&gt;",
        f"%3Cscript%3E{PWN}%3C/script%3E",
        f"<\u0455cript>{PWN}</\u0455cript>",
        "invoice\u202egnp.exe \u2067evil\u2069 \u2066<b>x</b>\u2069",
        f"<svg><animate onbegin={PWN} attributeName=x dur=1s>",
        f"<svg><a xlink:href=\"javascript:{PWN}\"><text>z</text></a></svg>",
        f"<img srcset=\"{base}/srcset 1x\">",
        f"<video poster={base}/poster></video>",
        # last: in a plain page it swallows everything after it into a <style>
        f"<math><mtext><table><mglyph><style><img src=x onerror={PWN}>",
    )


ANALYZER = Analyzer.load()


def hostile_pipeline_report(port: int) -> tuple[str, tuple[str, ...]]:
    lines = payloads(port, "report")
    # each payload rides on a line the VFS-panic rule matches: it is evidence and a field
    console = "Linux version 6.1.0 (test)\n" + "".join(
        f"Kernel panic - not syncing: VFS: Unable to mount root fs on {p}\n" for p in lines)
    ev = evidence_from_bytes(console.encode("utf-8", "surrogatepass"), name=lines[0],
                             origin=lines[1])
    ev = replace(ev, subject=Subject("ecs", lines[14], (
        ("tag:Name", lines[8]), ("tag:" + lines[16], lines[10]), ("url", lines[3]),
        ("region", lines[22]))))
    d = ANALYZER.analyse(ev)
    assert d.verdict.status == "failed", d.verdict
    assert any(dict(f.fields) for f in d.findings), "the payloads should be captured as fields"
    screen_type = type(panic_diagnosis()[0].screen)
    d = replace(d, screen=screen_type(text="\n".join(lines)),
                verdict=replace(d.verdict, references=(
                    f"JaVaScRiPt:{PWN}", f" javascript:{PWN}", "data:text/html,x",
                    f"http://127.0.0.1:{port}/report/ref")))
    _, png = panic_diagnosis()
    return render_html(d, screenshot=png), lines


@pytest.mark.parametrize("url", [
    f"JaVaScRiPt:{PWN}", f" javascript:{PWN}", f"java\tscript:{PWN}", f"java\nscript:{PWN}",
    f"&#106;avascript:{PWN}", "data:text/html,<script>x</script>", "vbscript:msgbox(1)",
    "//evil.example/x", "http://", "http:/\\evil.example", "http://a.example/\u202e",
    "file:///etc/passwd", "\x00javascript:x",
])
def test_safe_href_refuses(url):
    assert safe_href(url) is None


def test_safe_href_keeps_plain_links():
    assert safe_href("https://docs.example.com/a?b=c#d") == "https://docs.example.com/a?b=c#d"


def _hostile_rows(port: int) -> list[dict]:
    lines = payloads(port, "index")
    return [{"instance_id": lines[i], "name": lines[i + 1], "status": lines[i + 2],
             "category": lines[i + 3], "summary": lines[i + 4],
             "report": "i-bp1demovfspanic00001.html" if i % 2 else ""}
            for i in range(0, len(lines) - 5, 5)]


def test_reports_are_inert(chromium: str, server, tmp_path: Path) -> None:  # noqa: F811
    port = server.server_address[1]
    html, lines = hostile_pipeline_report(port)
    report = tmp_path / "report.html"
    report.write_text(html, encoding="utf-8")
    index_html = _index(_hostile_rows(port))
    index = tmp_path / "index.html"
    index.write_text(index_html, encoding="utf-8")
    # control: the same payloads raw in a page without a CSP do run and do fetch
    raw = tmp_path / "raw.html"
    raw.write_text("<!DOCTYPE html><html><head><meta charset=utf-8></head><body>\n"
                   + "\n".join(payloads(port, "raw")) + "\n</body></html>\n", encoding="utf-8")

    (dom, log), (idx_dom, idx_log), (raw_dom, _) = run_pages(chromium, [report, index, raw])
    hits = list(server.requests)
    assert any(p.startswith("/raw/") for p in hits), "control: the raw payloads should fetch"
    assert "data-pwned" in raw_dom, "control: a raw payload should have run"

    for name, page_dom, page_log, source in (("report", dom, log, html),
                                             ("index", idx_dom, idx_log, index_html)):
        assert [p for p in hits if p.startswith(f"/{name}/")] == [], (name, hits)
        assert page_messages(page_log) == [], (name, page_messages(page_log)[:5])
        assert "data-pwned" not in page_dom, name
        low = page_dom.lower()
        for tag in ("<script", "<iframe", "<svg>", "<animate", "<math", "<template", "<video",
                    "<style>body", "<img src=x", "<img srcset", "<noscript",
                    "<div style", "<p style", "<b>x"):
            assert tag not in low, (name, tag)
        assert 'http-equiv="content-security-policy"' in source.lower() \
            or "http-equiv=content-security-policy" in source.lower(), name
        assert "default-src 'none'" in source.replace("&#39;", "'"), name
        # URLs in real attributes (in the DOM dump, quotes in text stay bare, but '<' does not)
        urls = re.findall(r'<[a-z][^<>]*?\s(?:href|src|srcset|poster|action|xlink:href)'
                          r'="([^"]*)"', low)
        assert urls or name == "index", "the report links its evidence lines"
        for url in urls:
            assert url.startswith(("#", "data:image/", "http://", "https://", "i-")), (name, url)
    # really rendered: the hostile text is there, as text
    assert "Kernel panic - not syncing" in dom
    assert "&amp;lt;script&amp;gt;" in dom  # pre-escaped text stays visibly escaped
    assert "U+202E" in dom  # the RTL override is shown as a label, not obeyed
    assert "&lt;math&gt;" in idx_dom or "&lt;math&gt;" in dom
