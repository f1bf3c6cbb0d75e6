"""Console extraction: bytes -> cleaned lines -> boots -> boot stages.

Tolerant by design: console output arrives with NUL padding, invalid UTF-8, colour escapes (some
with their ESC byte lost on the way), carriage-return progress bars and backspaces. The cleaned
text keeps a mapping to the original line numbers so evidence can point at the raw log.
"""

from __future__ import annotations

import bisect
import re

from ..model import STAGES, Boot, ConsoleLog, Line, StageMark
from ..rules import Boundary

MAX_LINE = 8192  # longer lines are cut for matching (the rest is noise for every rule)

# Complete escape sequences: CSI, OSC (BEL or ST terminated), DCS/APC/PM/SOS strings, 2-byte ESC.
_ESC_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC (never past the end of the line)
    r"|\x1b[PX^_][^\x1b\n]*(?:\x1b\\)?"  # DCS, SOS, PM, APC
    r"|\x1b[()*+][0-9A-Za-z]"  # charset designation
    r"|\x1b[@-Z\\-_=>78c]"  # two-byte sequences
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# Debris of sequences whose ESC byte was lost: "[0;32m", "[0m", "[K", "[?25l", "[2J", "[1;1H".
_DEBRIS_RE = re.compile(
    r"\[(?:\??[0-9]{1,3}(?:;[0-9]{1,3})*)?m"
    r"|\[\??[0-9]{1,4}(?:;[0-9]{1,4})*[KJHhlABCDGfr]"
    r"|\[[KJ](?![A-Za-z])"
    r"|\[[0-9;]{1,20}(?=\u2026)"  # a colour code cut short by systemd's "…" ellipsis
)
_CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")
# the same, minus backspace and carriage return, which overprinting needs to see first
_CTRL_BUT_OVERPRINT_RE = re.compile(r"[\x00-\x07\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")
_TS_RE = re.compile(r"\[\s*([0-9]{1,7}\.[0-9]{3,9})\]")

# What a publisher adds around pasted console text (a ticket, a mail, a forum post): mail quote
# prefixes ("> ", "> > "), indentation, BBCode tags ([COLOR=#000000] ... [/COLOR]) and a "# "
# comment prefix in front of a timestamped line. Removed so that "^" in a pattern means the start
# of the message, wherever the text was pasted.
_QUOTE_RE = re.compile(r"^[ \t]*(?:>[ \t]?)+")
_COMMENT_RE = re.compile(r"^#[ \t]+(?=[\[<0-9])")
_BBCODE_RE = re.compile(
    r"\[/?(?:font|colou?r|size|b|i|u|s|code|quote|url|img|center|left|right|highlight|noparse|"
    r"spoiler|indent|plain|icode|tt|pre|mono)(?:=[^\]\n]{0,120})?\]", re.IGNORECASE)
# A kernel message glued to the end of another line (the two writers share one console):
# "localhost login: [   17.238624] cloud-init[787]: ...". The kernel part becomes its own line
# (same original line number), unless what comes before is only a log prefix (syslog, a
# container log's timestamp) that belongs to it.
_GLUED_TS_RE = re.compile(r"\S[ \t]*(\[ {0,6}[0-9]{1,7}\.[0-9]{6}\] )")
_LOG_PREFIX_RE = re.compile(
    r"^(?:<[0-9]{1,3}>)?(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8}(?: \S{1,64})?(?: kernel:)?"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.,]{8,15}\S{0,8}(?: \S{1,64} kernel:)?)[ \t]*$")


