"""Resource limits: input size, time per input, and what a user rule pack may do.

- Console input above cli.MAX_INPUT (256 MiB) is refused with one clear line (tested with a small
  MAX_INPUT so nothing big is allocated).
- Cleaning and matching stay fast on hostile lines (1 MiB lines, progress bars, 100k empty lines).
- Rule patterns that can backtrack catastrophically are refused at load, with file and line.
- A rule pack is data: its strings are never evaluated, formatted or imported.
"""

from __future__ import annotations

import io
import re
import sys
import time
from pathlib import Path

import pytest

from diagnose import cli
from diagnose.decide import render_summary
from diagnose.engine import CompiledPack
from diagnose.errors import RuleError
from diagnose.extract import console as cx
from diagnose.pipeline import Analyzer, evidence_from_bytes
from diagnose.rules import check_pattern, load_pack, required_literals

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------------------------
# Input size


def test_file_larger_than_max_input_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "MAX_INPUT", 1024)
    log = tmp_path / "big.log"
    log.write_bytes(b"x" * 1025)
    assert cli.main(["--console", str(log)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"diagnose: console log {log}: larger than ")
    assert "tail" in err and len(err.strip().splitlines()) == 1


def test_file_at_max_input_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "MAX_INPUT", 1024)
    log = tmp_path / "edge.log"
    log.write_bytes(b"hello world\n" * 85)  # 1020 bytes
    assert cli.main(["--console", str(log), "--format", "json"]) == 0
    assert '"status": "uncertain"' in capsys.readouterr().out


class _Stdin:
    def __init__(self, data: bytes):
        self.buffer = io.BytesIO(data)


