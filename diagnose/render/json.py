"""A Diagnosis as a JSON-able dict: the stable, machine-readable contract.

Keys are only ever added, never renamed or removed. Strings are passed through unchanged (they
may hold any character the console held); `json.dumps` escapes what JSON requires.
"""

from __future__ import annotations

from typing import Any

from diagnose.model import Boot, Diagnosis, Event, Subject


def _boot(boot: Boot) -> dict[str, Any]:
    return {"index": boot.index, "first_line": boot.first_line,
            "stages": [{"name": s.name, "line": s.line, "time": s.time} for s in boot.stages]}


def _subject(subject: Subject) -> dict[str, Any]:
    return {"kind": subject.kind, "name": subject.name, "facts": dict(subject.facts)}


def _event(event: Event) -> dict[str, Any]:
    return {"time": event.time, "kind": event.kind, "status": event.status,
            "description": event.description, "scheduled": event.scheduled}


def render_json(diagnosis: Diagnosis) -> dict[str, Any]:
    """verdict, findings, boots, artifacts (by name), tool; plus subject, events, and screen
    (when a screenshot was read)."""
    d = diagnosis
    out = {
        "verdict": d.verdict.to_json(),
        "findings": [f.to_json() for f in d.findings],
        "boots": [_boot(b) for b in d.console.boots] if d.console else [],
        "artifacts": {a.name: a.to_json() for a in d.artifacts},
        "tool": {"version": d.tool_version, "rules_version": d.rules_version},
        "subject": _subject(d.subject),
        "events": [_event(e) for e in d.events],
    }
    screen = getattr(d.screen, "to_json", None)
    if screen is not None:
        out["screen"] = screen()
    out["verdict"]["decided_by"] = (d.verdict.decided_by.source if d.verdict.decided_by
                                    else None)
    return out
