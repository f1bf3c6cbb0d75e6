"""The self-contained HTML report for one Diagnosis.

Two steps, as in coverage.py's HTML report: `build_view` turns the Diagnosis into small frozen
view-model values (every formatting decision is made here), then Jinja2 templates in `reports/`
only loop and print them.

Security model: every string that came from the console, the screen, the instance or the cloud
API is hostile. Such strings travel as `Text` (runs of plain text and control-character labels)
and reach the page only through Jinja2 autoescaping; nothing untrusted is ever marked safe. The
only markup-safe value is our own stylesheet, whose SHA-256 goes into a strict
Content-Security-Policy that forbids scripts, remote loads, forms and base changes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from diagnose.model import SEVERITIES, STAGES, STATUSES, Boot, Diagnosis, Finding, StageMark
from diagnose.render import CONTROL_RE, split_controls, visible_controls
from diagnose.resources import data_dir

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

MAX_LOG_LINES = 5000  # of the last boot
MAX_EARLIER_LINES = 1000  # of each earlier boot
TEMPLATE = "report.html.j2"
STYLESHEET = "report.css"

STATUS_LABELS = {"failed": "Failed", "in-progress": "In progress", "degraded": "Degraded",
                 "healthy": "Healthy", "uncertain": "Uncertain", "skipped": "Skipped"}
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# --- view model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seg:
    """A run of untrusted text, or (ctl=True) the visible label of one control character."""

    text: str
    ctl: bool = False


Text = tuple[Seg, ...]


def text(value: object) -> Text:
    """Untrusted value -> Text, with control characters turned into visible labels."""
    if value is None:
        return ()
    return tuple(Seg(piece, ctl) for piece, ctl in split_controls(str(value)))


@dataclass(frozen=True)
class LinkView:
    label: Text
    href: str | None  # only ever an http(s) URL we checked


@dataclass(frozen=True)
class BannerView:
    status: str  # a css-safe status id (one of STATUSES, else "unknown")
    status_label: str
    category: Text
    rule_id: Text
    title: Text
    summary: Text
    confidence_pct: int
    decided_source: str | None  # "console" | "screen" | None
    decided_line: int | None
    decided_href: str | None
    decided_rule: Text


@dataclass(frozen=True)
class FindingView:
    rule_id: Text
    title: Text
    category: Text
    severity: str  # css-safe
    source: str  # css-safe: "console" | "screen" | "other"
    boot: int
    line: int
    line_label: str
    href: str | None
    text: Text
    fields: tuple[tuple[Text, Text], ...]
    decides: bool


@dataclass(frozen=True)
class StageView:
    name: str
    state: str  # "seen" | "implied" (a later stage was seen) | "missing"
    stop: bool  # the furthest stage reached: where the log stops
    time_label: str
    line: int | None
    href: str | None
    x: int  # node centre in the SVG's user units


@dataclass(frozen=True)
class TimelineView:
    stages: tuple[StageView, ...]
    width: int
    height: int
    y: int  # node centre line
    sentence: str  # one-line summary, built from trusted values only
    stop_x: int | None


@dataclass(frozen=True)
class LogLineView:
    number: int
    text: Text
    hit: str  # "" or the css-safe severity of the worst finding on this line
    decides: bool


@dataclass(frozen=True)
class LogView:
    boot_index: int
    first_line: int
    last_line: int
    count: int
    lines: tuple[LogLineView, ...]
    omitted: int  # lines of this boot not shown (the oldest ones)
    omitted_first: int
    omitted_last: int
    hidden_hits: tuple[LogLineView, ...]  # evidence lines inside the omitted part, shown apart


@dataclass(frozen=True)
class EarlierBootView:
    index: int
    number: int  # 1-based, for people
    summary: str  # built from trusted values only
    findings: int
    log: LogView


@dataclass(frozen=True)
class ArtifactView:
    name: Text
    available: bool
    size: str
    reason: Text
    origin: Text
    details: tuple[tuple[Text, Text], ...]


@dataclass(frozen=True)
class EventView:
    time: Text
    kind: Text
    status: Text
    description: Text
    scheduled: bool


@dataclass(frozen=True)
class BoxView:
    x: int
    y: int
    w: int
    h: int
    severity: str  # css-safe
    label: str  # rule id with control characters made visible, for an SVG <title> tooltip


@dataclass(frozen=True)
class ScreenshotView:
    show: bool  # worth a section: embedded, unreadable, or with screen text
    embedded: bool
    data_uri: str  # "data:image/png;base64,..." built from bytes we sniffed; "" if not embedded
    width: int
    height: int
    boxes: tuple[BoxView, ...]
    note: str  # trusted sentence about why it is (not) shown
    reason: Text  # the artifact's own reason when it could not be fetched
    ocr_lines: tuple[LogLineView, ...]  # text read from the screen, anchored S<n>


@dataclass(frozen=True)
class SubjectView:
    kind: Text
    name: Text
    facts: tuple[tuple[Text, Text], ...]


@dataclass(frozen=True)
class ReportView:
    page_title: str  # plain string with control characters made visible; autoescaped
    banner: BannerView
    remediation: tuple[Text, ...]
    references: tuple[LinkView, ...]
    findings: tuple[FindingView, ...]
    timeline: TimelineView | None
    log: LogView | None
    log_notes: tuple[Text, ...]
    total_lines: int
    boot_count: int
    earlier: tuple[EarlierBootView, ...]
    artifacts: tuple[ArtifactView, ...]
    missing: tuple[ArtifactView, ...]
    events: tuple[EventView, ...]
    screenshot: ScreenshotView
    subject: SubjectView
    tool_version: Text
    rules_version: Text
    created: Text


# --- small helpers ----------------------------------------------------------------------------


def _status(value: str) -> str:
    return value if value in STATUSES else "unknown"


def _severity(value: str) -> str:
    return value if value in SEVERITIES else "unknown"


def safe_href(url: str) -> str | None:
    """The URL if it is a plain http(s) link with a host, else None (rendered as text)."""
    url = url.strip()
    if CONTROL_RE.search(url) or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _time_label(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 100:
        return f"{seconds:.2f} s"
    return f"{seconds:.0f} s"


def sniff_image(data: bytes) -> tuple[str, int, int] | None:
    """(mime, width, height) for a PNG or baseline/progressive JPEG, else None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return ("image/png", width, height) if width and height else None
    if data[:3] != b"\xff\xd8\xff":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return ("image/jpeg", width, height) if width and height else None
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before a frame
            return None
        pos += 2 + length
    return None