def decode(data: bytes) -> tuple[str, list[str]]:
    """Bytes to text, never failing. Returns the text and notes about what was repaired."""
    notes: list[str] = []
    if b"\x00" in data:
        n = data.count(b"\x00")
        data = data.replace(b"\x00", b"")
        notes.append(f"removed {n} NUL byte(s)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        notes.append(f"replaced {text.count(chr(0xFFFD))} invalid UTF-8 sequence(s)")
    return text, notes


def _overprint(line: str) -> str:
    """Apply carriage returns and backspaces the way a terminal would show the line."""
    if "\b" in line:
        out: list[str] = []
        for ch in line:
            if ch == "\b":
                if out:
                    out.pop()
            else:
                out.append(ch)
        line = "".join(out)
    if "\r" in line:
        # Each column shows the last part long enough to reach it. Walking the parts from the
        # last one, a part only adds the columns beyond what later parts cover: linear time (a
        # forward walk copies the whole line for every part: quadratic on a long progress bar).
        screen = ""
        for part in reversed(line.split("\r")):
            if len(part) > len(screen):
                screen += part[len(screen):]
        line = screen
    return line


def clean_line(raw: str) -> str:
    """One raw line (without newline) to the text a person would read."""
    lines = clean(raw.replace("\n", " "))
    return lines[0].text if lines else ""


def clean(text: str) -> list[Line]:
    """Split into lines (\\n, \\r\\n) and clean each; empty lines are dropped, numbers kept.

    Substitutions that never cross a line run once over the whole text (much faster than line
    by line on a big log); then carriage returns and backspaces are applied per line, the way a
    terminal shows them (controls that take no column, such as BEL, are gone by then)."""
    text = text.replace("\r\n", "\n")
    if "\x1b" in text or "\x9b" in text:
        text = _ESC_RE.sub("", text)
    if "[" in text:
        text = _DEBRIS_RE.sub("", text)
    text = _CTRL_BUT_OVERPRINT_RE.sub("", text)
    if "\t" in text:
        text = text.replace("\t", "    ")
    if "[/" in text:  # a closing tag: the text went through a forum's BBCode
        text = _BBCODE_RE.sub("", text)
    glued = _GLUED_TS_RE.search(text) is not None
    out = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if "\r" in raw or "\b" in raw:
            raw = _CTRL_RE.sub("", _overprint(raw))
        if len(raw) > MAX_LINE:
            raw = raw[:MAX_LINE]
        raw = raw.strip()
        if not raw:
            continue
        if raw[0] == ">":
            raw = _QUOTE_RE.sub("", raw).strip()
        elif raw[0] == "#":
            raw = _COMMENT_RE.sub("", raw)
        if not raw:
            continue
        if glued:
            for part in _unglue(raw):
                out.append(Line(number, part))
        else:
            out.append(Line(number, raw))
    return out


def _unglue(line: str) -> list[str]:
    """Split a line at kernel timestamps glued after other text (see _GLUED_TS_RE)."""
    parts: list[str] = []
    start = 0
    for m in _GLUED_TS_RE.finditer(line):
        cut = m.start(1)
        head = line[start:cut].rstrip()
        if not head or _LOG_PREFIX_RE.match(head):
            continue
        parts.append(head)
        start = cut
    parts.append(line[start:])
    return parts


# A kernel clock that goes back to (nearly) zero after running for a while is a new kernel: the
# boot's banner may have been cut from the excerpt, or written by another tool than the rest.
CLOCK_RESTART = Boundary("kernel clock restart", 6, False, ())
_RESTART_BELOW, _RESTART_AFTER = 1.0, 5.0  # seconds: a time under 1 s after one over 5 s
# How far into a boot a stage marker or a kernel-timestamped line shows the boot to be, on the
# boundary rank scale of rules/boot.toml.
STAGE_RANK = {"firmware": 0, "bootloader": 2, "kernel": 7, "initramfs": 10, "init": 10,
              "services": 10, "login": 10}
TIMESTAMP_RANK = 6
# a wall-clock log prefix (syslog, journal, ISO time) also shows the boot is past its firmware
_STAMP_RE = re.compile(r"(?:<[0-9]{1,3}>)?(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} "
                       r"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2})")


def split_boots(lines: list[Line], boundaries: dict[int, Boundary],
                times: list[float | None] | None = None,
                stage_hits: dict[int, str] | None = None) -> list[range]:
    """Split cleaned lines into boots; `boundaries` maps a line index to the marker it matched,
    `times` gives each line's kernel timestamp (None where it has none), `stage_hits` the stage
    marker a line matched.

    Each boot goes forward through the boundary ranks of rules/boot.toml (firmware, boot loader,
    kernel banner, ...); a start marker opens a new boot when the current one is already past
    its rank (or at it, for a marker printed once per boot), when it is `always`, or when an
    end marker ("reboot: Restarting system") closed the current boot."""
    marks = dict(boundaries)
    if times is not None:
        high = None
        for idx, t in enumerate(times):
            if t is None:
                continue
            if high is not None and t < _RESTART_BELOW and high > _RESTART_AFTER:
                marks.setdefault(idx, CLOCK_RESTART)
                high = t
            else:
                high = t if high is None else max(high, t)
    stage_hits = stage_hits or {}
    spans: list[list[int]] = [[0, 0]]
    reached = -1  # how far the current boot got, on the rank scale
    closed = False  # an end marker was seen: the next start marker opens a new boot
    for idx in range(len(lines)):
        b = marks.get(idx)
        if b is not None and b.ends:
            closed = True
        elif b is not None:
            if idx > spans[-1][0] and (b.always or closed or b.rank < reached
                                       or (b.rank == reached and not b.repeats)):
                spans[-1][1] = idx
                spans.append([idx, idx])
                reached = -1
            reached = -1 if b.always else max(reached, b.rank)
            closed = False
        stage = stage_hits.get(idx)
        if stage is not None:
            reached = max(reached, STAGE_RANK[stage])
        if reached < TIMESTAMP_RANK and ((times is not None and times[idx] is not None)
                                         or _STAMP_RE.match(lines[idx].text)):
            reached = TIMESTAMP_RANK
    spans[-1][1] = len(lines)
    return [range(a, b) for a, b in spans if b > a] or [range(0, 0)]


def kernel_time(text: str) -> float | None:
    m = _TS_RE.search(text, 0, 80)
    return float(m.group(1)) if m else None


def line_times(lines: list[Line]) -> list[float | None]:
    """Each line's kernel timestamp (`[   12.345678]` within its first 80 characters)."""
    return [kernel_time(ln.text) if "[" in ln.text[:80] else None for ln in lines]


def find_stages(lines: list[Line], span: range, stage_hits: dict[int, str],
                times: list[float | None] | None = None) -> tuple[StageMark, ...]:
    """The first line of each stage reached, with the last kernel timestamp seen by then."""
    found: dict[str, StageMark] = {}
    last_time: float | None = None
    marks = sorted(i for i in stage_hits if i in span)
    mi = 0
    for idx in span:
        if times is not None:
            t = times[idx]
        else:
            t = kernel_time(lines[idx].text) if "[" in lines[idx].text[:40] else None
        if t is not None:
            last_time = t
        if mi < len(marks) and marks[mi] == idx:
            mi += 1
            name = stage_hits[idx]
            if name not in found:
                found[name] = StageMark(name, lines[idx].number,
                                        t if t is not None else last_time)
        elif mi >= len(marks) and len(found) == len(STAGES):
            break
    order = {s: i for i, s in enumerate(STAGES)}
    return tuple(sorted(found.values(), key=lambda m: (order[m.name], m.line)))


def prepare(data: bytes) -> tuple[list[Line], list[str], int]:
    """Decode and clean: the cleaned lines, repair notes, and the original line count."""
    text, notes = decode(data)
    lines = clean(text)
    total = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    return lines, notes, total


def build_log(lines: list[Line], boundaries: dict[int, Boundary], stage_hits: dict[int, str],
              raw_bytes: int, notes: list[str], total: int) -> tuple[ConsoleLog, list[range]]:
    """Boots and their stages from the boundary and stage-marker hits of one scan."""
    times = line_times(lines)
    spans = split_boots(lines, boundaries, times, stage_hits)
    boots = tuple(Boot(i, tuple(lines[j] for j in span),
                       find_stages(lines, span, stage_hits, times))
                  for i, span in enumerate(spans))
    return ConsoleLog(boots, total, raw_bytes, tuple(notes)), spans


def stage_at(stages: tuple[StageMark, ...], line: int) -> str | None:
    """The latest stage reached at or before `line`."""
    marks = sorted(stages, key=lambda m: m.line)
    idx = bisect.bisect_right([m.line for m in marks], line) - 1
    return marks[idx].name if idx >= 0 else None
