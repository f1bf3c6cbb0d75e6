"""A compact terminal summary of a Diagnosis.

Console text is hostile here too: an escape sequence in a log line must not recolour, move or
clear the operator's terminal, so every control character is printed as a visible <U+XXXX>.
"""

from __future__ import annotations

from diagnose.model import SEVERITIES, STAGES, Diagnosis
from diagnose.render import visible_controls

MAX_FINDINGS = 8
MAX_EVIDENCE = 120

_STATUS_SGR = {"failed": "1;31", "degraded": "1;33", "in-progress": "1;34", "healthy": "1;32",
               "uncertain": "1;37", "skipped": "1;36"}
_SEVERITY_SGR = {"critical": "31", "error": "31", "warning": "33", "info": "37",
                 "positive": "32"}
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def _clean(value: object, limit: int | None = None) -> str:
    out = visible_controls(str(value))
    if limit is not None and len(out) > limit:
        out = out[: limit - 1] + "\u2026"
    return out


def render_text(diagnosis: Diagnosis, *, color: bool = False,
                max_findings: int = MAX_FINDINGS) -> str:
    """Verdict line, summary, top findings with line numbers, missing artifacts, what to do."""
    d = diagnosis
    v = d.verdict

    def paint(sgr: str | None, s: str) -> str:
        return f"\x1b[{sgr}m{s}\x1b[0m" if color and sgr else s

    dim = "2"
    out: list[str] = []
    status = paint(_STATUS_SGR.get(v.status), _clean(v.status).upper())
    out.append(f"{status}  {_clean(v.category)}  "
               + paint(dim, f"({round(v.confidence * 100)} % confidence)"))
    out.append(_clean(v.title))
    if v.summary:
        out.append(_clean(v.summary))
    f = v.decided_by
    if f is not None:
        where = f"console line {f.line}" if f.source == "console" else f"screen text line {f.line}"
        out.append(paint(dim, f"Decided by {where} (rule {_clean(f.rule_id)})."))

    if d.findings:
        top = sorted(d.findings, key=lambda x: (0 if x == f else 1,
                                               _RANK.get(x.severity, len(SEVERITIES)),
                                               -x.priority, x.source != "console", -x.boot,
                                               x.line))
        out += ["", f"Findings ({len(d.findings)}):"]
        for x in top[:max_findings]:
            line = f"L{x.line}" if x.source == "console" else f"S{x.line}"
            sev = paint(_SEVERITY_SGR.get(x.severity), f"{_clean(x.severity):<8}")
            out.append(f"  {sev}  {line:<7} {_clean(x.rule_id)}"
                       + (paint(dim, "  (screen)") if x.source == "screen" else ""))
            out.append(f"            {_clean(x.text.strip(), MAX_EVIDENCE)}")
        if len(top) > max_findings:
            out.append(paint(dim, f"  ... and {len(top) - max_findings} more"))
    else:
        out += ["", "Findings: none."]

    last = d.console.last_boot if d.console else None
    if last is not None:
        marks = [m for m in last.stages if m.name in STAGES]
        boots = len(d.console.boots)
        if marks:
            far = max(marks, key=lambda m: STAGES.index(m.name))
            out.append(f"Last boot ({boots} in the log): reached {far.name}"
                       f" (line {far.line}); the log ends at line {last.last_line}.")
        else:
            out.append(f"Last boot ({boots} in the log): no boot stage recognised; "
                       f"the log ends at line {last.last_line}.")

    missing = [a for a in d.artifacts if not a.available]
    if missing:
        out += ["", "Not available:"]
        out += [f"  {_clean(a.name)}: {_clean(a.reason or 'no reason recorded')}"
                for a in missing]
    if v.remediation:
        out += ["", "What to do:"]
        out += [f"  {i}. {_clean(step)}" for i, step in enumerate(v.remediation, start=1)]
    if v.references:
        out += ["", "References:"] + [f"  {_clean(r)}" for r in v.references]
    upcoming = [e for e in d.events if e.scheduled]
    if d.events:
        out += ["", f"Platform events ({len(d.events)}, {len(upcoming)} upcoming):"]
        out += [f"  {_clean(e.time)}  {_clean(e.kind)}  {_clean(e.status)}"
                for e in d.events]
    facts = ", ".join(f"{_clean(k)}={_clean(val)}" for k, val in d.subject.facts)
    out += ["", paint(dim, f"Subject: {_clean(d.subject.kind)} {_clean(d.subject.name)}"
                           + (f" ({facts})" if facts else ""))]
    return "\n".join(out) + "\n"