# --- building the view model ------------------------------------------------------------------


def _finding_order(f: Finding, decided: Finding | None) -> tuple[int, int, int, int, int, int]:
    """The deciding finding first, then by severity, priority, console before screen,
    the latest boot first, and log order."""
    return (0 if decided is not None and f == decided else 1,
            SEVERITY_RANK.get(f.severity, len(SEVERITIES)), -f.priority,
            0 if f.source == "console" else 1, -f.boot, f.line)


def _hits(findings: tuple[Finding, ...]) -> dict[tuple[int, int], str]:
    """(boot, line) -> the worst severity of the console findings on that line."""
    out: dict[tuple[int, int], str] = {}
    for f in findings:
        if f.source != "console":
            continue
        key = (f.boot, f.line)
        old = out.get(key)
        if old is None or SEVERITY_RANK.get(f.severity, 99) < SEVERITY_RANK.get(old, 99):
            out[key] = f.severity
    return out


def _log_view(boot: Boot, limit: int, hits: dict[tuple[int, int], str],
              decided: tuple[int, int] | None) -> LogView:
    def line_view(number: int, body: str) -> LogLineView:
        sev = hits.get((boot.index, number))
        return LogLineView(number=number, text=text(body), hit=_severity(sev) if sev else "",
                           decides=decided == (boot.index, number))

    lines = boot.lines
    shown = lines[-limit:] if len(lines) > limit else lines
    hidden = lines[:len(lines) - len(shown)]
    return LogView(
        boot_index=boot.index, first_line=boot.first_line, last_line=boot.last_line,
        count=len(lines), lines=tuple(line_view(ln.number, ln.text) for ln in shown),
        omitted=len(hidden),
        omitted_first=hidden[0].number if hidden else 0,
        omitted_last=hidden[-1].number if hidden else 0,
        hidden_hits=tuple(line_view(ln.number, ln.text) for ln in hidden
                          if (boot.index, ln.number) in hits),
    )


def _furthest(boot: Boot) -> tuple[int, StageMark] | None:
    """(stage position, StageMark) of the furthest stage the boot reached."""
    best = None
    for mark in boot.stages:
        if mark.name in STAGES:
            pos = STAGES.index(mark.name)
            if best is None or pos > best[0]:
                best = (pos, mark)
    return best


