"""Decide: the findings of the last boot (and the screen) -> one verdict.

The order is the one documented in rules/README.md ("Deciding"): critical, then error, then
warning, then positive. A positive marker after a critical or error finding means the boot got
past it; where the failure's category is one a running system can carry (an oops, a lockup,
broken networking: see rules.DEGRADABLE) it still decides, as `degraded`. No evidence is
`uncertain`, never `healthy`.
"""

from __future__ import annotations

import re

from .model import Finding, StageMark, Verdict
from .rules import DEGRADABLE, RulePack

_BASE_CONFIDENCE = {"critical": 0.9, "error": 0.75, "warning": 0.7, "positive": 0.8}


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,40})\}")


def render_summary(template: str, fields: dict[str, str]) -> str:
    """Fill `{field}` placeholders by name only (no attribute or index access); unknown ones
    become `?`."""
    return _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), "?"), template)


def _pick(cands: list[Finding]) -> Finding:
    """The highest priority wins, then the latest; the evidence shown is the winning rule's
    first line in the candidates (a panic message repeated by its `---[ end` trailer is one
    event, first seen where it started)."""
    best = max(cands, key=lambda f: (f.priority, f.line))
    return min((f for f in cands if f.rule_id == best.rule_id), key=lambda f: f.line)


def decide(findings: list[Finding], pack: RulePack, *, stages: tuple[StageMark, ...] = (),
           boot_count: int = 1, empty: bool = False, last_line: str | None = None,
           screen_findings: list[Finding] | None = None,
           skip_reason: str | None = None) -> Verdict:
    if skip_reason:
        return Verdict("skipped", "unknown", None, "Nothing could be fetched", skip_reason, 1.0)
    screen_findings = screen_findings or []
    console_pick = _decide_one(_unresolved(findings, pack))
    screen_pick = _decide_one(_unresolved(screen_findings, pack))
    # The screen shows the newest state: it decides when it has a failure or in-progress state,
    # or when the console has nothing to say. The console decides otherwise. A screen that only
    # says it cannot tell (status "uncertain": black screen, display not updated) never
    # overrides what the console shows.
    pick, source = console_pick, "console"
    if screen_pick is not None and (console_pick is None
                                    or screen_pick[0].severity in ("critical", "error")
                                    or (console_pick[0].severity in ("positive", "info")
                                        and screen_pick[0].status != "uncertain")):
        pick, source = screen_pick, "screen"
    if pick is None:
        return _uncertain(empty, stages, last_line, screen_findings)
    finding, confidence, status = pick
    rule = pack.get(finding.rule_id)
    fields = finding.field_dict
    summary = render_summary(rule.summary, fields) if rule and rule.summary else finding.title
    where = f"line {finding.line}" if source == "console" else "the screenshot"
    summary = f"{summary} (evidence: {where}"
    if source == "console" and boot_count > 1:
        summary += f", boot {finding.boot + 1} of {boot_count}"
    summary += ")."
    category = "healthy" if finding.severity == "positive" else finding.category
    remediation = rule.remediation if rule else ()
    if "stop_code" in fields or "stop_name" in fields:
        bc = pack.bugcheck(code=fields.get("stop_code"), name=fields.get("stop_name"))
        if bc is not None and bc.remediation:
            remediation = tuple(dict.fromkeys(bc.remediation + tuple(remediation)))
    return Verdict(status, category, finding.rule_id, finding.title, summary, confidence,
                   decided_by=finding, remediation=tuple(remediation),
                   references=rule.references if rule else ())


def _unresolved(findings: list[Finding], pack: RulePack) -> list[Finding]:
    """Without the failures that a later finding shows to be over (a rule's `resolves`)."""
    until: dict[str, int] = {}
    for f in findings:
        rule = pack.get(f.rule_id)
        for cat in rule.resolves if rule else ():
            until[cat] = max(until.get(cat, -1), f.line)
    if not until:
        return findings
    return [f for f in findings
            if f.severity in ("positive", "info") or f.line >= until.get(f.category, -1)]


def _decide_one(findings: list[Finding]) -> tuple[Finding, float, str] | None:
    """The deciding finding of one source, its confidence and the verdict status."""
    if not findings:
        return None
    positives = [f for f in findings if f.severity == "positive"]
    last_positive = max((f.line for f in positives), default=-1)
    for severity in ("critical", "error"):
        live = [f for f in findings if f.severity == severity and f.line > last_positive]
        if live:
            f = _pick(live)
            conf = _BASE_CONFIDENCE[severity] + (0.05 if f.priority >= 70 else 0.0)
            return f, min(conf, 0.99), f.status
    # Up, but something that matters is broken: warnings wherever they are, and the serious
    # findings the boot got past whose category a running system can carry.
    carried = [f for f in findings if f.severity in ("critical", "error")
               and f.category in DEGRADABLE]
    warnings = [f for f in findings if f.severity == "warning"]
    if carried:
        return _pick(carried), _BASE_CONFIDENCE["warning"], "degraded"
    if warnings:
        f = _pick(warnings)
        return f, _BASE_CONFIDENCE["warning"], f.status
    if positives:
        f = max(positives, key=lambda x: (x.line, x.priority))
        # a positive marker after recovered errors is a little less certain
        recovered = any(x.severity in ("critical", "error") for x in findings)
        return f, _BASE_CONFIDENCE["positive"] - (0.15 if recovered else 0.0), "healthy"
    return None


def _uncertain(empty: bool, stages: tuple[StageMark, ...], last_line: str | None,
               screen_findings: list[Finding]) -> Verdict:
    if empty:
        return Verdict("uncertain", "unknown", None, "The console log is empty",
                       "The console log is empty, so there is nothing to judge. Fetch it again "
                       "later, and check that the kernel writes to the serial console "
                       "(console=ttyS0).", 0.1)
    reached = stages[-1].name if stages else None
    text = "No known failure or success marker in the last boot"
    if reached:
        text += f"; it reached the {reached} stage"
    if last_line:
        text += f"; the log ends with: {last_line[:160]}"
    return Verdict("uncertain", "unknown", None, "No evidence recognised", text + ".", 0.3)
