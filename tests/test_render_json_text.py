"""render_json (the stable machine contract) and render_text (the terminal summary)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from test_report_html import (
    HOSTILE,
    RTL,
    hostile_diagnosis,
    panic_diagnosis,
    two_boot_diagnosis,
    windows_skipped_diagnosis,
)

from diagnose.render.json import render_json
from diagnose.render.text import render_text

# --- JSON ---------------------------------------------------------------------------------------


def test_json_contract_keys() -> None:
    d, _ = panic_diagnosis()
    out = render_json(d)
    assert set(out) == {"verdict", "findings", "boots", "artifacts", "tool", "subject", "events"}
    # the contract's keys, plus `decided_by` (an extension: console or screen)
    assert set(out["verdict"]) == {"status", "category", "rule_id", "title", "summary",
                                   "confidence", "decided_by"}
    for f in out["findings"]:
        assert set(f) == {"rule_id", "category", "severity", "source", "boot", "line", "text",
                          "fields"}
    for b in out["boots"]:
        assert set(b) == {"index", "first_line", "stages"}
        for s in b["stages"]:
            assert set(s) == {"name", "line", "time"}
    assert {"available", "bytes", "reason"} <= set(out["artifacts"]["console"])
    assert {"available", "bytes", "reason"} <= set(out["artifacts"]["screenshot"])
    assert set(out["tool"]) == {"version", "rules_version"}
    assert set(out["subject"]) == {"kind", "name", "facts"}


def test_json_values_follow_the_diagnosis() -> None:
    d, _ = panic_diagnosis()
    out = render_json(d)
    assert out["verdict"]["status"] == "failed"
    assert out["verdict"]["category"] == "kernel-panic-vfs"
    assert out["verdict"]["confidence"] == 0.95
    panic = d.verdict.decided_by
    assert panic is not None
    first = out["findings"][0]
    assert first["line"] == panic.line and first["text"] == panic.text
    assert first["fields"] == {"device": "unknown-block(0,0)"}
    assert [f["source"] for f in out["findings"]] == [f.source for f in d.findings]
    boot = d.console.boots[-1]
    assert out["boots"][-1]["first_line"] == boot.first_line
    assert out["boots"][-1]["stages"][0] == {"name": boot.stages[0].name,
                                             "line": boot.stages[0].line,
                                             "time": boot.stages[0].time}
    assert out["artifacts"]["console"]["bytes"] == d.console.raw_bytes
    assert out["artifacts"]["screenshot"]["format"] == "png"  # detail is merged in
    assert out["tool"] == {"version": "0.0.0-test", "rules_version": "0.0.0-test"}
    assert out["subject"]["facts"]["display"] == "text"
    assert out["events"] == []


def test_json_events_missing_console_and_round_trip() -> None:
    out = render_json(two_boot_diagnosis())
    assert len(out["boots"]) >= 2
    assert out["artifacts"]["screenshot"] == {
        "available": False, "bytes": 0, "reason": "could not fetch the screenshot: throttled"}
    assert out["events"][1] == {"time": "2000-01-03T02:00:00Z",
                                "kind": "SystemMaintenance.Reboot", "status": "Scheduled",
                                "description": "Planned host maintenance.", "scheduled": True}
    skipped = render_json(windows_skipped_diagnosis())
    assert skipped["boots"] == [] and skipped["findings"] == []
    assert skipped["verdict"]["rule_id"] is None
    hostile = render_json(hostile_diagnosis())
    again = json.loads(json.dumps(hostile))
    assert again == hostile  # hostile strings survive JSON unchanged
    assert HOSTILE[0] in {f["text"] for f in again["findings"]}


# --- text ---------------------------------------------------------------------------------------


def test_text_summary() -> None:
    d, _ = panic_diagnosis()
    out = render_text(d)
    lines = out.splitlines()
    assert lines[0] == "FAILED  kernel-panic-vfs  (95 % confidence)"
    assert lines[1] == d.verdict.title
    assert lines[2] == d.verdict.summary
    panic = d.verdict.decided_by
    assert panic is not None
    assert f"Decided by console line {panic.line} (rule {panic.rule_id})." in out
    # the deciding finding comes first, with its line number and its evidence
    i = lines.index("Findings (3):")
    assert lines[i + 1].split() == ["critical", f"L{panic.line}", panic.rule_id]
    assert lines[i + 2].strip() == panic.text.strip()
    assert "S4" in out and "(screen)" in out
    assert "  1. Check that the root= device" in out
    assert "\x1b" not in out
    assert "Not available" not in out  # everything was there


def test_text_missing_artifacts_and_events() -> None:
    out = render_text(windows_skipped_diagnosis())
    assert out.startswith("SKIPPED  unknown")
    assert "  console: no console output for Windows on ECS" in out
    assert "  screenshot: could not fetch the screenshot: instance is Stopped" in out
    assert "Findings: none." in out
    out = render_text(two_boot_diagnosis())
    assert "screenshot: could not fetch the screenshot: throttled" in out
    assert "Platform events (2, 1 upcoming):" in out
    assert "in the log): reached login" in out


def test_text_neutralises_terminal_escapes() -> None:
    d = hostile_diagnosis()
    esc = next(ln for ln in d.console.boots[-1].lines if "\x1b" in ln.text)
    d = replace(d, findings=(*d.findings, replace(d.findings[0], line=esc.number,
                                                  text=esc.text, severity="warning")))
    out = render_text(d)
    for ch in ("\x1b", "\x07", "\x00", "\x9b", "\u202e", "\u2066", "\u200f"):
        assert ch not in out, repr(ch)
    assert "<U+001B>[31m" in out and "<U+202E>" in out
    assert RTL not in out
    coloured = render_text(d, color=True)
    assert coloured.startswith("\x1b[1;31mFAILED\x1b[0m")
    # the only escapes are the ones we add: every ESC starts one of our SGR sequences
    assert all(re.match(r"\x1b\[[0-9;]+m", coloured[m.start():])
               for m in re.finditer("\x1b", coloured))
    assert "<U+001B>[31m" in coloured


def test_text_limits_findings_and_evidence() -> None:
    d, _ = panic_diagnosis()
    long_text = "x" * 500
    many = tuple(replace(d.findings[1], line=d.findings[1].line - i, text=long_text)
                 for i in range(12))
    out = render_text(replace(d, findings=many), max_findings=5)
    assert "... and 7 more" in out
    assert long_text not in out and ("x" * 119 + "\u2026") in out