def _timeline(boot: Boot, rendered: set[int]) -> TimelineView:
    width, height, y, margin = 940, 96, 40, 56
    step = (width - 2 * margin) // (len(STAGES) - 1)
    seen = {}
    for mark in boot.stages:
        if mark.name in STAGES and mark.name not in seen:
            seen[mark.name] = mark
    furthest = _furthest(boot)
    top = furthest[0] if furthest else -1
    stages = []
    for pos, name in enumerate(STAGES):
        mark = seen.get(name)
        state = "seen" if mark else ("implied" if pos < top else "missing")
        line = mark.line if mark else None
        stages.append(StageView(
            name=name, state=state, stop=pos == top,
            time_label=_time_label(mark.time) if mark else "",
            line=line, href=f"#L{line}" if line in rendered else None,
            x=margin + pos * step))
    if furthest is None:
        sentence = "No boot stage was recognised in this boot."
    else:
        mark = furthest[1]
        when = f", {_time_label(mark.time)} after the kernel started" if mark.time else ""
        end = (" It reached the login stage." if mark.name == "login" else
               f" The log stops in the {mark.name} stage{when}"
               f" (stage first seen at line {mark.line}, log ends at line {boot.last_line}).")
        sentence = f"Boot {boot.index + 1}: {len(seen)} of {len(STAGES)} stages seen.{end}"
    return TimelineView(stages=tuple(stages), width=width, height=height, y=y, sentence=sentence,
                        stop_x=stages[top].x if top >= 0 else None)


def _earlier_summary(boot: Boot, severities: list[str]) -> str:
    furthest = _furthest(boot)
    reach = "no stage recognised"
    if furthest:
        mark = furthest[1]
        reach = f"reached {mark.name}"
        if mark.time is not None:
            reach += f" at {_time_label(mark.time)}"
    found = f"{len(severities)} finding" + ("" if len(severities) == 1 else "s")
    if severities:
        found += f" (worst: {min(severities, key=lambda s: SEVERITY_RANK.get(s, 99))})"
    return (f"Boot {boot.index + 1}: lines {boot.first_line}\u2013{boot.last_line} "
            f"({len(boot.lines)} lines), {reach}, {found}")


def _screenshot(d: Diagnosis, data: bytes | None, findings: tuple[Finding, ...]) -> ScreenshotView:
    artifact = next((a for a in d.artifacts if a.name == "screenshot"), None)
    reason = text(artifact.reason) if artifact and not artifact.available else ()
    ocr = getattr(d.screen, "text", None)  # the screen reader's result, when it has text
    marks: dict[int, str] = {}
    for f in findings:
        if f.source == "screen" and SEVERITY_RANK.get(f.severity, 99) < SEVERITY_RANK.get(
                marks.get(f.line, ""), 99):
            marks[f.line] = f.severity
    decided = d.verdict.decided_by
    ocr_lines = tuple(
        LogLineView(number=i, text=text(s), hit=_severity(marks[i]) if i in marks else "",
                    decides=decided is not None and decided.source == "screen"
                    and decided.line == i)
        for i, s in enumerate(ocr.splitlines(), start=1)) if isinstance(ocr, str) else ()
    empty = ScreenshotView(show=bool(ocr_lines), embedded=False, data_uri="", width=0, height=0,
                           boxes=(), note="", reason=reason, ocr_lines=ocr_lines)
    if data is None:
        if artifact is None or not artifact.available:
            return replace(empty, note="No screenshot was fetched.")
        return replace(empty, show=True,
                       note="The screenshot was read, but it is not embedded in this report.")
    sniffed = sniff_image(data)
    if sniffed is None:
        return replace(empty, show=True,
                       note="The screenshot is not a readable PNG or JPEG image, "
                            "so it is not embedded.")
    mime, width, height = sniffed
    boxes = []
    for f in findings:
        if f.source != "screen":
            continue
        for b in f.boxes:
            x, y = max(0, min(b.x, width)), max(0, min(b.y, height))
            w, h = max(0, min(b.w, width - x)), max(0, min(b.h, height - y))
            if w and h:
                boxes.append(BoxView(x, y, w, h, _severity(f.severity),
                                     visible_controls(f.rule_id)))
    note = (f"{mime.split('/')[1].upper()}, {width}\u00d7{height} px, {_size(len(data))}."
            + (f" {len(boxes)} evidence box{'es' if len(boxes) != 1 else ''} drawn."
               if boxes else ""))
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return replace(empty, show=True, embedded=True, data_uri=uri, width=width, height=height,
                    boxes=tuple(boxes), note=note)