def test_stdin_larger_than_max_input_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(cli, "MAX_INPUT", 4096)
    monkeypatch.setattr(sys, "stdin", _Stdin(b"y\n" * 4096))
    assert cli.main(["--console", "-"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("diagnose: console log from standard input: larger than ")
    assert len(err.strip().splitlines()) == 1


def test_stdin_read_stops_after_the_limit(monkeypatch, capsys):
    """The CLI never reads more than MAX_INPUT + 1 bytes, however much is piped in."""
    monkeypatch.setattr(cli, "MAX_INPUT", 4096)
    stdin = _Stdin(b"z" * 1_000_000)
    monkeypatch.setattr(sys, "stdin", stdin)
    assert cli.main(["--console", "-"]) == 2
    assert stdin.buffer.tell() == 4097
    capsys.readouterr()


def test_default_limit_is_256_mib():
    assert cli.MAX_INPUT == 256 * 2**20
    assert "256 MiB" in (ROOT / "README.md").read_text()


# ------------------------------------------------------------------------------------------------
# Time per input


def _timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def test_progress_bar_line_is_linear():
    """Regression: overprinting a long line with many short carriage-return parts used to copy
    the whole line per part (a 160 KB line took 14 s; a 1 MiB one hours)."""
    line = "A" * (1 << 19) + "\r." * (1 << 18)
    cleaned, took = _timed(cx.clean_line, line)
    assert took < 2.0, took
    assert cleaned == "." + "A" * (cx.MAX_LINE - 1)


def test_overprint_matches_a_terminal():
    assert cx.clean_line("50%\r100%") == "100%"
    assert cx.clean_line("progress 99%\rdone") == "doneress 99%"
    assert cx.clean_line("abc\r\rxy\r") == "xyc"
    assert cx.clean_line("\r\r\r") == ""
    assert cx.clean_line("abcd\b\bX") == "abX"


ANALYZER = Analyzer.load()


@pytest.mark.parametrize("name,data", [
    ("1 MiB single line", b"Kernel panic - not syncing: " + b"A" * (1 << 20) + b"\n"),
    ("1 MiB of escape starts", b"\x1b[" * (1 << 19)),
    ("1 MiB unterminated OSC", b"\x1b]0;" + b"B" * (1 << 20)),
    ("1 MiB debris", b"[0;" * (1 << 18)),
    ("100k empty lines", b"\n" * 100_000 + b"Kernel panic - not syncing: x\n"),
    ("100k CRLF blank lines", b" \r\n" * 100_000),
    ("1 MiB of backspaces", b"x\b" * (1 << 19)),
])
def test_hostile_console_is_bounded(name, data):
    d, took = _timed(ANALYZER.analyse, evidence_from_bytes(data, name="x", origin="x"))
    assert d.verdict.status in ("failed", "uncertain")
    assert took < 10.0, f"{name}: {took:.1f} s"


def _hostile_lines(patterns: list[tuple[str, int]]) -> list[str]:
    """For each pattern, lines built from its required literal followed by long runs of
    characters its classes accept (where backtracking engines spend their time)."""
    out = []
    for regex, flags in patterns:
        for lit in required_literals(regex, flags) or ("",):
            for fill in (" ", "a", "0", ": ", "A_"):
                out.append((lit + fill * cx.MAX_LINE)[: cx.MAX_LINE])
    return out


@pytest.mark.slow
def test_python_engine_time_on_hostile_lines_linux_pack():
    """The pure-Python engine (`re`, which backtracks) on lines crafted against every pattern of
    the Linux console pack: each line stays well under a second."""
    pack = load_pack()
    cpack = CompiledPack(pack, "python", source="console", os_name="linux")
    lines = _hostile_lines([(p.regex, p.flags) for p in cpack.set.patterns])
    worst = (0.0, "")
    for ln in lines:
        _, took = _timed(cpack.scan, [ln])
        worst = max(worst, (took, ln[:40]))
    assert worst[0] < 0.5, worst


# ------------------------------------------------------------------------------------------------
# Rule packs: catastrophic patterns are refused

CATASTROPHIC = [
    r"boom (a+)+$",
    r"boom (a*)*$",
    r"boom (a|aa)+$",
    r"boom (a|a)*b",
    r"boom (\w+\s?)+$",
    r"boom (.*a){20}",
    r"boom (.*){1000}",
    r"boom (?:a{1,1000}){1,1000}$",
    r"boom (?:a|b|ab)*c",
    r"boom (?:\d+|\d+x)+$",
    r"boom .*.*.*.*bar",
    r"boom (\s*\w*)*x",
    r"boom (?P<a>.*)(.*)(?:.*)x",
    # two repeats around an optional: quadratic on a long run of spaces (seconds a line)
    r"Status\s*[:;]?\s*(?P<code>0x[0-9a-f]{8})",
    r"boom [0-9]+[^ ]* x",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_pattern_is_refused(pattern):
    problems = check_pattern(pattern)
    assert any("backtrack" in p for p in problems), problems


@pytest.mark.parametrize("pattern", [
    r"Out of memory: Kill(ed)? process (?P<pid>\d+)",
    r"boom (?:\d{1,3}\.){3}\d{1,3}",
    r"boom (?:ab|cd)+ end",
    r"boom .*bar.*baz",
    r"boom \S+ \S+ end",
    r"Status\s*(?:[:;]\s*)?(?P<code>0x[0-9a-f]{8})",
])
def test_harmless_pattern_is_accepted(pattern):
    assert check_pattern(pattern) == []


def test_shipped_pack_passes_the_stricter_checks():
    pack = load_pack()
    assert len(pack.rules) > 50


def test_really_catastrophic_in_re():
    """The patterns above are refused for a reason: one of them on a 26-character line already
    costs `re` far longer than a whole healthy log (measured here on a 16-character line)."""
    rx = re.compile(r"boom (\w+\s?)+$")
    _, slow = _timed(rx.search, "boom " + "a" * 16 + "!")
    _, fast = _timed(re.compile(r"boom \w+(?:\s\w+)*$").search, "boom " + "a" * 16 + "!")
    assert slow > 20 * fast


RULE = """\
[[rule]]
id = "local.limits.boom"
title = "Boom"
category = "kernel-panic-other"
status = "failed"
severity = "critical"
os = "linux"
source = "console"
stage = "kernel"
patterns = ['{pattern}']
ignore = ['{ignore}']
remediation = ["Nothing."]
summary = "{summary}"

[rule.examples]
match = ["boom aaa"]
"""


def _pack(tmp_path: Path, pattern="boom a+", ignore="never", summary="Boom."):
    (tmp_path / "boom.toml").write_text(RULE.format(pattern=pattern, ignore=ignore,
                                                    summary=summary))
    return load_pack([tmp_path])


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_pattern_refused_at_load_with_file_and_line(tmp_path, pattern):
    with pytest.raises(RuleError) as ei:
        _pack(tmp_path, pattern=pattern)  # a TOML literal string: backslashes stay
    assert any(p.startswith(f"{tmp_path / 'boom.toml'}:10: rule local.limits.boom")
               and "backtrack" in p for p in ei.value.problems), ei.value.problems


def test_catastrophic_ignore_pattern_refused_at_load(tmp_path):
    with pytest.raises(RuleError) as ei:
        _pack(tmp_path, ignore="(x+)+y")
    assert any(f"{tmp_path / 'boom.toml'}:11:" in p and "ignore pattern" in p
               and "backtrack" in p for p in ei.value.problems), ei.value.problems


# ------------------------------------------------------------------------------------------------
# Rule packs are data


@pytest.mark.parametrize("template,expected", [
    ("{__class__}", "?"),  # a name, looked up in the fields only
    ("{fields.__class__}", None), ("{0}", None), ("{device[0]}", None),
    ("{device.__init__}", None), ("{device!r}", None), ("{device:>99999999}", None),
    ("{__import__('os').system('id')}", None), ("%(device)s", None),
    ("{" + "a" * 60 + "}", None),
    ("${device}", "$sda1"), ("{{device}}", "{sda1}"),
])
def test_summary_placeholders_are_names_only(template, expected):
    """Only `{name}` is filled, from the finding's fields; anything str.format would do with
    attributes, indexes, conversions or format specs is left as plain text (None: unchanged)."""
    assert render_summary(template, {"device": "sda1"}) == (expected or template)


def test_summary_fills_known_names_and_marks_unknown():
    assert render_summary("root {device} on {fs}", {"device": "sda1"}) == "root sda1 on ?"
    # a field value is inserted as text, never expanded again
    assert render_summary("{a} {b}", {"a": "{b}", "b": "x"}) == "{b} x"


def test_pack_strings_are_never_executed(tmp_path, monkeypatch):
    """Code-looking text in a rule pack's summary stays text through load, match, decide and
    render: it is shown verbatim and nothing runs."""
    monkeypatch.chdir(tmp_path)
    payload = "__import__('os').system('touch PWNED')"
    pack = _pack(tmp_path, summary=f"{{{payload}}} {{__class__}} {{device}}")
    d = Analyzer(pack).analyse(evidence_from_bytes(b"boom aaa\n", name="x", origin="x"))
    assert d.verdict.rule_id == "local.limits.boom"
    assert d.verdict.summary == "{" + payload + "} ? ? (evidence: line 1)."
    assert not (tmp_path / "PWNED").exists()


def test_rule_loading_code_has_no_evaluation():
    """The modules that read and apply rule packs use no eval, exec, pickle or dynamic import."""
    for mod in ("rules.py", "decide.py", "engine.py", "match.py", "ruletest.py"):
        src = (ROOT / "diagnose" / mod).read_text()
        for bad in ("eval(", "exec(", "pickle", "importlib", "__import__", ".format(",
                    "format_map", "yaml"):
            assert bad not in src, (mod, bad)


def test_hyperscan_confirm_is_bounded_on_hostile_whitespace():
    """A hostile console can put a real match at the end of a line that starts with the same
    literal and 8000 spaces: Hyperscan reports the line, then `re` confirms it from the first
    'Status'. Patterns shaped `\\s*[:;]?\\s*` backtracked over every split of the spaces
    (seconds a line); the rules now say `\\s*(?:[:;]\\s*)?`, the same language in linear time."""
    line = ("Status" + " " * (cx.MAX_LINE - 30) + " Status 0xc0000001\n").encode()
    d, took = _timed(ANALYZER.analyse, evidence_from_bytes(line * 3, name="x", origin="x"))
    assert d.verdict.category == "windows-boot-error"
    assert took < 1.0, took
