"""Fuzzing the console path: bytes -> decode -> clean -> boots -> stages -> match -> decide ->
text, JSON and HTML. Every input must give a verdict, never an exception.

The mutators below are shared with `bench/fuzz_console.py`, which runs the same check for
minutes instead of seconds. Each mutator takes a `random.Random` and the input bytes and returns
new bytes; hypothesis picks the seed and the sequence of mutators here.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnose.cli import main
from diagnose.model import Diagnosis
from diagnose.pipeline import Analyzer, evidence_from_bytes
from diagnose.render import CONTROL_RE
from diagnose.render.html import render_html
from diagnose.render.json import render_json
from diagnose.render.text import render_text

LAB = Path(__file__).parent / "fixtures" / "lab"
LAB_LOGS = sorted(p.read_bytes() for p in LAB.glob("*/serial.log") if p.stat().st_size)
STATUSES = {"failed", "in-progress", "degraded", "healthy", "uncertain", "skipped"}
NOW = "2026-01-01T00:00:00+00:00"

ANALYZER = Analyzer.load()  # compiling the pack is the slow part: once per process

# ------------------------------------------------------------------------------------------------
# Mutators: (rng, data) -> data


def bit_flips(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 64)):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def truncate(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    a = rng.randrange(len(data))
    return data[:a] if rng.random() < 0.7 else data[a:]


def _boot_starts(data: bytes) -> list[int]:
    return [m.start() for m in re.finditer(rb"Linux version |SeaBIOS|GRUB|-- Boot ", data)] or [0]


def duplicate_boot(rng: random.Random, data: bytes) -> bytes:
    starts = _boot_starts(data)
    a = rng.choice(starts)
    later = [s for s in starts if s > a]
    b = rng.choice(later) if later else len(data)
    chunk = data[a:b]
    return data[:b] + chunk * rng.randint(1, 3) + data[b:]


def interleave(rng: random.Random, data: bytes) -> bytes:
    """Lines of this log and of another lab log, shuffled together like two consoles on one
    serial port."""
    other = rng.choice(LAB_LOGS).splitlines(keepends=True) if LAB_LOGS else [b"x\n"]
    mine = data.splitlines(keepends=True)
    out: list[bytes] = []
    i = j = 0
    while i < len(mine) or j < len(other):
        if j >= len(other) or (i < len(mine) and rng.random() < 0.5):
            out.append(mine[i])
            i += 1
        else:
            out.append(other[j])
            j += 1
    return b"".join(out)


def splice_mid_line(rng: random.Random, data: bytes) -> bytes:
    """Another log cut into this one at arbitrary byte offsets (not at line ends)."""
    other = rng.choice(LAB_LOGS) if LAB_LOGS else b"x"
    a = rng.randrange(len(data) + 1)
    b = rng.randrange(len(other) + 1)
    return data[:a] + other[b:b + rng.randint(1, 4096)] + data[a:]


def long_line(rng: random.Random, data: bytes) -> bytes:
    """One line of up to 1 MiB: repeated text, a marker at its end, or carriage returns."""
    size = rng.choice((9000, 65536, 1 << 20))
    unit = rng.choice((b"A", b"Kernel panic - not syncing: ", b"[  OK  ] ", b"\r", b"x\b",
                       b"\x1b[0;32m", b"[0m", b"\xc3"))
    line = (unit * (size // len(unit) + 1))[:size]
    if rng.random() < 0.3:  # a progress bar: one long line overprinted by many short ones
        line = line[: size // 2] + b"\r." * (size // 4)
    if rng.random() < 0.5:
        line += b"Kernel panic - not syncing: VFS: Unable to mount root fs"
    at = rng.randrange(len(data) + 1)
    return data[:at] + b"\n" + line + b"\n" + data[at:]


def empty_lines(rng: random.Random, data: bytes) -> bytes:
    n = rng.choice((1000, 100_000))
    filler = rng.choice((b"\n", b"\r\n", b" \n", b"\x00\n", b"\r"))
    at = rng.randrange(len(data) + 1)
    return data[:at] + filler * n + data[at:]


CONTROLS = bytes(range(0x20)) + b"\x7f" + "".join(map(chr, range(0x80, 0xA0))).encode()


def control_chars(rng: random.Random, data: bytes) -> bytes:
    """Every C0 and C1 control (C1 both as UTF-8 and as raw 8-bit bytes) at random places."""
    buf = bytearray(data)
    pool = list(CONTROLS) + list(range(0x80, 0xA0))
    for _ in range(rng.randint(1, 200)):
        buf.insert(rng.randrange(len(buf) + 1), rng.choice(pool))
    return bytes(buf)


BAD_UTF8 = (
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x88\x80\x80\x80",  # overlong
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80",  # UTF-16 surrogates (CESU)
    b"\xf4\x90\x80\x80", b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc3", b"\xe2\x82",  # bad / cut
    b"\\ud800", b"\\udfff", b"\\x00", b"\\u202e", "\u202e\u2066\u200b\ufeff".encode(),
    "\U0001f4a9\u0301\u0301\u0301".encode(),
)


def bad_utf8(rng: random.Random, data: bytes) -> bytes:
    buf = data
    for _ in range(rng.randint(1, 50)):
        at = rng.randrange(len(buf) + 1)
        buf = buf[:at] + rng.choice(BAD_UTF8) + buf[at:]
    return buf


ESCAPES = (
    b"\x1b[", b"\x1b]0;", b"\x1bP", b"\x1b_", b"\x1b^", b"\x1bX", b"\x9b", b"\xc2\x9b",
    b"\x1b[?25l", b"\x1b[" + b"1;" * 5000, b"\x1b]" + b"A" * 5000, b"[" + b"0;" * 4000,
    b"\x1b[0;32m  OK  \x1b[0m", b"[[0;32m  OK  [0m]", b"\x1b(B", b"\x1b\\", b"\x07",
)


def escapes(rng: random.Random, data: bytes) -> bytes:
    """Escape sequences, most of them never terminated (an OSC or DCS that eats the rest)."""
    buf = data
    for _ in range(rng.randint(1, 40)):
        at = rng.randrange(len(buf) + 1)
        seq = rng.choice(ESCAPES)
        if rng.random() < 0.2:
            seq = seq * rng.randint(2, 50)
        buf = buf[:at] + seq + buf[at:]
    return buf


def random_bytes(rng: random.Random, data: bytes) -> bytes:
    return rng.randbytes(rng.randint(0, 8192))


MUTATORS = (bit_flips, truncate, duplicate_boot, interleave, splice_mid_line, long_line,
            empty_lines, control_chars, bad_utf8, escapes, random_bytes)
CHEAP_MUTATORS = tuple(m for m in MUTATORS if m not in (long_line, empty_lines))


def mutate(rng: random.Random, data: bytes, steps: int, mutators=MUTATORS) -> bytes:
    for _ in range(steps):
        data = rng.choice(mutators)(rng, data)
    return data


# ------------------------------------------------------------------------------------------------
# The property


def check(data: bytes) -> Diagnosis:
    """Run the whole console path on `data` and assert what must hold for every input."""
    d = ANALYZER.analyse(evidence_from_bytes(data, name="fuzz.log", origin="fuzz.log"), now=NOW)
    v = d.verdict
    assert v.status in STATUSES, v
    assert v.summary and 0.0 <= v.confidence <= 1.0
    if d.console is not None:
        lines = max(d.console.total_lines, 1)
        for f in d.findings:
            assert 1 <= f.line <= lines, (f.line, lines)
        if not data.strip(b"\x00 \t\r\n"):
            assert v.status == "uncertain"
    plain = render_text(d, color=False)
    assert not CONTROL_RE.search(plain.replace("\n", "")), "a control reached the terminal"
    render_text(d, color=True)
    doc = render_json(d)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")
    assert doc["verdict"]["status"] == v.status
    html = render_html(d)
    html.encode("utf-8")
    assert "<script" not in html.lower()
    return d


def cli_check(data: bytes, tmp: Path) -> None:
    """The CLI on the same bytes: a verdict (exit 0/1/6) or one line on stderr (exit 2)."""
    path = tmp / "fuzz.log"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with (contextlib.redirect_stdout(out), contextlib.redirect_stderr(err),
          mock.patch.object(Analyzer, "load", return_value=ANALYZER)):
        code = main(["--console", str(path), "--format", "json"])
    assert code in (0, 1, 2, 6), (code, err.getvalue())
    if code == 2:
        assert out.getvalue() == ""
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    else:
        assert json.loads(out.getvalue())["verdict"]["status"] in STATUSES


# ------------------------------------------------------------------------------------------------
# Tests (bounded: the whole file runs in well under 20 s)



def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fuzz(150)
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    check(data)


@fuzz(35)
@given(st.sampled_from(range(len(LAB_LOGS))), st.randoms(use_true_random=False),
       st.integers(1, 3))
def test_mutated_lab_logs(which, rng, steps):
    check(mutate(rng, LAB_LOGS[which], steps, CHEAP_MUTATORS))


@fuzz(12)
@given(st.sampled_from(range(len(LAB_LOGS))), st.randoms(use_true_random=False))
def test_huge_lines_and_empty_runs(which, rng):
    check(mutate(rng, LAB_LOGS[which], 1, (long_line, empty_lines)))


@fuzz(60)
@given(st.text(max_size=2000))
def test_any_unicode_text(text):
    check(text.encode("utf-8", "surrogatepass"))


@fuzz(25)
@given(st.sampled_from(range(len(LAB_LOGS))), st.randoms(use_true_random=False))
def test_cli_gives_verdict_or_one_line(tmp_path_factory, which, rng):
    cli_check(mutate(rng, LAB_LOGS[which], 2, CHEAP_MUTATORS), tmp_path_factory.mktemp("f"))


def test_lab_logs_unmutated_are_not_uncertain():
    """The check is not vacuous: real failure logs reach real verdicts through it."""
    statuses = {check(data).verdict.status for data in LAB_LOGS}
    assert "failed" in statuses and "healthy" in statuses


def test_every_control_character_alone_and_in_a_marker():
    for c in CONTROLS:
        ch = bytes([c])
        check(ch * 100)
        if ch in b"\b\r":  # these edit the line they are on, as on a terminal
            continue
        d = check(b"Kernel panic - not syncing: VFS: Unable to mount root fs" + ch +
                  b" on unknown-block(0,0)\n")
        assert d.verdict.status == "failed"


def test_mutators_change_their_input():
    rng = random.Random(7)
    base = LAB_LOGS[0]
    for m in MUTATORS:
        assert any(m(rng, base) != base for _ in range(5)), m.__name__