def build_view(d: Diagnosis, screenshot: bytes | None = None) -> ReportView:
    """All the decisions about what the report shows; the templates only print this."""
    v = d.verdict
    decided = v.decided_by
    last = d.console.last_boot if d.console else None
    hits = _hits(d.findings)
    decided_key = (decided.boot, decided.line) if decided and decided.source == "console" else None

    log = _log_view(last, MAX_LOG_LINES, hits, decided_key) if last else None
    earlier = []
    if d.console:
        for boot in d.console.boots[:-1]:
            sev = [_severity(f.severity) for f in d.findings
                   if f.boot == boot.index and f.source == "console"]
            earlier.append(EarlierBootView(
                index=boot.index, number=boot.index + 1, summary=_earlier_summary(boot, sev),
                findings=len(sev), log=_log_view(boot, MAX_EARLIER_LINES, hits, decided_key)))

    rendered: set[int] = set()
    for lv in ([log] if log else []) + [e.log for e in earlier]:
        rendered.update(ln.number for ln in lv.lines)
        rendered.update(ln.number for ln in lv.hidden_hits)
    ocr_text = getattr(d.screen, "text", None)
    ocr_count = len(ocr_text.splitlines()) if isinstance(ocr_text, str) else 0

    def href_for(f: Finding) -> str | None:
        if f.source == "console" and f.line in rendered:
            return f"#L{f.line}"
        if f.source == "screen" and 1 <= f.line <= ocr_count:
            return f"#S{f.line}"
        return None

    findings = tuple(
        FindingView(
            rule_id=text(f.rule_id), title=text(f.title), category=text(f.category),
            severity=_severity(f.severity),
            source=f.source if f.source in ("console", "screen") else "other",
            boot=f.boot, line=f.line,
            line_label=(f"L{f.line}" if f.source == "console" else f"S{f.line}"),
            href=href_for(f), text=text(f.text),
            fields=tuple((text(k), text(val)) for k, val in f.fields),
            decides=decided is not None and f == decided)
        for f in sorted(d.findings, key=lambda f: _finding_order(f, decided)))

    banner = BannerView(
        status=_status(v.status), status_label=STATUS_LABELS.get(v.status, v.status or "?"),
        category=text(v.category), rule_id=text(v.rule_id), title=text(v.title),
        summary=text(v.summary),
        confidence_pct=(max(0, min(100, round(v.confidence * 100)))
                        if math.isfinite(v.confidence) else 0),
        decided_source=decided.source if decided and decided.source in ("console", "screen")
        else None,
        decided_line=decided.line if decided else None,
        decided_href=href_for(decided) if decided else None,
        decided_rule=text(decided.rule_id) if decided else ())

    artifacts = tuple(
        ArtifactView(name=text(a.name), available=a.available,
                     size=_size(a.bytes) if a.available or a.bytes else "",
                     reason=text(a.reason), origin=text(a.origin),
                     details=tuple((text(k), text(val)) for k, val in a.detail.items()))
        for a in d.artifacts)

    page_title = visible_controls(
        f"{STATUS_LABELS.get(v.status, v.status)}: {v.category} \u2014 {d.subject.name}")
    return ReportView(
        page_title=page_title[:200], banner=banner,
        remediation=tuple(text(s) for s in v.remediation),
        references=tuple(LinkView(text(r), safe_href(r)) for r in v.references),
        findings=findings,
        timeline=_timeline(last, rendered) if last else None,
        log=log,
        log_notes=tuple(text(n) for n in d.console.notes) if d.console else (),
        total_lines=d.console.total_lines if d.console else 0,
        boot_count=len(d.console.boots) if d.console else 0,
        earlier=tuple(reversed(earlier)),  # most recent first
        artifacts=artifacts,
        missing=tuple(a for a in artifacts if not a.available),
        events=tuple(EventView(text(e.time), text(e.kind), text(e.status),
                               text(e.description), e.scheduled) for e in d.events),
        screenshot=_screenshot(d, screenshot, d.findings),
        subject=SubjectView(kind=text(d.subject.kind), name=text(d.subject.name),
                            facts=tuple((text(k), text(val)) for k, val in d.subject.facts)),
        tool_version=text(d.tool_version), rules_version=text(d.rules_version),
        created=text(d.created))


# --- rendering --------------------------------------------------------------------------------


def reports_dir() -> Path:
    """Where the templates live: inside the installed package, else the source checkout."""
    return data_dir("reports")


@functools.lru_cache(maxsize=4)
def _environment(folder: str) -> jinja2.Environment:
    import jinja2  # lazy: importing it costs tens of milliseconds

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)


def csp_for(css: str) -> str:
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def render_html(diagnosis: Diagnosis, *, screenshot: bytes | None = None) -> str:
    """One self-contained HTML page (inline CSS, data: images, no script) for a diagnosis."""
    from markupsafe import Markup

    folder = reports_dir()
    css = (folder / STYLESHEET).read_text(encoding="utf-8")
    if "</" in css:  # it goes verbatim into <style>; it must not be able to close it
        raise ValueError(f"{STYLESHEET} must not contain '</'")
    view = build_view(diagnosis, screenshot)
    template = _environment(str(folder)).get_template(TEMPLATE)
    # Markup only for our own stylesheet, never for anything taken from the diagnosis.
    return template.render(r=view, css=Markup(css), csp=csp_for(css))
